// Audit records: the canonical encoding that is MACed, and the JSON line
// that is stored. See include/asyncmq/audit.hpp for both layouts.
//
// Why the MAC is not over the JSON text: JSON has many spellings of one
// value (escapes, spacing, key order); the MAC covers length-prefixed fields
// instead, which have exactly one. The verifier still insists that each line
// is exactly the line the writer would render for its fields, so that no
// byte of the file can change unnoticed.
#include <asyncmq/audit.hpp>

#include "security/audit_crypto.hpp"
#include "security/crypto.hpp"

#include <boost/json.hpp>

#include <charconv>

namespace asyncmq {
namespace {

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_lp(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// Fields are printable ASCII (AuditLog replaces anything else before
// MACing), so only the quote and the backslash need escaping; anything else
// is escaped as \u00XX so that a line stays one line whatever it holds.
void put_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  // The common case, nothing to escape, in one append: the relay writes
  // seven of these per record.
  auto plain = [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
  };
  std::size_t run = 0;
  while (run < s.size() && plain(s[run])) ++run;
  out.append(s.substr(0, run));
  for (char c : s.substr(run)) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

template <class T>
void put_num(std::string& out, T v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

void put_hex(std::string& out, std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::size_t at = out.size();
  out.resize(at + 2 * bytes.size());
  char* p = out.data() + at;
  for (unsigned char c : bytes) {
    *p++ = kHex[c >> 4];
    *p++ = kHex[c & 15];
  }
}

constexpr std::string_view kRecordDomain = "asyncmq-audit-record-v1";
// A record relayed from a backend's outbox also covers its source.
constexpr std::string_view kSourcedRecordDomain = "asyncmq-audit-record-v2";

}  // namespace

std::string audit_canonical(const AuditRecord& r) {
  std::string out;
  security::append_audit_canonical(r, out);
  return out;
}

std::string audit_to_json_line(const AuditRecord& r) {
  std::string out;
  security::append_audit_json_line(r, out);
  return out;
}

void security::append_audit_canonical(const AuditRecord& r, std::string& out) {
  out.reserve(out.size() + kRecordDomain.size() + 24 + 7 * 4 + r.event.actor.size() +
              r.event.action.size() + r.event.job.size() + r.event.queue.size() +
              r.event.subject.size() + r.event.detail.size() + r.prev_mac.size());
  out.append(r.source.empty() ? kRecordDomain : kSourcedRecordDomain);
  put_u64(out, r.seq);
  put_u64(out, static_cast<std::uint64_t>(r.time_ms));
  put_u64(out, r.epoch);
  put_lp(out, r.event.actor);
  put_lp(out, r.event.action);
  put_lp(out, r.event.job);
  put_lp(out, r.event.queue);
  put_lp(out, r.event.subject);
  put_lp(out, r.event.detail);
  if (!r.source.empty()) put_lp(out, r.source);
  put_lp(out, r.prev_mac);
}

void security::append_audit_json_line(const AuditRecord& r, std::string& out) {
  out.reserve(out.size() + 200 + r.event.actor.size() + r.event.action.size() +
              r.event.job.size() + r.event.queue.size() + r.event.subject.size() +
              r.event.detail.size() + 2 * (r.prev_mac.size() + r.mac.size()));
  out += "{\"seq\":";
  put_num(out, r.seq);
  out += ",\"time\":";
  put_num(out, r.time_ms);
  out += ",\"epoch\":";
  put_num(out, r.epoch);
  out += ",\"actor\":";
  put_json_string(out, r.event.actor);
  out += ",\"action\":";
  put_json_string(out, r.event.action);
  out += ",\"job\":";
  put_json_string(out, r.event.job);
  out += ",\"queue\":";
  put_json_string(out, r.event.queue);
  out += ",\"subject\":";
  put_json_string(out, r.event.subject);
  out += ",\"detail\":";
  put_json_string(out, r.event.detail);
  if (!r.source.empty()) {
    out += ",\"src\":";
    put_json_string(out, r.source);
  }
  out += ",\"prev\":\"";
  put_hex(out, r.prev_mac);
  out += "\",\"mac\":\"";
  put_hex(out, r.mac);
  out += "\"}";
}

std::optional<AuditRecord> audit_from_json_line(std::string_view line) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(line, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  const bool sourced = o.contains("src");
  if (o.size() != (sourced ? 12u : 11u)) return std::nullopt;
  auto str = [&](const char* k) -> const boost::json::string* {
    auto* p = o.if_contains(k);
    return p && p->is_string() ? &p->as_string() : nullptr;
  };
  auto num = [&](const char* k) -> std::optional<std::uint64_t> {
    auto* p = o.if_contains(k);
    if (!p) return std::nullopt;
    if (p->is_uint64()) return p->as_uint64();
    if (p->is_int64() && p->as_int64() >= 0) return static_cast<std::uint64_t>(p->as_int64());
    return std::nullopt;
  };
  auto seq = num("seq"), time = num("time"), epoch = num("epoch");
  const char* names[] = {"actor", "action", "job", "queue", "subject", "detail", "prev", "mac"};
  for (const char* n : names)
    if (!str(n)) return std::nullopt;
  if (!seq || !time || !epoch) return std::nullopt;
  AuditRecord r;
  r.seq = *seq;
  r.time_ms = static_cast<std::int64_t>(*time);
  r.epoch = *epoch;
  r.event.actor = std::string(*str("actor"));
  r.event.action = std::string(*str("action"));
  r.event.job = std::string(*str("job"));
  r.event.queue = std::string(*str("queue"));
  r.event.subject = std::string(*str("subject"));
  r.event.detail = std::string(*str("detail"));
  if (sourced) {
    if (!str("src") || str("src")->empty()) return std::nullopt;
    r.source = std::string(*str("src"));
  }
  try {
    r.prev_mac = security::from_hex(std::string_view(*str("prev")));
    r.mac = security::from_hex(std::string_view(*str("mac")));
  } catch (const Error&) {
    return std::nullopt;
  }
  return r;
}

std::string_view to_string(AuditProblem::Kind k) {
  switch (k) {
    case AuditProblem::Kind::changed: return "changed";
    case AuditProblem::Kind::removed: return "removed";
    case AuditProblem::Kind::inserted: return "inserted";
    case AuditProblem::Kind::reordered: return "reordered";
    case AuditProblem::Kind::unreadable: return "unreadable";
    case AuditProblem::Kind::truncated: return "truncated";
    case AuditProblem::Kind::unanchored: return "unanchored";
    case AuditProblem::Kind::bad_checkpoint: return "bad-checkpoint";
  }
  return "?";
}

AuditOptions AuditOptions::in_dir(const std::filesystem::path& dir) {
  AuditOptions o;
  o.log_path = dir / "audit.log";
  o.checkpoint_path = dir / "checkpoints.log";
  o.writer_key_path = dir / "writer.key";
  return o;
}

}  // namespace asyncmq

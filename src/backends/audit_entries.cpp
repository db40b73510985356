// The stored form of audit entries: see audit_entries.hpp.
#include "backends/audit_entries.hpp"

#include <asyncmq/error.hpp>

#include <charconv>
#include <cstring>

namespace asyncmq::backends {
namespace {

// The flags of an entry (audit_entries.hpp).
constexpr std::uint8_t kSameActor = 1, kSameQueue = 2, kRawJob = 4, kRawSubject = 8;

[[noreturn]] void malformed() {
  throw BackendError(errc::corrupt_store, "a malformed audit outbox row");
}

void put_varint(std::string& out, std::uint64_t n) {
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
}

void put_text(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case too: only the lowercase form round-trips
}

// The 32 bytes of a lowercase 64-hex blind index, appended; false (nothing
// appended) for anything else.
bool put_raw_index(std::string& out, std::string_view s) {
  if (s.size() != 64) return false;
  char raw[32];
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    raw[i] = static_cast<char>(hi << 4 | lo);
  }
  out.append(raw, 32);
  return true;
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool done() const { return in_.empty(); }
  std::uint8_t byte() {
    if (in_.empty()) malformed();
    auto b = static_cast<std::uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return b;
  }
  std::string_view bytes(std::size_t n) {
    if (in_.size() < n) malformed();
    std::string_view out = in_.substr(0, n);
    in_.remove_prefix(n);
    return out;
  }
  std::string_view text() {
    std::uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
      if (shift > 28) malformed();  // no field is that long
      std::uint8_t b = byte();
      n |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    return bytes(static_cast<std::size_t>(n));
  }
  // The first format: u32 little-endian length || bytes.
  std::string_view text_u32() {
    std::string_view len = bytes(4);
    std::uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(len[i])) << (8 * i);
    return bytes(n);
  }

 private:
  std::string_view in_;
};

std::string hex(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) {
    auto b = static_cast<unsigned char>(c);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::vector<AuditEvent> decode_first_format(std::string_view blob) {
  std::vector<AuditEvent> out;
  Reader r(blob);
  while (!r.done()) {
    AuditEvent e;
    e.action = r.text_u32();
    e.actor = r.text_u32();
    e.job = r.text_u32();
    e.queue = r.text_u32();
    e.subject = r.text_u32();
    e.detail = r.text_u32();
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

std::string_view AuditEntries::with_number(char* buf, std::size_t prefix, std::int64_t n) {
  auto [end, ec] = std::to_chars(buf + prefix, buf + prefix + 24, n);
  (void)ec;  // 24 characters hold any int64
  return std::string_view(buf, static_cast<std::size_t>(end - buf));
}

void AuditEntries::put(std::string_view action, const JobId* id, std::string_view job_text,
                       std::string_view queue, std::string_view subject, std::string_view detail,
                       std::optional<std::string_view> worker) {
  if (blob_.empty()) blob_.push_back(kAuditEntriesFormat);
  const std::size_t flags_at = blob_.size();
  blob_.push_back('\0');
  std::uint8_t flags = 0;
  put_text(blob_, action);
  const bool same_actor = have_last_ && (worker ? last_by_worker_ && *worker == last_worker_
                                                : !last_by_worker_);
  if (same_actor) {
    flags |= kSameActor;
  } else if (worker) {
    put_varint(blob_, 7 + worker->size());
    blob_.append("worker:");
    blob_.append(*worker);
    last_by_worker_ = true;
    last_worker_.assign(*worker);
  } else {
    put_text(blob_, *actor_);
    last_by_worker_ = false;
  }
  if (id) {
    flags |= kRawJob;
    blob_.append(reinterpret_cast<const char*>(id->bytes().data()), 16);
  } else {
    put_text(blob_, job_text);
  }
  if (have_last_ && queue == last_queue_) {
    flags |= kSameQueue;
  } else {
    put_text(blob_, queue);
    last_queue_.assign(queue);
  }
  if (put_raw_index(blob_, subject)) {
    flags |= kRawSubject;
  } else {
    put_text(blob_, subject);
  }
  put_text(blob_, detail);
  blob_[flags_at] = static_cast<char>(flags);
  have_last_ = true;
  ++count_;
}

std::vector<AuditEvent> AuditEntries::take() { return decode_audit_entries(take_encoded()); }

std::vector<AuditEvent> decode_audit_entries(std::string_view blob) {
  if (blob.empty()) return {};
  if (blob[0] != kAuditEntriesFormat) return decode_first_format(blob);
  std::vector<AuditEvent> out;
  Reader r(blob.substr(1));
  while (!r.done()) {
    const std::uint8_t flags = r.byte();
    if (flags & ~0x0f) malformed();
    AuditEvent e;
    e.action = r.text();
    if (flags & kSameActor) {
      if (out.empty()) malformed();
      e.actor = out.back().actor;
    } else {
      e.actor = r.text();
    }
    if (flags & kRawJob) {
      std::string_view raw = r.bytes(16);
      std::array<std::uint8_t, 16> b{};
      std::memcpy(b.data(), raw.data(), 16);
      e.job = JobId(b).str();
    } else {
      e.job = r.text();
    }
    if (flags & kSameQueue) {
      if (out.empty()) malformed();
      e.queue = out.back().queue;
    } else {
      e.queue = r.text();
    }
    e.subject = (flags & kRawSubject) ? hex(r.bytes(32)) : std::string(r.text());
    e.detail = r.text();
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace asyncmq::backends

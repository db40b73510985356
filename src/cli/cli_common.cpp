#include "cli/cli_common.hpp"
#include "cli/cli_features.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>

#include "core/uri.hpp"
#include "security/redaction.hpp"

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>

namespace asyncmq::cli {
namespace {

// The file name an sqlite:// URI names, by the rules of open_backend
// (src/backends/factory.cpp): sqlite:///./x and sqlite:///../x are relative
// to the working directory, anything else after the third slash absolute.
std::string sqlite_path(const core::Uri& uri) {
  std::string path = uri.path;
  if (path.rfind("/./", 0) == 0 || path.rfind("/../", 0) == 0) path.erase(0, 1);
  return path;
}

std::string parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

void preflight_backend(std::string_view text, Access access) {
  core::Uri uri = core::parse_uri(text);  // throws InvalidArgument (exit 2)
  if (uri.scheme != "sqlite" || !uri.host.empty()) return;
  std::string path = sqlite_path(uri);
  if (path.empty() || path.back() == '/') return;  // open_backend names the problem

  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err != ENOENT) {
      throw InvalidArgument("cannot access database file " + path + ": " + std::strerror(err));
    }
    if (access == Access::must_exist) {
      throw InvalidArgument("database file " + path +
                            " does not exist (check --backend; 'job add' or 'worker' create it)");
    }
    std::string dir = parent_dir(path);
    struct stat dst {};
    if (::stat(dir.c_str(), &dst) != 0 || !S_ISDIR(dst.st_mode)) {
      throw InvalidArgument("cannot create database file " + path + ": directory " + dir +
                            " does not exist");
    }
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    throw InvalidArgument("database path " + path + " is a directory, not an SQLite database file");
  }
  if (!S_ISREG(st.st_mode)) {
    throw InvalidArgument("database path " + path + " is not a regular file");
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw InvalidArgument("cannot read database file " + path + ": " + std::strerror(err));
  }
  char header[16] = {};
  ssize_t n = ::read(fd, header, sizeof header);
  int err = errno;
  ::close(fd);
  if (n < 0) {
    throw InvalidArgument("cannot read database file " + path + ": " + std::strerror(err));
  }
  // An empty file is a valid, empty SQLite database.
  static constexpr char kMagic[16] = "SQLite format 3";  // 15 chars + NUL, as on disk
  if (n != 0 && (n != static_cast<ssize_t>(sizeof header) ||
                 std::memcmp(header, kMagic, sizeof kMagic) != 0)) {
    throw InvalidArgument("database file " + path +
                          " is not an SQLite database (its header does not match); refusing to "
                          "open it");
  }
}

std::shared_ptr<Client> open_client(const Context& ctx, Access access, Env& env) {
  preflight_backend(ctx.backend_uri, access);
  return open_client(ctx, access, load_protection(ctx), env);
}

std::shared_ptr<Client> open_client(const Context& ctx, Access access, const Protection& p,
                                    Env& env) {
  preflight_backend(ctx.backend_uri, access);
  ClientOptions options;
  options.principal = ctx.principal;
  options.policy = ctx.policy;
  options.audit = open_audit_log(ctx);
  options.actor = ctx.principal ? ctx.principal->id() : std::string("cli");
  // The payload guards wrap whatever codec the keys give (sealing or plain).
  options.codec = make_guarded_codec(p.codec ? p.codec : make_plain_codec(), ctx.settings.guards);
  return Client::open(ctx.backend_uri, env, std::move(options));
}

Protection load_protection(const Context& ctx) {
  Protection p;
  const char* env_keys = std::getenv("ASYNCMQ_KEYS");
  if (!ctx.key_file.empty()) {
    p.keys = Keyring::load_file(ctx.key_file);
  } else if (env_keys && *env_keys) {
    p.keys = Keyring::load_env("ASYNCMQ_KEYS");
  } else {
    return p;
  }
  std::string dir = ctx.subject_keys_dir;
  if (dir.empty()) {
    core::Uri uri = core::parse_uri(ctx.backend_uri);
    if (uri.scheme == "sqlite") dir = sqlite_path(uri) + ".subject-keys";
  }
  p.subjects = dir.empty() ? make_memory_subject_key_store() : open_subject_key_dir(dir);
  p.codec = make_sealing_codec(p.keys, p.subjects);
  return p;
}

std::int64_t parse_cli_duration(std::string_view what, std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument(std::string(what) + ": " + why +
                           " (expected a whole number followed by ms, s, m, h or d, e.g. 500ms, "
                           "30s, 5m, 1h; or a number of ms)");
  };
  if (text.empty()) throw bad("empty duration");
  if (text.front() == '-') throw bad("a duration must not be negative");
  std::size_t digits = 0;
  std::int64_t n = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    if (digits >= 12) throw bad("number too large");
    n = n * 10 + (text[digits] - '0');
    ++digits;
  }
  if (digits == 0) throw bad("'" + std::string(text.substr(0, 32)) + "' is not a duration");
  std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit.empty() || unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60'000;
  else if (unit == "h") scale = 3'600'000;
  else if (unit == "d") scale = 86'400'000;
  else throw bad("unknown unit '" + std::string(unit.substr(0, 16)) + "'");
  constexpr std::int64_t kTenYearsMs = 10LL * 365 * 86'400'000;
  if (n > kTenYearsMs / scale) throw bad("over ten years");
  return n * scale;
}

std::string read_input_file(std::string_view kind, const std::string& path, std::size_t limit) {
  std::FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
  if (!f) {
    int err = errno;
    throw InvalidArgument("cannot read " + std::string(kind) + " " + path + ": " + std::strerror(err));
  }
  std::string data;
  char buf[65536];
  while (data.size() <= limit) {
    std::size_t n = std::fread(buf, 1, sizeof buf, f);
    if (n == 0) break;
    data.append(buf, n);
  }
  bool failed = std::ferror(f) != 0;
  if (f != stdin) std::fclose(f);
  if (failed) throw InvalidArgument("cannot read " + std::string(kind) + " " + path);
  if (data.size() > limit) {
    throw InvalidArgument(std::string(kind) + " " + path + " is over the limit of " + std::to_string(limit) +
                              " bytes",
                          errc::payload_too_large);
  }
  return data;
}

std::string format_time_ms(std::int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm {};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

namespace {

boost::json::value embed_json(const std::string& text) {
  if (text.empty()) return nullptr;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec) return boost::json::value(text);
  return v;
}

}  // namespace

boost::json::object job_to_json(const Job& job) {
  boost::json::object o;
  o["id"] = job.id.str();
  o["queue"] = job.queue;
  o["task"] = job.task;
  o["state"] = std::string(to_string(job.state));
  // Redacted as JSON here (sensitive members, card numbers as numbers), so
  // that the line-wise redaction of all output leaves valid JSON.
  const auto redactor = security::current_redactor();
  o["payload"] = embed_json(job.payload);
  redactor->redact_json(o["payload"]);
  o["result"] = embed_json(job.result);
  redactor->redact_json(o["result"]);
  o["error"] = job.error.empty() ? boost::json::value(nullptr) : boost::json::value(job.error);
  redactor->redact_json(o["error"]);
  o["attempts_made"] = job.attempts_made;
  o["stalls"] = job.stalls;
  o["created_ms"] = job.created_ms;
  o["run_at_ms"] = job.run_at_ms;
  o["started_ms"] = job.started_ms;
  o["finished_ms"] = job.finished_ms;
  o["progress"] = embed_json(job.progress);
  redactor->redact_json(o["progress"]);
  // Why the stored progress failed to open (then "progress" is null); null
  // when it opened or there is none.
  o["progress_error"] = job.progress_error.empty() ? boost::json::value(nullptr)
                                                   : boost::json::value(job.progress_error);
  o["parent"] = job.parent.is_nil() ? boost::json::value(nullptr) : boost::json::value(job.parent.str());
  if (!job.parent.is_nil()) {
    o["on_failure"] = job.on_failure == ChildFailure::ignore ? "ignore"
                      : job.on_failure == ChildFailure::wait ? "wait"
                                                             : "fail";
  }
  o["children"] = job.children;
  o["pending_children"] = job.pending_children;
  o["cancel_requested"] = job.cancel_requested;
  boost::json::object opt;
  const JobOptions& jo = job.options;
  opt["priority"] = jo.priority;
  opt["delay_ms"] = jo.delay_ms;
  opt["attempts"] = jo.attempts;
  opt["backoff"] = {
      {"kind", jo.backoff.kind == Backoff::Kind::fixed ? "fixed" : "exponential"},
      {"delay_ms", jo.backoff.delay_ms},
      {"max_delay_ms", jo.backoff.max_delay_ms},
      {"jitter", jo.backoff.jitter}};
  opt["timeout_ms"] = jo.timeout_ms;
  opt["lifo"] = jo.lifo;
  opt["ttl_ms"] = jo.ttl_ms;
  opt["idempotency_window_ms"] = jo.idempotency_window_ms;
  opt["idempotency_key"] = jo.idempotency_key.empty() ? boost::json::value(nullptr)
                                                      : boost::json::value(jo.idempotency_key);
  opt["group"] = jo.group.empty() ? boost::json::value(nullptr) : boost::json::value(jo.group);
  // The subject is personal data (or its blind index): never shown.
  opt["has_subject"] = !jo.subject.empty();
  o["options"] = std::move(opt);
  if (job.state == JobState::active) {
    o["lease"] = {{"owner", job.lease.owner}, {"expires_ms", job.lease.expires_ms}};
  }
  return o;
}

void print_json(const boost::json::value& v) {
  std::cout << boost::json::serialize(v) << '\n';
  std::cout.flush();
}

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::add(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> width(header_.size());
  for (std::size_t i = 0; i < header_.size(); ++i) width[i] = header_[i].size();
  for (const auto& r : rows_)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (std::size_t i = 0; i < r.size(); ++i) {
      s += r[i];
      if (i + 1 < r.size()) s.append(width[i] - r[i].size() + 2, ' ');
    }
    out << s << '\n';
  };
  line(header_);
  for (const auto& r : rows_) line(r);
}

std::string ellipsize(std::string_view text, std::size_t max) {
  // Redact before cutting: the output filter redacts whole lines, and a card
  // number or token cut in two no longer matches its pattern there.
  std::string redacted = redact_text(text);
  std::string_view s = redacted;
  if (s.size() <= max) return std::string(s);
  if (max <= 3) return std::string(s.substr(0, max));
  return std::string(s.substr(0, max - 3)) + "...";
}

}  // namespace asyncmq::cli

// Policy: roles per queue pattern, loaded from TOML (format in
// include/asyncmq/identity.hpp), checked against an immutable snapshot of
// the rules, reloaded when the file changes.
//
// Why a snapshot behind a mutex and not a lock-free pointer: a check holds
// the mutex only to copy a shared_ptr (and, once per recheck interval, to
// stat the file), which costs tens of nanoseconds uncontended; the grants
// themselves are read without any lock.
//
// Why a bad reloaded file keeps the old rules: a policy that fails to parse
// says nothing about what was meant, and denying everything would stop
// every producer and worker over a typo. The error is logged once per file
// version; an explicit reload() throws it.
#include "security/policy_internal.hpp"

#include "core/log.hpp"

#include <asyncmq/identity.hpp>

#include <toml++/toml.h>

#include <sys/stat.h>

#include <array>
#include <fstream>
#include <sstream>

namespace asyncmq {

namespace {

std::atomic<std::uint64_t> g_denials{0};

constexpr std::array<std::string_view, kActionCount> kActionNames = {
    "add",    "claim",  "complete", "fail",   "heartbeat", "pause", "resume",  "retry",
    "clean",  "cancel", "remove",   "read",   "keys",      "apikeys", "purge", "audit"};
constexpr std::array<std::string_view, kRoleCount> kRoleNames = {"producer", "worker", "operator",
                                                                 "viewer", "admin"};

}  // namespace

std::string_view to_string(Action a) { return kActionNames[static_cast<int>(a)]; }

std::optional<Action> action_from_string(std::string_view name) {
  for (int i = 0; i < kActionCount; ++i)
    if (kActionNames[i] == name) return static_cast<Action>(i);
  return std::nullopt;
}

std::string_view to_string(Role r) { return kRoleNames[static_cast<int>(r)]; }

std::optional<Role> role_from_string(std::string_view name) {
  for (int i = 0; i < kRoleCount; ++i)
    if (kRoleNames[i] == name) return static_cast<Role>(i);
  return std::nullopt;
}

bool role_allows(Role r, Action a) {
  switch (r) {
    case Role::admin: return true;
    case Role::producer: return a == Action::add;
    case Role::worker:
      return a == Action::claim || a == Action::complete || a == Action::fail ||
             a == Action::heartbeat;
    case Role::operator_:
      return a == Action::pause || a == Action::resume || a == Action::retry ||
             a == Action::clean || a == Action::cancel || a == Action::remove ||
             a == Action::read;
    case Role::viewer: return a == Action::read;
  }
  return false;
}

namespace security {

bool glob_match(std::string_view pattern, std::string_view text) noexcept {
  // Iterative matcher with one backtrack point (the last `*`): linear in
  // practice, never exponential.
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

FileStamp stamp_of(const std::filesystem::path& file) {
  struct stat st {};
  FileStamp s;
  if (::stat(file.c_str(), &st) != 0) return s;
  s.exists = true;
  s.ino = st.st_ino;
  s.dev = st.st_dev;
  s.size = st.st_size;
  s.mtime_ns = st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
  s.ctime_ns = st.st_ctim.tv_sec * 1'000'000'000LL + st.st_ctim.tv_nsec;
  return s;
}

namespace {

[[noreturn]] void fail_at(std::string_view source, const toml::source_region& where,
                          const std::string& what) {
  std::string at(source);
  if (where.begin.line) at += ":" + std::to_string(where.begin.line);
  throw InvalidArgument("policy " + at + ": " + what);
}

std::vector<std::string> string_list(const toml::node& node, std::string_view source,
                                     const char* key) {
  std::vector<std::string> out;
  if (auto s = node.value<std::string>()) {
    out.push_back(*s);
    return out;
  }
  const toml::array* arr = node.as_array();
  if (!arr) fail_at(source, node.source(), std::string("`") + key + "` must be a string or an array of strings");
  for (const auto& el : *arr) {
    auto s = el.value<std::string>();
    if (!s) fail_at(source, el.source(), std::string("`") + key + "` must hold strings only");
    out.push_back(*s);
  }
  return out;
}

}  // namespace

std::shared_ptr<Policy::Rules> parse_rules(std::string_view text, std::string_view source) {
  toml::table doc;
  try {
    doc = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail_at(source, e.source(), std::string(e.description()));
  }
  auto rules = std::make_shared<Policy::Rules>();
  for (const auto& [key, node] : doc) {
    if (key.str() != "grant")
      fail_at(source, node.source(), "unknown key `" + std::string(key.str()) + "` (want [[grant]])");
  }
  const toml::node* grants = doc.get("grant");
  if (!grants) return rules;  // an empty policy: everything is denied
  const toml::array* arr = grants->as_array();
  if (!arr) fail_at(source, grants->source(), "`grant` must be an array of tables ([[grant]])");
  for (const auto& g : *arr) {
    const toml::table* t = g.as_table();
    if (!t) fail_at(source, g.source(), "each grant must be a table ([[grant]])");
    Grant grant;
    bool has_roles = false, has_queues = false;
    for (const auto& [k, v] : *t) {
      std::string_view name = k.str();
      if (name == "principal") {
        auto s = v.value<std::string>();
        if (!s || s->empty()) fail_at(source, v.source(), "`principal` must be a non-empty string");
        grant.principal = *s;
        grant.has_principal = true;
      } else if (name == "claims") {
        const toml::table* c = v.as_table();
        if (!c) fail_at(source, v.source(), "`claims` must be a table of claim = \"value\"");
        for (const auto& [ck, cv] : *c) {
          auto s = cv.value<std::string>();
          if (!s) fail_at(source, cv.source(), "claim `" + std::string(ck.str()) + "` must be a string");
          grant.claims.emplace_back(std::string(ck.str()), *s);
        }
      } else if (name == "roles") {
        for (const auto& r : string_list(v, source, "roles")) {
          auto role = role_from_string(r);
          if (!role)
            fail_at(source, v.source(),
                    "unknown role `" + r + "` (want producer, worker, operator, viewer or admin)");
          grant.roles[static_cast<int>(*role)] = true;
          has_roles = true;
        }
      } else if (name == "queues") {
        grant.queues = string_list(v, source, "queues");
        for (const auto& q : grant.queues)
          if (q.empty()) fail_at(source, v.source(), "an empty queue pattern matches nothing");
        has_queues = !grant.queues.empty();
      } else {
        fail_at(source, v.source(),
                "unknown key `" + std::string(name) + "` in a grant (want principal, claims, roles, queues)");
      }
    }
    if (!grant.has_principal && grant.claims.empty())
      fail_at(source, t->source(), "a grant needs `principal` or `claims` (whom it is for)");
    if (!has_roles) fail_at(source, t->source(), "a grant needs `roles`");
    if (!has_queues) fail_at(source, t->source(), "a grant needs `queues`");
    rules->grants.push_back(std::move(grant));
  }
  return rules;
}

bool grant_applies(const Grant& g, const Principal& who, const std::string& id) {
  if (g.has_principal && !glob_match(g.principal, id)) return false;
  for (const auto& [claim, value] : g.claims) {
    auto it = who.claims.find(claim);
    if (it == who.claims.end()) return false;
    bool found = false;
    for (const auto& v : it->second) found = found || v == value;
    if (!found) return false;
  }
  return true;
}

std::string read_text_file(const std::filesystem::path& file, std::string_view what) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec))
      throw NotFound(std::string(what) + " " + file.string() + " does not exist");
    throw InvalidArgument("cannot read " + std::string(what) + " " + file.string());
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > (4 << 20))
    throw InvalidArgument(std::string(what) + " " + file.string() + " is larger than 4 MiB");
  return text;
}

}  // namespace security

// ---- Policy -----------------------------------------------------------------

Policy::Policy(std::shared_ptr<const Rules> rules, std::filesystem::path file, Env& env,
               Options options)
    : rules_(std::move(rules)), file_(std::move(file)), env_(env), options_(options) {}

Policy::~Policy() = default;

std::shared_ptr<Policy> Policy::parse(std::string_view toml, std::string_view source, Env& env) {
  return std::make_shared<Policy>(security::parse_rules(toml, source), std::filesystem::path{},
                                  env, Options{});
}

std::shared_ptr<Policy> Policy::load_file(const std::filesystem::path& file, Env& env,
                                          Options options) {
  auto stamp = security::stamp_of(file);
  auto rules = security::parse_rules(security::read_text_file(file, "policy file"), file.string());
  rules->stamp = stamp;
  auto p = std::make_shared<Policy>(std::move(rules), file, env, options);
  p->next_check_ms_ = env.now_ms() + options.recheck_ms;
  return p;
}

std::shared_ptr<const Policy::Rules> Policy::rules() const {
  std::lock_guard lock(mu_);
  refresh_locked();
  return rules_;
}

void Policy::refresh_locked() const {
  if (file_.empty()) return;
  std::int64_t now = env_.now_ms();
  if (now < next_check_ms_) return;
  next_check_ms_ = now + options_.recheck_ms;
  auto stamp = security::stamp_of(file_);
  if (stamp == rules_->stamp || (failed_ && stamp == failed_->stamp)) return;
  try {
    auto fresh = security::parse_rules(security::read_text_file(file_, "policy file"), file_.string());
    fresh->stamp = stamp;
    rules_ = std::move(fresh);
    ++generation_;
    core::log(core::LogLevel::info, "policy",
              "reloaded " + file_.string() + ": " + std::to_string(rules_->grants.size()) + " grants");
  } catch (const std::exception& e) {
    auto failed = std::make_shared<Rules>();
    failed->stamp = stamp;
    failed_ = std::move(failed);
    core::log(core::LogLevel::error, "policy",
              std::string("keeping the previous rules; the changed policy file is bad: ") + e.what());
  }
}

std::uint64_t Policy::generation() const {
  std::lock_guard lock(mu_);
  refresh_locked();
  return generation_;
}

void Policy::reload() {
  if (file_.empty()) return;
  auto stamp = security::stamp_of(file_);
  auto fresh = security::parse_rules(security::read_text_file(file_, "policy file"), file_.string());
  fresh->stamp = stamp;
  std::lock_guard lock(mu_);
  rules_ = std::move(fresh);
  ++generation_;
  next_check_ms_ = env_.now_ms() + options_.recheck_ms;
}

std::size_t Policy::grant_count() const { return rules()->grants.size(); }

bool Policy::allowed(const Principal& who, Action action, std::string_view queue) const {
  auto r = rules();
  const std::string id = who.id();
  for (const auto& g : r->grants) {
    bool role_ok = false;
    for (int i = 0; i < kRoleCount; ++i)
      role_ok = role_ok || (g.roles[i] && role_allows(static_cast<Role>(i), action));
    if (!role_ok || !security::grant_applies(g, who, id)) continue;
    for (const auto& q : g.queues)
      if (security::glob_match(q, queue)) return true;
  }
  return false;
}

bool Policy::allowed_anywhere(const Principal& who, Action action) const {
  auto r = rules();
  const std::string id = who.id();
  for (const auto& g : r->grants) {
    bool role_ok = false;
    for (int i = 0; i < kRoleCount; ++i)
      role_ok = role_ok || (g.roles[i] && role_allows(static_cast<Role>(i), action));
    if (role_ok && security::grant_applies(g, who, id)) return true;
  }
  return false;
}

bool Policy::redacted(const Principal& who, std::string_view queue) const {
  auto r = rules();
  const std::string id = who.id();
  for (const auto& g : r->grants) {
    if (!g.roles[static_cast<int>(Role::admin)] || !security::grant_applies(g, who, id)) continue;
    for (const auto& q : g.queues)
      if (security::glob_match(q, queue)) return false;
  }
  return true;
}

void Policy::check(const Principal& who, Action action, std::string_view queue) const {
  if (!allowed(who, action, queue)) throw deny(who, action, queue);
}

PermissionDenied Policy::deny(const Principal& who, Action action, std::string_view queue) const {
  g_denials.fetch_add(1, std::memory_order_relaxed);
  Denial d{who.id(), action, std::string(queue), env_.now_ms()};
  std::string msg = "principal '" + d.principal + "' may not " + std::string(to_string(action)) +
                    (queue == "*" ? std::string(" on all queues ('*')") : " on queue '" + d.queue + "'");
  core::log(core::LogLevel::warn, "policy", "denied: " + msg);
  std::vector<std::function<void(const Denial&)>> observers;
  {
    std::lock_guard lock(mu_);
    observers = observers_;
  }
  for (const auto& o : observers) {
    try {
      o(d);
    } catch (const std::exception& e) {
      core::log(core::LogLevel::error, "policy", std::string("denial observer failed: ") + e.what());
    }
  }
  return PermissionDenied(msg);
}

void Policy::on_denial(std::function<void(const Denial&)> observer) {
  std::lock_guard lock(mu_);
  observers_.push_back(std::move(observer));
}

std::uint64_t Policy::denials() { return g_denials.load(std::memory_order_relaxed); }

}  // namespace asyncmq

#include "core/settings.hpp"

#include <asyncmq/error.hpp>

#include "core/log.hpp"
#include "core/uri.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <variant>

namespace asyncmq {
namespace {

using core::SettingKind;
using Value = core::SettingValue;

[[noreturn]] void bad(const std::string& what) { throw InvalidArgument(what, errc::invalid_config); }

// ---- the keys ---------------------------------------------------------------

struct Spec {
  std::string_view key;
  SettingKind kind;
  Value (*get)(const Settings&);
  void (*set)(Settings&, const Value&);
};

#define ASYNCMQ_TEXT(KEY, MEMBER)                                              \
  Spec {                                                                       \
    KEY, SettingKind::text, [](const Settings& s) -> Value { return s.MEMBER; }, \
        [](Settings& s, const Value& v) { s.MEMBER = std::get<std::string>(v); } \
  }
#define ASYNCMQ_LIST(KEY, MEMBER)                                              \
  Spec {                                                                       \
    KEY, SettingKind::list, [](const Settings& s) -> Value { return s.MEMBER; }, \
        [](Settings& s, const Value& v) { s.MEMBER = std::get<std::vector<std::string>>(v); } \
  }
#define ASYNCMQ_COUNT(KEY, MEMBER)                                                       \
  Spec {                                                                                 \
    KEY, SettingKind::count,                                                             \
        [](const Settings& s) -> Value { return std::uint64_t(s.guards.defaults.MEMBER); }, \
        [](Settings& s, const Value& v) {                                                \
          s.guards.defaults.MEMBER = static_cast<std::size_t>(std::get<std::uint64_t>(v)); \
        }                                                                                \
  }

const std::vector<Spec>& specs() {
  static const std::vector<Spec> table = {
      ASYNCMQ_TEXT("backend.uri", backend_uri),
      ASYNCMQ_TEXT("log.level", log_level),
      ASYNCMQ_TEXT("log.format", log_format),
      ASYNCMQ_TEXT("log.file", log_file),
      ASYNCMQ_TEXT("security.key_file", key_file),
      ASYNCMQ_LIST("security.redact_fields", redact_fields),
      ASYNCMQ_LIST("security.redact_patterns", redact_patterns),
      ASYNCMQ_COUNT("guards.max_payload_bytes", max_payload_bytes),
      ASYNCMQ_COUNT("guards.max_depth", max_depth),
      ASYNCMQ_COUNT("guards.max_keys_per_object", max_keys_per_object),
      ASYNCMQ_COUNT("guards.max_keys_total", max_keys_total),
      Spec{"guards.allow_pan", SettingKind::flag,
           [](const Settings& s) -> Value { return s.guards.defaults.allow_pan; },
           [](Settings& s, const Value& v) { s.guards.defaults.allow_pan = std::get<bool>(v); }},
      ASYNCMQ_TEXT("policy.file", policy_file),
      ASYNCMQ_TEXT("auth.api_keys_file", api_keys_file),
      ASYNCMQ_TEXT("audit.dir", audit_dir),
      Spec{"audit.backend_sink", SettingKind::flag,
           [](const Settings& s) -> Value { return s.audit_backend_sink; },
           [](Settings& s, const Value& v) { s.audit_backend_sink = std::get<bool>(v); }},
  };
  return table;
}

#undef ASYNCMQ_TEXT
#undef ASYNCMQ_LIST
#undef ASYNCMQ_COUNT

// Variables the CLI read before asyncmq.toml existed, kept as older names
// of their settings; the ASYNCMQ_<SECTION>_<KEY> name wins when both are set.
std::string_view older_env_name(std::string_view key) {
  if (key == "backend.uri") return "ASYNCMQ_BACKEND";
  if (key == "security.key_file") return "ASYNCMQ_KEY_FILE";
  if (key == "policy.file") return "ASYNCMQ_POLICY";
  if (key == "auth.api_keys_file") return "ASYNCMQ_API_KEYS";
  return {};
}

const Spec* find_spec(std::string_view key) {
  for (const Spec& s : specs())
    if (s.key == key) return &s;
  return nullptr;
}

// The per-queue guard keys: the part after "guards.".
const char* const kGuardKeys[] = {"max_payload_bytes", "max_depth", "max_keys_per_object",
                                  "max_keys_total", "allow_pan"};

bool is_guard_key(std::string_view k) {
  return std::find(std::begin(kGuardKeys), std::end(kGuardKeys), k) != std::end(kGuardKeys);
}

void set_guard(GuardLimits& l, std::string_view k, const Value& v) {
  if (k == "allow_pan") {
    l.allow_pan = std::get<bool>(v);
    return;
  }
  std::size_t n = static_cast<std::size_t>(std::get<std::uint64_t>(v));
  if (k == "max_payload_bytes") l.max_payload_bytes = n;
  if (k == "max_depth") l.max_depth = n;
  if (k == "max_keys_per_object") l.max_keys_per_object = n;
  if (k == "max_keys_total") l.max_keys_total = n;
}

Value get_guard(const GuardLimits& l, std::string_view k) {
  if (k == "allow_pan") return l.allow_pan;
  if (k == "max_payload_bytes") return std::uint64_t(l.max_payload_bytes);
  if (k == "max_depth") return std::uint64_t(l.max_depth);
  if (k == "max_keys_per_object") return std::uint64_t(l.max_keys_per_object);
  return std::uint64_t(l.max_keys_total);
}

std::string kind_name(SettingKind k) {
  switch (k) {
    case SettingKind::text: return "a string";
    case SettingKind::list: return "a list of strings";
    case SettingKind::count: return "a whole number >= 0";
    case SettingKind::flag: return "true or false";
  }
  return "?";
}

// ---- values from text (variables, flags) -------------------------------------

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string quote_pattern(std::string_view pattern) {
  return "guards.queue.\"" + std::string(pattern) + "\"";
}

// ---- values from the file ---------------------------------------------------

std::string where(const std::string& file, const toml::source_region& src) {
  return "file " + file + ":" + std::to_string(src.begin.line);
}

Value from_toml(const toml::node& node, SettingKind kind, const std::string& key,
                const std::string& origin) {
  auto fail = [&] { bad("setting " + key + " (" + origin + ") must be " + kind_name(kind)); };
  switch (kind) {
    case SettingKind::text:
      if (!node.is_string()) fail();
      return std::string(*node.value<std::string>());
    case SettingKind::list: {
      if (!node.is_array()) fail();
      std::vector<std::string> out;
      for (const toml::node& e : *node.as_array()) {
        if (!e.is_string()) fail();
        out.push_back(*e.value<std::string>());
      }
      return out;
    }
    case SettingKind::count: {
      if (!node.is_integer()) fail();
      std::int64_t v = *node.value<std::int64_t>();
      if (v < 0) fail();
      return static_cast<std::uint64_t>(v);
    }
    case SettingKind::flag:
      if (!node.is_boolean()) fail();
      return *node.value<bool>();
  }
  fail();
  return {};
}

bool known_section(std::string_view prefix) {
  std::string p = std::string(prefix) + ".";
  for (const Spec& s : specs())
    if (s.key.substr(0, p.size()) == p) return true;
  return false;
}

struct QueueRule {
  std::map<std::string, std::pair<Value, std::string>> values;  // guard key -> value, origin
};

struct FileReader {
  const std::string& file;
  Settings& settings;
  std::map<std::string, QueueRule>& rules;

  void walk(const toml::table& table, const std::string& prefix) {
    for (auto&& [k, node] : table) {
      std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      std::string origin = where(file, node.source());
      if (key == "guards.queue") {
        queues(node, origin);
        continue;
      }
      if (const Spec* spec = find_spec(key)) {
        spec->set(settings, from_toml(node, spec->kind, key, origin));
        settings.origins[key] = origin;
        continue;
      }
      if (node.is_table() && known_section(key)) {
        walk(*node.as_table(), key);
        continue;
      }
      bad("unknown setting " + key.substr(0, 100) + " in " + file + " line " +
          std::to_string(node.source().begin.line));
    }
  }

  void queues(const toml::node& node, const std::string& origin) {
    if (!node.is_table()) bad("setting guards.queue (" + origin + ") must be a table of queue patterns");
    for (auto&& [pattern, rule] : *node.as_table()) {
      std::string name = quote_pattern(std::string(pattern.str()).substr(0, 100));
      std::string rorigin = where(file, rule.source());
      if (pattern.str().empty() || pattern.str().size() > 128) {
        bad("queue pattern " + name + " (" + rorigin + ") must be 1..128 characters");
      }
      if (!rule.is_table()) bad("setting " + name + " (" + rorigin + ") must be a table");
      QueueRule& r = rules[std::string(pattern.str())];
      for (auto&& [gk, gv] : *rule.as_table()) {
        std::string key = name + "." + std::string(gk.str()).substr(0, 64);
        std::string gorigin = where(file, gv.source());
        if (!is_guard_key(gk.str())) {
          bad("unknown setting " + key + " in " + file + " line " +
              std::to_string(gv.source().begin.line) +
              " (a queue's guards are max_payload_bytes, max_depth, max_keys_per_object, "
              "max_keys_total, allow_pan)");
        }
        SettingKind kind = gk.str() == "allow_pan" ? SettingKind::flag : SettingKind::count;
        r.values[std::string(gk.str())] = {from_toml(gv, kind, key, gorigin), gorigin};
      }
    }
  }
};

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    bad("settings file " + path + " does not exist or is not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) bad("cannot read settings file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

namespace core {

Value parse_setting_text(SettingKind kind, std::string_view text, const std::string& name) {
  std::string t = trim(text);
  switch (kind) {
    case SettingKind::text:
      return std::string(text);
    case SettingKind::list: {
      std::vector<std::string> out;
      std::size_t b = 0;
      while (b <= t.size()) {
        std::size_t e = t.find(',', b);
        if (e == std::string::npos) e = t.size();
        std::string item = trim(std::string_view(t).substr(b, e - b));
        if (!item.empty()) out.push_back(item);
        b = e + 1;
      }
      return out;
    }
    case SettingKind::count: {
      if (t.empty() || t.size() > 18 ||
          !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
        bad(name + " must be " + kind_name(kind));
      return static_cast<std::uint64_t>(std::stoull(t));
    }
    case SettingKind::flag: {
      std::string l = t;
      for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
      if (l == "false" || l == "0" || l == "no" || l == "off") return false;
      bad(name + " must be " + kind_name(kind));
    }
  }
  bad(name + " has an unknown kind");
}

std::string setting_text(const Value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* n = std::get_if<std::uint64_t>(&v)) return std::to_string(*n);
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  std::string out;
  for (const auto& e : std::get<std::vector<std::string>>(v)) out += (out.empty() ? "" : ", ") + e;
  return out;
}

}  // namespace core

std::string settings_env_name(std::string_view key) {
  std::string n = "ASYNCMQ_";
  for (char c : key) n += c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return n;
}

Settings load_settings(const SettingsSources& src) {
  auto getenv = src.getenv ? src.getenv : [](const char* n) -> const char* { return std::getenv(n); };
  Settings s;
  for (const Spec& spec : specs()) s.origins[std::string(spec.key)] = "default";

  // 3. The file.
  std::string file = src.config_file;
  if (file.empty()) {
    if (const char* e = getenv("ASYNCMQ_CONFIG"); e && *e) file = e;
  }
  if (file.empty()) {
    std::error_code ec;
    if (std::filesystem::exists("asyncmq.toml", ec)) file = "./asyncmq.toml";
  }
  std::map<std::string, QueueRule> rules;
  if (!file.empty()) {
    std::string text = read_file(file);
    toml::table table;
    try {
      table = toml::parse(text, file);
    } catch (const toml::parse_error& e) {
      // The description names the syntax problem; it does not quote values.
      bad("settings file " + file + " line " + std::to_string(e.source().begin.line) +
          " is not valid TOML: " + std::string(e.description()));
    }
    s.config_file = file;
    FileReader{file, s, rules}.walk(table, "");
  }

  // 2. The environment.
  for (const Spec& spec : specs()) {
    std::string name = settings_env_name(spec.key);
    const char* v = getenv(name.c_str());
    if (std::string_view older = older_env_name(spec.key); !older.empty() && !(v && *v)) {
      v = getenv(std::string(older).c_str());
      if (v && *v) name = older;
    }
    if (!v || !*v) continue;
    spec.set(s, core::parse_setting_text(spec.kind, v, name));
    s.origins[std::string(spec.key)] = "env " + name;
  }

  // 1. Flags.
  for (const auto& [key, flag] : src.flags) {
    const Spec* spec = find_spec(key);
    if (!spec) bad("unknown setting " + key + " for flag " + flag.first);
    spec->set(s, core::parse_setting_text(spec->kind, flag.second, flag.first));
    s.origins[key] = "flag " + flag.first;
  }

  // Per-queue guards: [guards] (after env and flags) with the queue's keys on top.
  for (const auto& [pattern, rule] : rules) {
    GuardRule r{pattern, s.guards.defaults};
    for (const auto& [k, vo] : rule.values) {
      set_guard(r.limits, k, vo.first);
      s.origins[quote_pattern(pattern) + "." + k] = vo.second;
    }
    s.guards.rules.push_back(std::move(r));
  }

  // Values with a fixed vocabulary are checked here, naming their origin.
  try {
    core::parse_log_level(s.log_level);
  } catch (const Error& e) {
    bad("log.level (" + s.origins["log.level"] + "): " + e.what());
  }
  try {
    core::parse_log_format(s.log_format);
  } catch (const Error& e) {
    bad("log.format (" + s.origins["log.format"] + "): " + e.what());
  }
  return s;
}

std::vector<SettingLine> describe_settings(const Settings& s) {
  std::vector<SettingLine> out;
  auto origin = [&](const std::string& key) {
    auto it = s.origins.find(key);
    return it == s.origins.end() ? std::string("default") : it->second;
  };
  for (const Spec& spec : specs()) {
    std::string key(spec.key);
    Value v = spec.get(s);
    if (key == "backend.uri") v = core::mask_uri(std::get<std::string>(v));
    if (key == "security.redact_patterns") {
      // A literal pattern is itself the secret it masks.
      auto list = std::get<std::vector<std::string>>(v);
      for (auto& p : list)
        if (p.rfind("literal:", 0) == 0) p = "literal:****";
      v = list;
    }
    out.push_back({key, core::setting_text(v), origin(key)});
  }
  for (const GuardRule& r : s.guards.rules) {
    for (const char* k : kGuardKeys) {
      std::string key = quote_pattern(r.queue_pattern) + "." + k;
      auto it = s.origins.find(key);
      std::string from = it != s.origins.end() ? it->second : "[guards]: " + origin(std::string("guards.") + k);
      out.push_back({key, core::setting_text(get_guard(r.limits, k)), from});
    }
  }
  return out;
}

}  // namespace asyncmq

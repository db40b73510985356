// Settings: file, environment and flags, their precedence, origins, refusals
// and what `config show` prints.
#include <asyncmq/error.hpp>
#include <asyncmq/settings.hpp>

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>

namespace asyncmq {
namespace {

class SettingsTest : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    std::string path = dir_.file("asyncmq.toml");
    std::ofstream(path) << text;
    return path;
  }
  Settings load(const std::string& file = {},
                std::map<std::string, std::pair<std::string, std::string>> flags = {}) {
    SettingsSources src;
    src.config_file = file;
    src.flags = std::move(flags);
    src.getenv = [this](const char* name) -> const char* {
      auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    };
    return load_settings(src);
  }
  std::string refusal(const std::string& file) {
    try {
      load(file);
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(e.kind(), errc::invalid_config);
      return e.what();
    }
    return "";
  }
  static std::string line_of(const Settings& s, const std::string& key, std::string* origin = nullptr) {
    for (const auto& l : describe_settings(s)) {
      if (l.key != key) continue;
      if (origin) *origin = l.origin;
      return l.value;
    }
    return "<missing>";
  }

  testing::TempDir dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(SettingsTest, DefaultsWithoutAnySource) {
  Settings s = load();
  EXPECT_EQ(s.backend_uri, "sqlite:///./asyncmq.db");
  EXPECT_EQ(s.log_level, "warn");
  EXPECT_EQ(s.origins.at("backend.uri"), "default");
  EXPECT_FALSE(s.guards.defaults.allow_pan);
  EXPECT_TRUE(s.config_file.empty());
  EXPECT_EQ(s.api_keys_file, "asyncmq-api-keys.json");  // the CLI's store before settings existed
  EXPECT_TRUE(s.policy_file.empty());
  EXPECT_TRUE(s.audit_dir.empty());
}

// The variables the CLI read before settings existed still work, below the
// ASYNCMQ_<SECTION>_<KEY> names and above the file.
TEST_F(SettingsTest, OlderVariableNamesAreKept) {
  std::string f = write(R"([security]
key_file = "file-keys"
[policy]
file = "file-policy.toml"
[auth]
api_keys_file = "file-store.json"
[audit]
dir = "file-audit"
)");
  env_["ASYNCMQ_KEY_FILE"] = "old-keys";
  env_["ASYNCMQ_POLICY"] = "old-policy.toml";
  env_["ASYNCMQ_API_KEYS"] = "old-store.json";
  Settings old = load(f);
  EXPECT_EQ(old.key_file, "old-keys");
  EXPECT_EQ(old.origins.at("security.key_file"), "env ASYNCMQ_KEY_FILE");
  EXPECT_EQ(old.policy_file, "old-policy.toml");
  EXPECT_EQ(old.origins.at("policy.file"), "env ASYNCMQ_POLICY");
  EXPECT_EQ(old.api_keys_file, "old-store.json");
  EXPECT_EQ(old.origins.at("auth.api_keys_file"), "env ASYNCMQ_API_KEYS");
  EXPECT_EQ(old.audit_dir, "file-audit");
  env_["ASYNCMQ_SECURITY_KEY_FILE"] = "new-keys";
  env_["ASYNCMQ_POLICY_FILE"] = "new-policy.toml";
  env_["ASYNCMQ_AUTH_API_KEYS_FILE"] = "new-store.json";
  env_["ASYNCMQ_AUDIT_DIR"] = "env-audit";
  Settings now = load(f);
  EXPECT_EQ(now.key_file, "new-keys");
  EXPECT_EQ(now.policy_file, "new-policy.toml");
  EXPECT_EQ(now.api_keys_file, "new-store.json");
  EXPECT_EQ(now.audit_dir, "env-audit");
  EXPECT_EQ(now.origins.at("audit.dir"), "env ASYNCMQ_AUDIT_DIR");
  Settings flagged = load(f, {{"policy.file", {"--policy", "flag-policy.toml"}},
                              {"audit.dir", {"--audit-dir", "flag-audit"}}});
  EXPECT_EQ(flagged.policy_file, "flag-policy.toml");
  EXPECT_EQ(flagged.origins.at("policy.file"), "flag --policy");
  EXPECT_EQ(flagged.audit_dir, "flag-audit");
}

TEST_F(SettingsTest, FileThenEnvThenFlagWithOrigins) {
  std::string f = write(R"(# settings
[backend]
uri = "sqlite:///./from-file.db"

[log]
level = "info"
format = "json"

[security]
key_file = "/etc/asyncmq/keys"
redact_fields = ["diagnosis"]
redact_patterns = ["literal:ACME-SECRET", "emp-[0-9]+"]

[guards]
max_depth = 8

[guards.queue."payments.*"]
allow_pan = true
max_payload_bytes = 4096

[policy]
file = "policy.toml"
)");
  Settings s = load(f);
  EXPECT_EQ(s.backend_uri, "sqlite:///./from-file.db");
  EXPECT_EQ(s.origins.at("backend.uri"), "file " + f + ":3");
  EXPECT_EQ(s.log_level, "info");
  EXPECT_EQ(s.log_format, "json");
  EXPECT_EQ(s.key_file, "/etc/asyncmq/keys");
  EXPECT_EQ(s.redact_fields, std::vector<std::string>{"diagnosis"});
  EXPECT_EQ(s.guards.defaults.max_depth, 8u);
  ASSERT_EQ(s.guards.rules.size(), 1u);
  EXPECT_EQ(s.guards.rules[0].queue_pattern, "payments.*");
  EXPECT_TRUE(s.guards.rules[0].limits.allow_pan);
  EXPECT_EQ(s.guards.rules[0].limits.max_payload_bytes, 4096u);
  EXPECT_EQ(s.guards.rules[0].limits.max_depth, 8u);  // inherited from [guards]
  EXPECT_EQ(s.policy_file, "policy.toml");
  EXPECT_EQ(s.config_file, f);

  // The environment beats the file; the newer name beats ASYNCMQ_BACKEND.
  env_["ASYNCMQ_BACKEND"] = "memory://";
  EXPECT_EQ(load(f).backend_uri, "memory://");
  EXPECT_EQ(load(f).origins.at("backend.uri"), "env ASYNCMQ_BACKEND");
  env_["ASYNCMQ_BACKEND_URI"] = "sqlite:///./env.db";
  env_["ASYNCMQ_GUARDS_MAX_DEPTH"] = "4";
  env_["ASYNCMQ_GUARDS_ALLOW_PAN"] = "yes";
  env_["ASYNCMQ_SECURITY_REDACT_FIELDS"] = "a, b,,c";
  Settings e = load(f);
  EXPECT_EQ(e.backend_uri, "sqlite:///./env.db");
  EXPECT_EQ(e.origins.at("backend.uri"), "env ASYNCMQ_BACKEND_URI");
  EXPECT_EQ(e.guards.defaults.max_depth, 4u);
  EXPECT_EQ(e.guards.rules[0].limits.max_depth, 4u);
  EXPECT_TRUE(e.guards.defaults.allow_pan);
  EXPECT_EQ(e.redact_fields, (std::vector<std::string>{"a", "b", "c"}));

  // A flag beats both.
  Settings g = load(f, {{"backend.uri", {"--backend", "memory://"}}});
  EXPECT_EQ(g.backend_uri, "memory://");
  EXPECT_EQ(g.origins.at("backend.uri"), "flag --backend");

  // ASYNCMQ_CONFIG names the file when no flag does.
  env_.clear();
  env_["ASYNCMQ_CONFIG"] = f;
  EXPECT_EQ(load().log_level, "info");
}

TEST_F(SettingsTest, UnknownKeysAreRefusedWithTheirLine) {
  std::string m = refusal(write("[log]\nlevel = \"info\"\ncolour = \"blue\"\n"));
  EXPECT_NE(m.find("unknown setting log.colour"), std::string::npos) << m;
  EXPECT_NE(m.find("line 3"), std::string::npos) << m;
  m = refusal(write("[nonsense]\nx = 1\n"));
  EXPECT_NE(m.find("unknown setting nonsense"), std::string::npos) << m;
  m = refusal(write("[guards.queue.\"q*\"]\nmax_depht = 3\n"));
  EXPECT_NE(m.find("max_depht"), std::string::npos) << m;
  EXPECT_NE(m.find("line 2"), std::string::npos) << m;
  m = refusal(write("top = 1\n"));
  EXPECT_NE(m.find("unknown setting top"), std::string::npos) << m;
}

TEST_F(SettingsTest, WrongTypesAndValuesAreRefusedWithoutEchoingThem) {
  std::string m = refusal(write("[guards]\nmax_depth = \"deep\"\n"));
  EXPECT_NE(m.find("guards.max_depth"), std::string::npos) << m;
  EXPECT_NE(m.find(":2"), std::string::npos) << m;
  EXPECT_EQ(m.find("deep"), std::string::npos) << m;
  EXPECT_NE(refusal(write("[guards]\nmax_depth = -1\n")), "");
  EXPECT_NE(refusal(write("[security]\nredact_fields = [1]\n")), "");
  m = refusal(write("[log]\nlevel = \"loud\"\n"));
  EXPECT_NE(m.find("log.level"), std::string::npos) << m;
  m = refusal(write("[backend\nuri = 1\n"));
  EXPECT_NE(m.find("not valid TOML"), std::string::npos) << m;
  EXPECT_NE(m.find("line 1"), std::string::npos) << m;
  EXPECT_NE(refusal(dir_.file("missing.toml")), "");

  env_["ASYNCMQ_GUARDS_MAX_DEPTH"] = "many";
  try {
    load();
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("ASYNCMQ_GUARDS_MAX_DEPTH"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).find("many"), std::string::npos);
  }
}

TEST_F(SettingsTest, DescribeMasksSecretsAndNamesOrigins) {
  std::string f = write(R"([backend]
uri = "redis://app:hunter2@127.0.0.1:6379/0"
[security]
redact_patterns = ["literal:ACME-SECRET", "emp-[0-9]+"]
[guards.queue."pay*"]
allow_pan = true
)");
  Settings s = load(f);
  std::string origin;
  std::string uri = line_of(s, "backend.uri", &origin);
  EXPECT_EQ(uri, "redis://app:****@127.0.0.1:6379/0");
  EXPECT_EQ(origin, "file " + f + ":2");
  EXPECT_EQ(line_of(s, "security.redact_patterns"), "literal:****, emp-[0-9]+");
  EXPECT_EQ(line_of(s, "guards.queue.\"pay*\".allow_pan", &origin), "true");
  EXPECT_EQ(origin, "file " + f + ":6");
  EXPECT_EQ(line_of(s, "guards.queue.\"pay*\".max_depth", &origin), "32");
  EXPECT_EQ(origin, "[guards]: default");
  for (const auto& l : describe_settings(s)) {
    EXPECT_EQ(l.value.find("hunter2"), std::string::npos) << l.key;
    EXPECT_EQ(l.value.find("ACME-SECRET"), std::string::npos) << l.key;
  }
  EXPECT_EQ(settings_env_name("security.key_file"), "ASYNCMQ_SECURITY_KEY_FILE");
}

TEST_F(SettingsTest, RedactionOptionsAddToTheDefaults) {
  std::string f = write("[security]\nredact_fields = [\"diagnosis\"]\n");
  RedactionOptions o = load(f).redaction();
  EXPECT_NE(std::find(o.fields.begin(), o.fields.end(), "password"), o.fields.end());
  EXPECT_NE(std::find(o.fields.begin(), o.fields.end(), "diagnosis"), o.fields.end());
}

}  // namespace
}  // namespace asyncmq

// The `asyncmq` command's settings (asyncmq.toml, ASYNCMQ_* variables,
// flags) taking effect end to end, and the payload guards refusing bad
// input before any store is created.
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/text_file.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

namespace asyncmq::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

using Env = std::map<std::string, std::optional<std::string>>;

class SettingsCli : public ::testing::Test {
 protected:
  // Runs the CLI in the test's directory, where it finds ./asyncmq.toml,
  // with none of the variables these tests are about inherited.
  ProcessResult cli(std::vector<std::string> args, const Env& env = {}) {
    ProcessOptions options;
    options.cwd = dir_.path();
    for (const char* v : {"ASYNCMQ_CONFIG", "ASYNCMQ_POLICY", "ASYNCMQ_POLICY_FILE",
                          "ASYNCMQ_API_KEYS", "ASYNCMQ_AUTH_API_KEYS_FILE", "ASYNCMQ_AUDIT_DIR",
                          "ASYNCMQ_API_KEY", "ASYNCMQ_TOKEN", "ASYNCMQ_KEY_FILE",
                          "ASYNCMQ_SECURITY_KEY_FILE", "ASYNCMQ_KEYS", "ASYNCMQ_BACKEND_URI"})
      options.env[v] = std::nullopt;
    for (const auto& [k, v] : env) options.env[k] = v;
    args.insert(args.begin(), ASYNCMQ_CLI_PATH);
    return run_process(args, options);
  }
  // `config show --json`: key -> {value, source}.
  json::object shown(std::vector<std::string> flags = {}, const Env& env = {}) {
    flags.insert(flags.end(), {"config", "show", "--json"});
    ProcessResult r = cli(flags, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    if (ec) return {};
    return v.at("settings").as_object();
  }
  static std::string source_of(const json::object& settings, const std::string& key) {
    const json::value* v = settings.if_contains(key);
    return v ? std::string(v->at("source").as_string()) : "<missing>";
  }
  static std::string value_of(const json::object& settings, const std::string& key) {
    const json::value* v = settings.if_contains(key);
    return v ? std::string(v->at("value").as_string()) : "<missing>";
  }
  // A new API key for `name` (no policy is configured while it is made).
  std::string create_key(const std::string& name, std::vector<std::string> flags = {}) {
    flags.insert(flags.end(), {"apikey", "create", "--name", name});
    ProcessResult r = cli(flags);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return trim(r.out);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.file(name)) << text;
  }
  std::string db() const { return dir_.file("q.db"); }
  std::string backend_toml() const { return "[backend]\nuri = \"sqlite://" + db() + "\"\n"; }

  TempDir dir_;
};

TEST_F(SettingsCli, GuardsRefuseJobAndFlowAddBeforeTheStoreExists) {
  write("asyncmq.toml", backend_toml() + "[guards]\nmax_depth = 3\n");
  ProcessResult card = cli({"job", "add", "q", "echo", "--payload", R"({"card":"4111 1111 1111 1111"})"});
  EXPECT_EQ(card.exit_code, 2) << card.err;
  EXPECT_NE(card.err.find("card_number"), std::string::npos) << card.err;
  ProcessResult deep = cli({"job", "add", "q", "echo", "--payload", R"({"a":{"b":{"c":{}}}})"});
  EXPECT_EQ(deep.exit_code, 2) << deep.err;
  EXPECT_NE(deep.err.find("max_depth"), std::string::npos) << deep.err;
  write("flow.json", R"([{"ref": "root", "queue": "q", "task": "echo"},
    {"ref": "a", "parent": "root", "queue": "q", "task": "echo",
     "payload": {"pan": 4111111111111111}}])");
  ProcessResult flow = cli({"flow", "add", "--file", dir_.file("flow.json")});
  EXPECT_EQ(flow.exit_code, 2) << flow.err;
  EXPECT_NE(flow.err.find("card_number"), std::string::npos) << flow.err;
  EXPECT_EQ(flow.err.find("4111"), std::string::npos) << flow.err;
  EXPECT_FALSE(fs::exists(db())) << "refused input created the store";
  // The same payloads pass where the settings allow them.
  write("asyncmq.toml", backend_toml() + "[guards]\nallow_pan = true\n");
  EXPECT_EQ(cli({"job", "add", "q", "echo", "--payload", R"({"a":{"b":{"c":{}}}})"}).exit_code, 0);
  EXPECT_EQ(cli({"flow", "add", "--file", dir_.file("flow.json")}).exit_code, 0);
}

// policy.file in asyncmq.toml (nothing on the command line or in the
// environment) is enforced like --policy: a worker's key may not add.
TEST_F(SettingsCli, PolicyFileFromTheSettingsFileIsEnforced) {
  write("policy.toml", R"([[grant]]
principal = "apikey:worker-bot"
roles = ["worker"]
queues = ["emails"]
)");
  write("producer-policy.toml", R"([[grant]]
principal = "apikey:worker-bot"
roles = ["producer"]
queues = ["emails"]
)");
  write("asyncmq.toml", backend_toml());
  const std::string key = create_key("worker-bot");
  write("asyncmq.toml", backend_toml() + "[policy]\nfile = \"" + dir_.file("policy.toml") + "\"\n");

  ProcessResult denied = cli({"job", "add", "emails", "echo"}, {{"ASYNCMQ_API_KEY", key}});
  EXPECT_EQ(denied.exit_code, 1) << denied.out << denied.err;
  EXPECT_NE(denied.err.find("permission denied"), std::string::npos) << denied.err;
  EXPECT_NE(denied.err.find("apikey:worker-bot"), std::string::npos) << denied.err;
  EXPECT_NE(denied.err.find("add"), std::string::npos) << denied.err;
  // A policy needs a credential, for every command.
  EXPECT_NE(cli({"job", "add", "emails", "echo"}).exit_code, 0);
  EXPECT_NE(cli({"config", "show"}).exit_code, 0);
  EXPECT_EQ(source_of(shown({}, {{"ASYNCMQ_API_KEY", key}}), "policy.file").rfind("file ", 0), 0u);

  // The environment, then a flag, override the file (both grant producer).
  const std::string other = dir_.file("producer-policy.toml");
  ProcessResult by_env = cli({"job", "add", "emails", "echo"},
                             {{"ASYNCMQ_API_KEY", key}, {"ASYNCMQ_POLICY_FILE", other}});
  EXPECT_EQ(by_env.exit_code, 0) << by_env.err;
  ProcessResult by_older_env = cli({"job", "add", "emails", "echo"},
                                   {{"ASYNCMQ_API_KEY", key}, {"ASYNCMQ_POLICY", other}});
  EXPECT_EQ(by_older_env.exit_code, 0) << by_older_env.err;
  ProcessResult by_flag = cli({"--policy", other, "job", "add", "emails", "echo"},
                              {{"ASYNCMQ_API_KEY", key}, {"ASYNCMQ_POLICY_FILE", dir_.file("policy.toml")}});
  EXPECT_EQ(by_flag.exit_code, 0) << by_flag.err;
  EXPECT_EQ(source_of(shown({}, {{"ASYNCMQ_API_KEY", key}, {"ASYNCMQ_POLICY_FILE", other}}),
                      "policy.file"),
            "env ASYNCMQ_POLICY_FILE");
  EXPECT_EQ(source_of(shown({"--policy", other}, {{"ASYNCMQ_API_KEY", key}, {"ASYNCMQ_POLICY_FILE", other}}),
                      "policy.file"),
            "flag --policy");
}

// auth.api_keys_file in asyncmq.toml is the store apikey writes and
// credentials are looked up in, like --api-keys.
TEST_F(SettingsCli, ApiKeysFileFromTheSettingsFileIsTheStore) {
  const std::string store = dir_.file("team-keys.json");
  write("asyncmq.toml", backend_toml() + "[auth]\napi_keys_file = \"" + store + "\"\n");
  const std::string key = create_key("producer-bot");
  EXPECT_TRUE(fs::exists(store));
  EXPECT_FALSE(fs::exists(dir_.file("asyncmq-api-keys.json"))) << "the default store was used";
  write("policy.toml", R"([[grant]]
principal = "apikey:producer-bot"
roles = ["producer"]
queues = ["emails"]
)");
  ProcessResult added = cli({"--policy", dir_.file("policy.toml"), "job", "add", "emails", "echo"},
                            {{"ASYNCMQ_API_KEY", key}});
  EXPECT_EQ(added.exit_code, 0) << added.err;
  // Another store given by the environment or a flag does not know the key.
  const std::string empty_store = dir_.file("other-keys.json");
  create_key("someone-else", {"--api-keys", empty_store});
  for (const auto& flags : {std::vector<std::string>{"--api-keys", empty_store},
                            std::vector<std::string>{}}) {
    Env env{{"ASYNCMQ_API_KEY", key}};
    if (flags.empty()) env["ASYNCMQ_AUTH_API_KEYS_FILE"] = empty_store;
    std::vector<std::string> args = flags;
    args.insert(args.end(), {"--policy", dir_.file("policy.toml"), "job", "add", "emails", "echo"});
    ProcessResult refused = cli(args, env);
    EXPECT_NE(refused.exit_code, 0) << refused.out;
    EXPECT_EQ(refused.err.find(key), std::string::npos);
  }
  json::object s = shown();
  EXPECT_EQ(value_of(s, "auth.api_keys_file"), store);
  EXPECT_EQ(source_of(s, "auth.api_keys_file").rfind("file ", 0), 0u);
  EXPECT_EQ(source_of(shown({}, {{"ASYNCMQ_API_KEYS", empty_store}}), "auth.api_keys_file"),
            "env ASYNCMQ_API_KEYS");
}

// audit.dir in asyncmq.toml turns the audit trail on like --audit-dir: keygen
// writes its key there, commands append records, verify checks them.
TEST_F(SettingsCli, AuditDirFromTheSettingsFileWritesTheTrail) {
  const std::string audit = dir_.file("audit");
  write("asyncmq.toml", backend_toml() + "[audit]\ndir = \"" + audit + "\"\n");
  ProcessResult kg = cli({"audit", "keygen", "--verify-key", dir_.file("verify.key")});
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  EXPECT_TRUE(fs::exists(audit + "/writer.key"));
  ASSERT_EQ(cli({"job", "add", "q", "echo"}).exit_code, 0);
  std::string log = slurp(audit + "/audit.log");
  EXPECT_NE(log.find("\"added\""), std::string::npos) << log;
  ProcessResult verify = cli({"audit", "verify", "--verify-key", dir_.file("verify.key")});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  // A flag (or ASYNCMQ_AUDIT_DIR) names another directory: records go there.
  const std::string elsewhere = dir_.file("audit2");
  ASSERT_EQ(cli({"--audit-dir", elsewhere, "audit", "keygen", "--verify-key", dir_.file("v2.key")})
                .exit_code,
            0);
  ASSERT_EQ(cli({"job", "add", "q", "echo"}, {{"ASYNCMQ_AUDIT_DIR", elsewhere}}).exit_code, 0);
  EXPECT_EQ(slurp(audit + "/audit.log"), log) << "the file's directory was written";
  EXPECT_NE(slurp(elsewhere + "/audit.log").find("\"added\""), std::string::npos);
  EXPECT_EQ(source_of(shown({"--audit-dir", elsewhere}), "audit.dir"), "flag --audit-dir");
  EXPECT_EQ(source_of(shown(), "audit.dir").rfind("file ", 0), 0u);
}

// security.key_file reports where it came from, flag and older variable
// included.
TEST_F(SettingsCli, KeyFileOriginIncludesTheFlagAndTheOlderVariable) {
  write("asyncmq.toml", backend_toml() + "[security]\nkey_file = \"from-file\"\n");
  EXPECT_EQ(value_of(shown(), "security.key_file"), "from-file");
  json::object by_env = shown({}, {{"ASYNCMQ_KEY_FILE", "from-env"}});
  EXPECT_EQ(value_of(by_env, "security.key_file"), "from-env");
  EXPECT_EQ(source_of(by_env, "security.key_file"), "env ASYNCMQ_KEY_FILE");
  json::object by_flag = shown({"--key-file", "from-flag"}, {{"ASYNCMQ_KEY_FILE", "from-env"}});
  EXPECT_EQ(value_of(by_flag, "security.key_file"), "from-flag");
  EXPECT_EQ(source_of(by_flag, "security.key_file"), "flag --key-file");
}

}  // namespace
}  // namespace asyncmq::testing

// End to end through the `asyncmq` binary: API keys are made with
// `apikey create` (shown once), then used with a policy file: a producer key
// may add and is refused when it runs a worker or claims, a worker key may
// not add; each denial exits 1 naming principal, action and queue, and no
// key appears in any output but its own creation.
#include <asyncmq/env.hpp>

#include "security/crypto.hpp"
#include "security/jose.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <iterator>

namespace asyncmq::testing {
namespace {

class IdentityCli : public ::testing::Test {
 protected:
  IdentityCli() {
    std::ofstream(dir_.file("policy.toml")) << R"(
[[grant]]
principal = "apikey:producer-bot"
roles = ["producer"]
queues = ["emails"]

[[grant]]
principal = "apikey:worker-bot"
roles = ["worker"]
queues = ["emails"]

[[grant]]
principal = "jwt:alice"
roles = ["producer"]
queues = ["emails"]

[[grant]]
principal = "apikey:root"
roles = ["admin"]
queues = ["*"]
)";
  }

  // Runs the CLI with a clean identity environment plus `env`.
  ProcessResult cli(std::vector<std::string> args,
                    std::map<std::string, std::optional<std::string>> env = {}) {
    ProcessOptions o;
    for (const char* v : {"ASYNCMQ_API_KEY", "ASYNCMQ_TOKEN", "ASYNCMQ_POLICY", "ASYNCMQ_API_KEYS",
                          "ASYNCMQ_JWKS", "ASYNCMQ_JWT_ISSUER", "ASYNCMQ_JWT_AUDIENCE"})
      o.env[v] = std::nullopt;
    o.env["ASYNCMQ_API_KEYS"] = dir_.file("keys.json");
    for (auto& [k, v] : env) o.env[k] = v;
    std::vector<std::string> argv{ASYNCMQ_CLI_PATH, "--backend", "sqlite://" + dir_.file("q.db")};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = run_process(argv, o);
    outputs_.push_back(r.out + r.err);
    return r;
  }

  std::map<std::string, std::optional<std::string>> as(const std::string& key) {
    return {{"ASYNCMQ_POLICY", dir_.file("policy.toml")}, {"ASYNCMQ_API_KEY", key}};
  }

  std::string create(const std::string& name, const std::string& hint) {
    ProcessResult r = cli({"apikey", "create", "--name", name, "--role-hint", hint, "--expires", "30d"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    outputs_.pop_back();  // the one output allowed to hold the key
    std::string key = r.out;
    while (!key.empty() && key.back() == '\n') key.pop_back();
    EXPECT_EQ(key.rfind("amq_", 0), 0u) << key;
    EXPECT_NE(r.err.find("not shown again"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(key), std::string::npos);
    return key;
  }

  void expect_denied(const ProcessResult& r, const std::string& principal, const std::string& action,
                     const std::string& queue) {
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find(principal), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(action), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("'" + queue + "'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  }

  TempDir dir_;
  std::vector<std::string> outputs_;
};

TEST_F(IdentityCli, ProducerKeyAddsButCannotWorkWorkerKeyCannotAdd) {
  const std::string producer = create("producer-bot", "producer");
  const std::string worker = create("worker-bot", "worker");
  struct stat st {};
  ASSERT_EQ(::stat(dir_.file("keys.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The producer adds.
  ProcessResult add = cli({"job", "add", "emails", "send", "--payload", R"({"to":"x@example.com"})"}, as(producer));
  EXPECT_EQ(add.exit_code, 0) << add.err;

  // It may not run a worker: refused at start, before any claim.
  expect_denied(cli({"worker", "--queue", "emails"}, as(producer)), "apikey:producer-bot", "claim", "emails");
  expect_denied(cli({"policy", "check", "--action", "claim", "--queue", "emails"}, as(producer)),
                "apikey:producer-bot", "claim", "emails");
  // Nor add to a queue it has no grant for.
  expect_denied(cli({"job", "add", "billing", "charge"}, as(producer)), "apikey:producer-bot", "add", "billing");

  // The worker key may not add.
  expect_denied(cli({"job", "add", "emails", "send"}, as(worker)), "apikey:worker-bot", "add", "emails");
  ProcessResult check = cli({"policy", "check", "--action", "claim", "--queue", "emails"}, as(worker));
  EXPECT_EQ(check.exit_code, 0) << check.err;

  // With a policy, no credential is refused; a wrong key too (exit 1).
  ProcessResult none = cli({"job", "add", "emails", "send"}, {{"ASYNCMQ_POLICY", dir_.file("policy.toml")}});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("a policy is configured"), std::string::npos) << none.err;
  std::string wrong = producer;
  wrong[10] = wrong[10] == 'A' ? 'B' : 'A';
  ProcessResult bad = cli({"job", "add", "emails", "send"}, as(wrong));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("unknown key"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.err.find(wrong), std::string::npos);
  // The key on the command line (not only the environment) works the same.
  ProcessResult flag = cli({"--policy", dir_.file("policy.toml"), "--api-key", producer, "job", "add",
                            "emails", "send"});
  EXPECT_EQ(flag.exit_code, 0) << flag.err;

  // list shows names and ids, never keys or hashes; revoke stops a key.
  ProcessResult list = cli({"apikey", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto keys = boost::json::parse(list.out).at("keys").as_array();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].at("name"), "producer-bot");
  const std::string id(keys[0].at("id").as_string());
  EXPECT_NE(keys[0].at("last_used_ms").as_int64(), 0);
  ProcessResult revoke = cli({"apikey", "revoke", id});
  EXPECT_EQ(revoke.exit_code, 0) << revoke.err;
  ProcessResult revoked = cli({"job", "add", "emails", "send"}, as(producer));
  EXPECT_EQ(revoked.exit_code, 1);
  EXPECT_NE(revoked.err.find("revoked"), std::string::npos) << revoked.err;

  // Without a policy, the CLI checks nothing, as before.
  ProcessResult open = cli({"job", "add", "billing", "charge"});
  EXPECT_EQ(open.exit_code, 0) << open.err;
  // A credential without a policy is refused rather than ignored.
  ProcessResult lone = cli({"job", "add", "billing", "charge"}, {{"ASYNCMQ_API_KEY", worker}});
  EXPECT_EQ(lone.exit_code, 2) << lone.err;

  // No key and no key hash anywhere in what the CLI printed.
  for (const std::string& key : {producer, worker}) {
    const std::string hash = security::to_hex(security::sha256(key));
    for (const auto& out : outputs_) {
      EXPECT_EQ(out.find(key), std::string::npos) << out;
      EXPECT_EQ(out.find(key.substr(4)), std::string::npos) << out;
      EXPECT_EQ(out.find(hash), std::string::npos) << out;
    }
  }
}

TEST_F(IdentityCli, ApiKeyCommandsNeedAdminWhenAPolicyIsConfigured) {
  const std::string root = create("root", "admin");
  const std::string producer = create("producer-bot", "producer");
  ProcessResult denied = cli({"apikey", "create", "--name", "sneaky"}, as(producer));
  expect_denied(denied, "apikey:producer-bot", "apikeys", "*");
  ProcessResult allowed = cli({"apikey", "list"}, as(root));
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_NE(allowed.out.find("producer-bot"), std::string::npos);
  ProcessResult bad_expiry = cli({"apikey", "create", "--name", "x", "--expires", "soon"});
  EXPECT_EQ(bad_expiry.exit_code, 2) << bad_expiry.err;
}

// Denials the CLI decides before opening the store (a worker that may not
// claim, apikey commands) reach the audit trail like the others.
TEST_F(IdentityCli, DeniedWorkerStartIsAudited) {
  const std::string producer = create("producer-bot", "producer");
  const std::string audit = dir_.file("audit");
  ProcessResult kg = cli({"--audit-dir", audit, "audit", "keygen", "--verify-key", dir_.file("verify.key")});
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  expect_denied(cli({"--audit-dir", audit, "worker", "--queue", "emails"}, as(producer)),
                "apikey:producer-bot", "claim", "emails");
  expect_denied(cli({"--audit-dir", audit, "apikey", "list"}, as(producer)), "apikey:producer-bot",
                "apikeys", "*");
  expect_denied(cli({"--audit-dir", audit, "purge", "--subject", "someone"}, as(producer)),
                "apikey:producer-bot", "purge", "*");
  expect_denied(cli({"--audit-dir", audit, "--key-file", dir_.file("keys"), "keys", "add"},
                    as(producer)),
                "apikey:producer-bot", "keys", "*");
  expect_denied(cli({"--audit-dir", audit, "audit", "export"}, as(producer)), "apikey:producer-bot",
                "audit", "*");
  std::ifstream in(audit + "/audit.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("denied"), std::string::npos) << log;
  EXPECT_NE(log.find("apikey:producer-bot"), std::string::npos) << log;
  EXPECT_NE(log.find("claim"), std::string::npos) << log;
  EXPECT_NE(log.find("apikeys"), std::string::npos) << log;
  EXPECT_NE(log.find("action=purge"), std::string::npos) << log;
  EXPECT_NE(log.find("action=keys"), std::string::npos) << log;
  EXPECT_NE(log.find("action=audit"), std::string::npos) << log;
  EXPECT_EQ(log.find(producer), std::string::npos);
  EXPECT_EQ(log.find("someone"), std::string::npos);  // the subject is never recorded
}

// A JWT (HS256, key from a JWKS file) through --token / ASYNCMQ_TOKEN.
TEST_F(IdentityCli, TokenFromJwksActsAsItsSubject) {
  using security::base64url_encode;
  const std::string secret = security::random_bytes(32);
  std::ofstream(dir_.file("jwks.json"))
      << R"({"keys":[{"kty":"oct","alg":"HS256","kid":"k1","k":")" << base64url_encode(secret) << "\"}]}";
  auto make = [&](std::int64_t exp) {
    std::string input = base64url_encode(R"({"alg":"HS256","kid":"k1"})") + "." +
                        base64url_encode(R"({"sub":"alice","aud":"asyncmq","exp":)" + std::to_string(exp) + "}");
    return input + "." + base64url_encode(security::hmac_sha256(secret, input));
  };
  // The CLI reads the real clock, so the token is made against it.
  const std::int64_t now = Env::system().now_ms() / 1000;
  const std::string good = make(now + 600), expired = make(now - 3600);
  auto env = [&](const std::string& token) {
    std::map<std::string, std::optional<std::string>> e{{"ASYNCMQ_POLICY", dir_.file("policy.toml")},
                                                        {"ASYNCMQ_TOKEN", token},
                                                        {"ASYNCMQ_JWKS", dir_.file("jwks.json")},
                                                        {"ASYNCMQ_JWT_AUDIENCE", "asyncmq"}};
    return e;
  };
  ProcessResult add = cli({"job", "add", "emails", "send"}, env(good));
  EXPECT_EQ(add.exit_code, 0) << add.err;
  expect_denied(cli({"worker", "--queue", "emails"}, env(good)), "jwt:alice", "claim", "emails");
  ProcessResult old = cli({"job", "add", "emails", "send"}, env(expired));
  EXPECT_EQ(old.exit_code, 1);
  EXPECT_NE(old.err.find("expired"), std::string::npos) << old.err;
  ProcessResult none = cli({"job", "add", "emails", "send"}, env("eyJhbGciOiJub25lIn0.e30."));
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("alg 'none' is never accepted"), std::string::npos) << none.err;
  for (const auto& out : outputs_) {
    EXPECT_EQ(out.find(good), std::string::npos) << out;
    EXPECT_EQ(out.find(good.substr(good.rfind('.') + 1)), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace asyncmq::testing

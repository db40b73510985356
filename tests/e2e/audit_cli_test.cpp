// End to end through the `asyncmq` binary: an audit trail written by several
// CLI processes (adds, a worker, an operator's retry and pause) verifies;
// one changed byte makes `audit verify` exit 1 naming the record.
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace asyncmq::testing {
namespace {

namespace json = boost::json;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class AuditCliTest : public ::testing::Test {
 protected:
  std::string uri() const { return "sqlite://" + dir_.file("queue.db"); }
  std::string audit_dir() const { return dir_.file("audit"); }
  std::string verify_key() const { return dir_.file("verify.key"); }
  std::string log() const { return audit_dir() + "/audit.log"; }

  // With the audit trail on.
  ProcessResult cli(std::vector<std::string> args) {
    std::vector<std::string> argv{ASYNCMQ_CLI_PATH, "--backend", uri(), "--audit-dir", audit_dir()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv);
  }
  // Without it (read-only polling).
  std::string state_of(const std::string& id) {
    ProcessResult r = run_process({ASYNCMQ_CLI_PATH, "--backend", uri(), "job", "show", id, "--json"});
    if (r.exit_code != 0) return "?";
    return std::string(json::parse(r.out).at("state").as_string());
  }
  bool wait_state(const std::string& id, const std::string& state) {
    for (int i = 0; i < 600; ++i)
      if (state_of(id) == state) return true;
    return false;
  }

  TempDir dir_;
};

TEST_F(AuditCliTest, KeygenJobsVerifyTamperVerify) {
  ProcessResult kg = cli({"audit", "keygen", "--verify-key", verify_key()});
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  EXPECT_TRUE(std::filesystem::exists(audit_dir() + "/writer.key"));
  EXPECT_TRUE(std::filesystem::exists(verify_key()));
  EXPECT_EQ(cli({"audit", "keygen", "--verify-key", verify_key()}).exit_code, 1);  // exists

  const std::string marker = "MARKER-e2e-7d3a";
  ProcessResult a1 = cli({"job", "add", "work", "echo", "--payload",
                          R"({"m":")" + marker + R"("})", "--subject", "alice@example.com"});
  ASSERT_EQ(a1.exit_code, 0) << a1.err;
  ProcessResult a2 = cli({"job", "add", "work", "fail", "--payload", R"({"message":")" + marker + R"("})"});
  ASSERT_EQ(a2.exit_code, 0) << a2.err;
  std::string ok = trim(a1.out), bad = trim(a2.out);

  Process worker({ASYNCMQ_CLI_PATH, "--backend", uri(), "--audit-dir", audit_dir(), "worker",
                  "--queue", "work", "--id", "w-e2e"});
  ASSERT_TRUE(wait_state(ok, "completed")) << worker.err_so_far();
  ASSERT_TRUE(wait_state(bad, "dead")) << worker.err_so_far();
  worker.send_signal(SIGTERM);
  auto res = worker.wait_for(60'000);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->exit_code, 0) << res->err;

  EXPECT_EQ(cli({"job", "retry", bad}).exit_code, 0);
  EXPECT_EQ(cli({"queue", "pause", "work"}).exit_code, 0);

  std::string text = slurp(log());
  EXPECT_EQ(text.find(marker), std::string::npos);
  EXPECT_EQ(text.find("alice"), std::string::npos);
  EXPECT_EQ(text.find("failed on purpose"), std::string::npos);
  for (const char* action : {"\"added\"", "\"claimed\"", "\"completed\"", "\"dead\"", "\"retried\"",
                             "\"paused\"", "worker:w-e2e", "\"cli\""})
    EXPECT_NE(text.find(action), std::string::npos) << action << " missing in\n" << text;

  ProcessResult v = cli({"audit", "verify", "--verify-key", verify_key()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("intact: 8 records"), std::string::npos) << v.out;

  ProcessResult ex = cli({"audit", "export", "--since", "7"});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  std::istringstream lines(ex.out);
  std::string line;
  std::vector<std::int64_t> seqs;
  while (std::getline(lines, line)) seqs.push_back(json::parse(line).at("seq").as_int64());
  EXPECT_EQ(seqs, (std::vector<std::int64_t>{7, 8}));

  // Change one byte of record 3 (in its actor or action text).
  std::string changed = text;
  std::size_t line3 = 0;
  for (int i = 0; i < 2; ++i) line3 = changed.find('\n', line3) + 1;
  std::size_t pos = changed.find("\"action\":\"", line3) + 10;
  changed[pos] = changed[pos] == 'x' ? 'y' : 'x';
  { std::ofstream(log(), std::ios::binary | std::ios::trunc) << changed; }
  ProcessResult bad_v = cli({"audit", "verify", "--verify-key", verify_key(), "--json"});
  EXPECT_EQ(bad_v.exit_code, 1) << bad_v.out << bad_v.err;
  json::value report = json::parse(bad_v.out);
  EXPECT_EQ(report.at("intact").as_bool(), false);
  EXPECT_EQ(report.at("problem").at("seq").as_int64(), 3) << bad_v.out;
  EXPECT_EQ(report.at("problem").at("kind").as_string(), "changed");

  EXPECT_EQ(cli({"audit", "verify"}).exit_code, 2);  // --verify-key is required
  EXPECT_EQ(cli({"audit", "export", "--since", "yesterday"}).exit_code, 2);
}

TEST_F(AuditCliTest, AuditDirWithoutKeysIsAnError) {
  ProcessResult r = cli({"job", "add", "work", "noop"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("writer key"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("queue.db")));
}

}  // namespace
}  // namespace asyncmq::testing

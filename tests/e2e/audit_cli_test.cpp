// End to end through the `asyncmq` binary: an audit trail written by several
// CLI processes (adds, a worker, an operator's retry and pause) verifies;
// one changed byte makes `audit verify` exit 1 naming the record. With the
// backend sink on (ASYNCMQ_AUDIT_BACKEND_SINK), the store's audit table
// holds the same lines, verifies with `audit verify --from-backend`, and
// every kind of tampering with it (through sqlite3, as whoever can write the
// database file could) is named by its first bad seq.
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <algorithm>
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
    return run_process(argv, options_);
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

  // Adds an echo job (its payload holds `marker`, with a subject) and one
  // that fails, each by its own CLI process, then runs a worker `worker_id`
  // until the first completed and the second is dead, and stops it.
  // `bad` gets the failed job's id.
  void add_two_and_work(const std::string& marker, const std::string& worker_id, std::string& bad) {
    ProcessResult a1 = cli({"job", "add", "work", "echo", "--payload",
                            R"({"m":")" + marker + R"("})", "--subject", "alice@example.com"});
    ASSERT_EQ(a1.exit_code, 0) << a1.err;
    ProcessResult a2 = cli({"job", "add", "work", "fail", "--payload", R"({"message":")" + marker + R"("})"});
    ASSERT_EQ(a2.exit_code, 0) << a2.err;
    std::string ok = trim(a1.out);
    bad = trim(a2.out);
    Process worker({ASYNCMQ_CLI_PATH, "--backend", uri(), "--audit-dir", audit_dir(), "worker",
                    "--queue", "work", "--id", worker_id},
                   options_);
    ASSERT_TRUE(wait_state(ok, "completed")) << worker.err_so_far();
    ASSERT_TRUE(wait_state(bad, "dead")) << worker.err_so_far();
    worker.send_signal(SIGTERM);
    auto res = worker.wait_for(60'000);
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->exit_code, 0) << res->err;
  }

  // Turns the backend sink on for every cli() and worker from here on.
  void backend_sink_on() { options_.env["ASYNCMQ_AUDIT_BACKEND_SINK"] = "true"; }

  // Runs `sql` on the store directly (the sqlite3 shell's view of it).
  void sql(const std::string& statements) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.file("queue.db").c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, statements.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "") << " in " << statements;
    sqlite3_free(err);
    sqlite3_close(db);
  }

  // `audit verify --from-backend --json`: (exit code, report).
  std::pair<int, json::value> verify_table() {
    ProcessResult r = cli({"audit", "verify", "--from-backend", "--verify-key", verify_key(), "--json"});
    json::value report;
    try {
      report = json::parse(r.out);
    } catch (const std::exception&) {
      ADD_FAILURE() << "not JSON: " << r.out << r.err;
    }
    return {r.exit_code, report};
  }

  TempDir dir_;
  ProcessOptions options_;
};

TEST_F(AuditCliTest, KeygenJobsVerifyTamperVerify) {
  ProcessResult kg = cli({"audit", "keygen", "--verify-key", verify_key()});
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  EXPECT_TRUE(std::filesystem::exists(audit_dir() + "/writer.key"));
  EXPECT_TRUE(std::filesystem::exists(verify_key()));
  EXPECT_EQ(cli({"audit", "keygen", "--verify-key", verify_key()}).exit_code, 1);  // exists

  const std::string marker = "MARKER-e2e-7d3a";
  std::string bad;
  ASSERT_NO_FATAL_FAILURE(add_two_and_work(marker, "w-e2e", bad));

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

// A worker run with the backend sink on: the table verifies and exports
// exactly the file's lines, and holds no payload, subject or error text.
TEST_F(AuditCliTest, WorkerRunWithBackendSinkYieldsTheFilesChainInTheStore) {
  backend_sink_on();
  ASSERT_EQ(cli({"audit", "keygen", "--verify-key", verify_key()}).exit_code, 0);
  const std::string marker = "MARKER-sink-51c2";
  std::string bad;
  ASSERT_NO_FATAL_FAILURE(add_two_and_work(marker, "w-sink", bad));
  EXPECT_EQ(cli({"job", "retry", bad}).exit_code, 0);

  ProcessResult file = cli({"audit", "verify", "--verify-key", verify_key()});
  EXPECT_EQ(file.exit_code, 0) << file.out << file.err;
  ProcessResult table = cli({"audit", "verify", "--from-backend", "--verify-key", verify_key()});
  EXPECT_EQ(table.exit_code, 0) << table.out << table.err;
  EXPECT_NE(table.out.find("intact: 7 records"), std::string::npos) << table.out;
  EXPECT_EQ(table.out, file.out);

  ProcessResult ex_file = cli({"audit", "export"});
  ProcessResult ex_table = cli({"audit", "export", "--from-backend"});
  ASSERT_EQ(ex_file.exit_code, 0) << ex_file.err;
  ASSERT_EQ(ex_table.exit_code, 0) << ex_table.err;
  EXPECT_EQ(ex_table.out, slurp(log()));
  EXPECT_EQ(ex_table.out, ex_file.out);
  ProcessResult since = cli({"audit", "export", "--from-backend", "--since", "6"});
  ASSERT_EQ(since.exit_code, 0) << since.err;
  EXPECT_EQ(since.out, cli({"audit", "export", "--since", "6"}).out);
  EXPECT_EQ(std::count(since.out.begin(), since.out.end(), '\n'), 2);

  EXPECT_EQ(ex_table.out.find(marker), std::string::npos);
  EXPECT_EQ(ex_table.out.find("alice"), std::string::npos);
  EXPECT_EQ(ex_table.out.find("failed on purpose"), std::string::npos);
  for (const char* action : {"\"added\"", "\"claimed\"", "\"completed\"", "\"dead\"",
                             "\"retried\"", "worker:w-sink"})
    EXPECT_NE(ex_table.out.find(action), std::string::npos) << action;

  EXPECT_EQ(cli({"audit", "verify", "--from-backend", "--log", log(), "--verify-key", verify_key()})
                .exit_code,
            2);
}

// Each tampering with the SQLite audit table, from the same intact store,
// is named by `audit verify --from-backend` at its first bad seq.
TEST_F(AuditCliTest, TamperedBackendTableIsNamedByVerifyFromBackend) {
  backend_sink_on();
  ASSERT_EQ(cli({"audit", "keygen", "--verify-key", verify_key()}).exit_code, 0);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(cli({"job", "add", "work", "noop"}).exit_code, 0);
  ASSERT_EQ(cli({"queue", "pause", "work"}).exit_code, 0);
  ASSERT_EQ(cli({"queue", "resume", "work"}).exit_code, 0);
  auto [code, intact] = verify_table();
  ASSERT_EQ(code, 0) << intact;
  ASSERT_EQ(intact.at("records").as_int64(), 6);
  ASSERT_EQ(intact.at("anchored_seq").as_int64(), 6);

  // What an attacker with the file does first; the pristine copy to restore.
  sql("DROP TRIGGER audit_chain_no_update; DROP TRIGGER audit_chain_no_delete;"
      "PRAGMA wal_checkpoint(TRUNCATE);");
  const std::string db = dir_.file("queue.db"), pristine = dir_.file("pristine.db");
  std::filesystem::copy_file(db, pristine);
  struct Case {
    const char* what;
    std::string statements;
    const char* kind;
    std::int64_t seq;
  };
  const std::vector<Case> cases = {
      {"edit a byte", R"(UPDATE audit_chain SET line = replace(line, '"action":"added"', '"action":"xdded"') WHERE seq = 3)",
       "changed", 3},
      {"delete a row", "DELETE FROM audit_chain WHERE seq = 3", "removed", 3},
      {"swap two", "UPDATE audit_chain SET seq = -seq WHERE seq IN (3, 4);"
                   "UPDATE audit_chain SET seq = 4 WHERE seq = -3;"
                   "UPDATE audit_chain SET seq = 3 WHERE seq = -4;",
       "reordered", 3},
      {"insert one", R"(UPDATE audit_chain SET seq = -(seq + 1) WHERE seq >= 4;
                        UPDATE audit_chain SET seq = -seq WHERE seq < 0;
                        INSERT INTO audit_chain(seq, line) SELECT 4, replace(line, '"actor":"cli"', '"actor":"eve"')
                          FROM audit_chain WHERE seq = 3;)",
       "inserted", 4},
      {"truncate the tail", "DELETE FROM audit_chain WHERE seq >= 5", "truncated", 5},
  };
  for (const Case& c : cases) {
    std::filesystem::remove(db + "-wal");
    std::filesystem::remove(db + "-shm");
    std::filesystem::copy_file(pristine, db, std::filesystem::copy_options::overwrite_existing);
    sql(c.statements);
    auto [exit_code, report] = verify_table();
    EXPECT_EQ(exit_code, 1) << c.what << ": " << report;
    if (!report.is_object()) continue;
    EXPECT_FALSE(report.at("intact").as_bool()) << c.what;
    ASSERT_TRUE(report.at("problem").is_object()) << c.what << ": " << report;
    EXPECT_EQ(report.at("problem").at("kind").as_string(), c.kind) << c.what << ": " << report;
    EXPECT_EQ(report.at("problem").at("seq").as_int64(), c.seq) << c.what << ": " << report;
  }
  // The file was never touched.
  EXPECT_EQ(cli({"audit", "verify", "--verify-key", verify_key()}).exit_code, 0);
}

TEST_F(AuditCliTest, AuditDirWithoutKeysIsAnError) {
  ProcessResult r = cli({"job", "add", "work", "noop"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("writer key"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("queue.db")));
}

}  // namespace
}  // namespace asyncmq::testing

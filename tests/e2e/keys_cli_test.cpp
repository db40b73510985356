// End-to-end tests of key rotation and erasure through the `asyncmq`
// command: keys add|activate|list|retire|reseal, purge --subject, and a
// worker reloading its keys on SIGHUP. Real processes, a temporary SQLite
// file; waiting is done by polling with the CLI a bounded number of times.
#include "security/sealing_codec.hpp"

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <csignal>
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
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

class KeysCli : public ::testing::Test {
 protected:
  std::string db() const { return dir_.file("q.db"); }
  std::string keys() const { return dir_.file("keys"); }

  ProcessResult cli(std::vector<std::string> args) {
    std::vector<std::string> argv{ASYNCMQ_CLI_PATH, "--backend", "sqlite://" + db(), "--key-file",
                                  keys()};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = run_process(argv);
    outputs_ += r.out + r.err;
    return r;
  }
  json::value cli_json(std::vector<std::string> args, int want_exit = 0) {
    args.push_back("--json");
    ProcessResult r = cli(args);
    EXPECT_EQ(r.exit_code, want_exit) << r.err;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    EXPECT_FALSE(ec) << "not JSON: " << r.out << r.err;
    return v;
  }
  std::string add_job(const std::string& payload, const std::string& subject = "") {
    std::vector<std::string> args{"job", "add", "q", "echo", "--payload", payload};
    if (!subject.empty()) {
      args.push_back("--subject");
      args.push_back(subject);
    }
    ProcessResult r = cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return trim(r.out);
  }
  json::object key_entry(const json::value& list, const std::string& id) {
    for (const auto& k : list.at("keys").as_array())
      if (k.at("id").as_string() == id) return k.as_object();
    ADD_FAILURE() << "no key " << id;
    return {};
  }
  // The key ids sealing the blobs that `sql` selects for job `id` (bound
  // as ?1, lowercase hex), read straight from the file, in row order.
  std::vector<std::string> stored_keys(const std::string& sql, const std::string& id) {
    sqlite3* h = nullptr;
    EXPECT_EQ(sqlite3_open_v2(db().c_str(), &h, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
    std::string hex;
    for (char c : id)
      if (c != '-') hex.push_back(c);
    sqlite3_bind_text(st, 1, hex.c_str(), -1, SQLITE_TRANSIENT);
    std::vector<std::string> out;
    while (sqlite3_step(st) == SQLITE_ROW)
      out.push_back(security::sealed_key_id(std::string(
          static_cast<const char*>(sqlite3_column_blob(st, 0)),
          static_cast<std::size_t>(sqlite3_column_bytes(st, 0)))));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return out;
  }
  // The key id sealing a stored field of job `id`.
  std::string stored_key_of(const std::string& id, const char* column) {
    auto keys = stored_keys(std::string("SELECT ") + column + " FROM jobs WHERE lower(hex(id)) = ?1", id);
    return keys.empty() ? std::string() : keys.front();
  }
  // The key ids sealing job `id`'s log lines, oldest first.
  std::vector<std::string> stored_log_keys(const std::string& id) {
    return stored_keys("SELECT text FROM logs WHERE lower(hex(job)) = ?1 ORDER BY rowid", id);
  }
  std::string state_of(const std::string& id) {
    ProcessResult r = cli({"job", "show", id, "--json"});
    if (r.exit_code != 0) return "error: " + r.err;
    return std::string(json::parse(r.out).at("state").as_string());
  }
  bool wait_state(const std::string& id, const std::string& state) {
    for (int i = 0; i < 600; ++i)
      if (state_of(id) == state) return true;
    return false;
  }
  // Every base64 key in the key file: none may appear in any output.
  void expect_no_key_bytes_in_outputs() {
    std::istringstream in(slurp(keys()));
    std::string line;
    int checked = 0;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string id, role, b64;
      if (!(f >> id >> role >> b64) || id[0] == '#') continue;
      ++checked;
      EXPECT_EQ(outputs_.find(b64), std::string::npos) << "key " << id << " printed";
      EXPECT_EQ(outputs_.find(b64.substr(0, 12)), std::string::npos) << "key " << id << " printed";
    }
    EXPECT_GT(checked, 0);
  }

  TempDir dir_;
  std::string outputs_;
};

TEST_F(KeysCli, RotationAddActivateResealRetire) {
  EXPECT_EQ(trim(cli({"keys", "add", "--id", "k1"}).out), "k1");
  EXPECT_EQ(cli({"keys", "add", "--id", "ix", "--index"}).exit_code, 0);
  EXPECT_EQ(cli({"keys", "activate", "k1"}).exit_code, 0);
  struct stat st {};
  ASSERT_EQ(::stat(keys().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(add_job(R"({"n":)" + std::to_string(i) + "}"));
  ids.push_back(add_job(R"({"who":"subject"})", "alice"));
  EXPECT_EQ(stored_key_of(ids[0], "payload"), "k1");

  json::value list = cli_json({"keys", "list"});
  EXPECT_EQ(key_entry(list, "k1").at("state"), "primary");
  EXPECT_EQ(key_entry(list, "k1").at("jobs"), 12);
  EXPECT_EQ(key_entry(list, "k1").at("subject_keys"), 1);
  EXPECT_EQ(list.at("index_key"), true);
  EXPECT_EQ(list.at("subject_sealed_jobs"), 1);

  json::value added = cli_json({"keys", "add"});
  const std::string k2 = std::string(added.at("id").as_string());
  EXPECT_EQ(added.at("state"), "decrypt-only");
  EXPECT_EQ(cli({"keys", "activate", k2}).exit_code, 0);
  ProcessResult refused = cli({"keys", "retire", "k1"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("12 stored jobs and 1 subject keys"), std::string::npos) << refused.err;
  EXPECT_EQ(cli({"keys", "retire", k2}).exit_code, 1);  // the primary

  json::value r = cli_json({"keys", "reseal", "--batch", "5"});
  EXPECT_EQ(r.at("resealed"), 12);
  EXPECT_EQ(r.at("complete"), true);
  EXPECT_EQ(r.at("subject_keys_rewrapped"), 1);
  EXPECT_EQ(r.at("primary").as_string(), k2);
  EXPECT_EQ(stored_key_of(ids[0], "payload"), k2);

  EXPECT_EQ(cli({"keys", "retire", "k1"}).exit_code, 0);
  list = cli_json({"keys", "list"});
  EXPECT_EQ(key_entry(list, "k1").at("state"), "disabled");
  EXPECT_EQ(key_entry(list, "k1").at("jobs"), 0);
  EXPECT_EQ(key_entry(list, k2).at("jobs"), 12);
  EXPECT_EQ(key_entry(list, k2).at("subject_keys"), 1);
  EXPECT_TRUE(key_entry(list, k2).at("created").is_string());

  // Everything still opens with k1 disabled.
  json::value job = cli_json({"job", "show", ids[5]});
  EXPECT_EQ(job.at("payload").at("n"), 5);
  job = cli_json({"job", "show", ids.back()});
  EXPECT_EQ(job.at("payload").at("who"), "subject");
  expect_no_key_bytes_in_outputs();
}

// Log lines are sealed like the rest of a job: until `keys reseal` moves
// them, retire refuses the old key and says the log lines need it; after
// the reseal they are under the new key and still read back.
TEST_F(KeysCli, ResealMovesLogLinesAndRetireWaitsForThem) {
  cli({"keys", "add", "--id", "k1"});
  cli({"keys", "activate", "k1"});
  // The built-in sleep task logs "sleeping N ms".
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ProcessResult r = cli({"job", "add", "q", "sleep", "--payload", R"({"ms":0})"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ids.push_back(trim(r.out));
  }
  {
    Process worker({ASYNCMQ_CLI_PATH, "--backend", "sqlite://" + db(), "--key-file", keys(),
                    "worker", "-q", "q"});
    for (const auto& id : ids) ASSERT_TRUE(wait_state(id, "completed")) << worker.err_so_far();
    worker.send_signal(SIGTERM);
    auto res = worker.wait_for(60'000);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->exit_code, 0) << res->err;
    outputs_ += res->out + res->err;
  }
  for (const auto& id : ids) EXPECT_EQ(stored_log_keys(id), std::vector<std::string>{"k1"});

  json::value list = cli_json({"keys", "list"});
  EXPECT_EQ(key_entry(list, "k1").at("jobs"), 3);
  EXPECT_EQ(key_entry(list, "k1").at("log_jobs"), 3);
  EXPECT_EQ(list.at("log_lines_scanned"), 3);
  ProcessResult table = cli({"keys", "list"});
  EXPECT_NE(table.out.find("BY-LOGS"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("3 stored jobs with 3 log lines"), std::string::npos) << table.out;

  cli({"keys", "add", "--id", "k2"});
  cli({"keys", "activate", "k2"});
  ProcessResult refused = cli({"keys", "retire", "k1"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("3 stored jobs (3 of the jobs through their log lines)"),
            std::string::npos)
      << refused.err;

  json::value r = cli_json({"keys", "reseal"});
  EXPECT_EQ(r.at("resealed"), 3);
  EXPECT_EQ(r.at("complete"), true);
  EXPECT_EQ(r.at("log_lines_scanned"), 3);
  for (const auto& id : ids) EXPECT_EQ(stored_log_keys(id), std::vector<std::string>{"k2"});
  list = cli_json({"keys", "list"});
  EXPECT_EQ(key_entry(list, "k1").at("log_jobs"), 0);
  EXPECT_EQ(key_entry(list, "k2").at("log_jobs"), 3);

  ProcessResult retired = cli({"keys", "retire", "k1"});
  EXPECT_EQ(retired.exit_code, 0) << retired.err;
  // With k1 disabled the lines still read back.
  for (const auto& id : ids) {
    json::value logs = cli_json({"job", "logs", id});
    ASSERT_EQ(logs.at("lines").as_array().size(), 1u) << logs;
    EXPECT_EQ(logs.at("lines").at(0).at("text"), "sleeping 0 ms");
  }
  expect_no_key_bytes_in_outputs();
}

TEST_F(KeysCli, PurgeSubjectErasesItsJobsAndKey) {
  cli({"keys", "add", "--id", "k1"});
  cli({"keys", "add", "--id", "ix", "--index"});
  cli({"keys", "activate", "k1"});
  std::string a1 = add_job(R"({"m":"a1"})", "alice@example.com");
  std::string a2 = add_job(R"({"m":"a2"})", "alice@example.com");
  std::string b1 = add_job(R"({"m":"b1"})", "bob@example.com");
  std::string n1 = add_job(R"({"m":"n1"})");
  json::value r = cli_json({"purge", "--subject", "alice@example.com"});
  EXPECT_EQ(r.at("purged_jobs"), 2);
  EXPECT_EQ(r.at("subject_key_destroyed"), true);
  EXPECT_EQ(r.at("scrubbed"), true);
  EXPECT_NE(state_of(a1).find("not found"), std::string::npos);
  EXPECT_NE(state_of(a2).find("not found"), std::string::npos);
  EXPECT_EQ(state_of(b1), "waiting");
  EXPECT_EQ(state_of(n1), "waiting");
  r = cli_json({"purge", "--subject", "alice@example.com"});
  EXPECT_EQ(r.at("purged_jobs"), 0);
  EXPECT_EQ(outputs_.find("alice@"), std::string::npos);  // never echoed
  // Plain text form.
  ProcessResult t = cli({"purge", "--subject", "bob@example.com"});
  EXPECT_EQ(t.exit_code, 0);
  EXPECT_NE(t.out.find("purged 1 jobs"), std::string::npos) << t.out;
  EXPECT_EQ(cli({"purge"}).exit_code, 2);  // --subject is required
}

TEST_F(KeysCli, WorkerReloadsKeysOnSighupAndKeepsThemOnABadFile) {
  cli({"keys", "add", "--id", "k1"});
  cli({"keys", "activate", "k1"});
  ProcessOptions po;
  po.env["ASYNCMQ_LOG_LEVEL"] = "info";  // successful reloads are logged at info
  Process worker({ASYNCMQ_CLI_PATH, "--backend", "sqlite://" + db(), "--key-file", keys(),
                  "worker", "-q", "q"},
                 po);
  std::string first = add_job(R"({"n":1})");
  ASSERT_TRUE(wait_state(first, "completed")) << worker.err_so_far();
  EXPECT_EQ(stored_key_of(first, "result"), "k1");

  cli({"keys", "add", "--id", "k2"});
  cli({"keys", "activate", "k2"});
  worker.send_signal(SIGHUP);
  bool reloaded = false;
  for (int i = 0; i < 300 && !reloaded; ++i) {
    reloaded = worker.err_so_far().find("(SIGHUP): 2 keys, primary 'k2'") != std::string::npos;
    if (!reloaded) cli({"keys", "list"});  // the poll's pace
  }
  ASSERT_TRUE(reloaded) << worker.err_so_far();
  std::string second = add_job(R"({"n":2})");
  ASSERT_TRUE(wait_state(second, "completed")) << worker.err_so_far();
  EXPECT_EQ(stored_key_of(second, "result"), "k2");

  // A key file others may read is refused; the worker keeps k2 and works on.
  ASSERT_EQ(::chmod(keys().c_str(), 0644), 0);
  worker.send_signal(SIGHUP);
  bool failed = false;
  for (int i = 0; i < 300 && !failed; ++i) {
    failed = worker.err_so_far().find("(SIGHUP) failed; keeping the keys already loaded") !=
               std::string::npos;
    if (!failed) run_process({ASYNCMQ_CLI_PATH, "--backend", "sqlite://" + db(), "queue", "stats"});
  }
  ASSERT_TRUE(failed) << worker.err_so_far();
  ASSERT_EQ(::chmod(keys().c_str(), 0600), 0);
  std::string third = add_job(R"({"n":3})");
  ASSERT_TRUE(wait_state(third, "completed")) << worker.err_so_far();
  EXPECT_EQ(stored_key_of(third, "result"), "k2");

  worker.send_signal(SIGTERM);
  auto res = worker.wait_for(60'000);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->exit_code, 0) << res->err;
  outputs_ += res->out + res->err;
  expect_no_key_bytes_in_outputs();
}

}  // namespace
}  // namespace asyncmq::testing

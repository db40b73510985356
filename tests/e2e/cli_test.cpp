// End-to-end tests of the `asyncmq` command (and the demo): each runs the
// real binary as a child process against a temporary SQLite file.
//
// No sleeps: a test that waits for the worker polls with the CLI itself, a
// bounded number of times, or waits for a process to exit.
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

namespace fs = std::filesystem;
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

class CliTest : public ::testing::Test {
 protected:
  std::string db() const { return dir_.file("queue.db"); }
  std::string uri() const { return "sqlite://" + db(); }  // db() is absolute

  ProcessResult cli(std::vector<std::string> args, const ProcessOptions& options = {}) {
    std::vector<std::string> argv{ASYNCMQ_CLI_PATH, "--backend", uri()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, options);
  }
  ProcessResult cli_raw(std::vector<std::string> args, const ProcessOptions& options = {}) {
    std::vector<std::string> argv{ASYNCMQ_CLI_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, options);
  }
  json::value cli_json(std::vector<std::string> args) {
    args.push_back("--json");
    ProcessResult r = cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    EXPECT_FALSE(ec) << "not JSON: " << r.out;
    return v;
  }
  std::string add(std::vector<std::string> args) {
    args.insert(args.begin(), {"job", "add"});
    ProcessResult r = cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return trim(r.out);
  }
  std::string state_of(const std::string& id) {
    json::value v = cli_json({"job", "show", id});
    if (!v.is_object()) return "?";
    return std::string(v.at("state").as_string());
  }
  // Polls with the CLI until `id` reaches `state`; each poll is a full CLI
  // run, so 600 polls are many seconds.
  bool wait_state(const std::string& id, const std::string& state) {
    for (int i = 0; i < 600; ++i)
      if (state_of(id) == state) return true;
    return false;
  }

  TempDir dir_;
};

// ---- round trip ----

TEST_F(CliTest, AddShowListStatsPauseResumeRemove) {
  std::string id = add({"emails", "echo", "--payload", R"({"to":"a@example.com","n":1})",
                        "--priority", "-5", "--attempts", "3", "--backoff", "fixed",
                        "--backoff-delay", "250", "--jitter", "0", "--timeout", "1000", "--lifo",
                        "--idempotency-key", "k-1", "--subject", "user-7"});
  ASSERT_EQ(id.size(), 36u) << id;
  ASSERT_TRUE(fs::exists(db()));

  ProcessResult show = cli({"job", "show", id});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find(id), std::string::npos);
  EXPECT_NE(show.out.find("waiting"), std::string::npos);
  EXPECT_EQ(show.out.find("user-7"), std::string::npos) << "the subject is never shown";

  json::value j = cli_json({"job", "show", id});
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.at("id").as_string(), id);
  EXPECT_EQ(j.at("queue").as_string(), "emails");
  EXPECT_EQ(j.at("task").as_string(), "echo");
  EXPECT_EQ(j.at("state").as_string(), "waiting");
  EXPECT_EQ(j.at("payload"), json::parse(R"({"to":"a@example.com","n":1})"));
  const auto& o = j.at("options");
  EXPECT_EQ(o.at("priority").as_int64(), -5);
  EXPECT_EQ(o.at("attempts").as_int64(), 3);
  EXPECT_EQ(o.at("backoff").at("kind").as_string(), "fixed");
  EXPECT_EQ(o.at("backoff").at("delay_ms").as_int64(), 250);
  EXPECT_EQ(o.at("timeout_ms").as_int64(), 1000);
  EXPECT_TRUE(o.at("lifo").as_bool());
  EXPECT_EQ(o.at("idempotency_key").as_string(), "k-1");
  EXPECT_TRUE(o.at("has_subject").as_bool());
  EXPECT_EQ(j.as_object().count("subject"), 0u);

  std::string id2 = add({"emails", "noop", "--delay", "600000"});
  json::value list = cli_json({"job", "list", "emails", "--state", "waiting"});
  ASSERT_EQ(list.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(list.at("jobs").as_array()[0].at("id").as_string(), id);
  json::value delayed = cli_json({"job", "list", "emails", "--state", "delayed", "--limit", "1"});
  ASSERT_EQ(delayed.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(delayed.at("jobs").as_array()[0].at("id").as_string(), id2);
  ProcessResult table = cli({"job", "list", "emails"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("ID"), std::string::npos);
  EXPECT_NE(table.out.find(id), std::string::npos);

  json::value stats = cli_json({"queue", "stats"});
  ASSERT_EQ(stats.at("queues").as_array().size(), 1u);
  const auto& q = stats.at("queues").as_array()[0];
  EXPECT_EQ(q.at("queue").as_string(), "emails");
  EXPECT_EQ(q.at("counts").at("waiting").as_int64(), 1);
  EXPECT_EQ(q.at("counts").at("delayed").as_int64(), 1);
  EXPECT_FALSE(q.at("paused").as_bool());

  EXPECT_EQ(cli({"queue", "pause", "emails"}).exit_code, 0);
  json::value paused = cli_json({"queue", "stats", "emails"});
  EXPECT_TRUE(paused.at("queues").as_array()[0].at("paused").as_bool());
  ProcessResult human = cli({"queue", "stats"});
  EXPECT_NE(human.out.find("PAUSED"), std::string::npos);
  EXPECT_EQ(cli({"queue", "resume", "emails"}).exit_code, 0);
  paused = cli_json({"queue", "stats", "emails"});
  EXPECT_FALSE(paused.at("queues").as_array()[0].at("paused").as_bool());

  // retry is for failed/dead jobs: a waiting one is a conflict (exit 1).
  ProcessResult retry = cli({"job", "retry", id});
  EXPECT_EQ(retry.exit_code, 1) << retry.err;
  EXPECT_NE(retry.err.find("asyncmq: error: "), std::string::npos);

  EXPECT_EQ(cli({"job", "remove", id}).exit_code, 0);
  ProcessResult gone = cli({"job", "show", id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("not found"), std::string::npos);
  ProcessResult again = cli({"job", "remove", id});
  EXPECT_EQ(again.exit_code, 1);
}

TEST_F(CliTest, EveryReadCommandPrintsOneJsonDocument) {
  std::string id = add({"q1", "echo", "--payload", "[1,2,3]"});
  for (std::vector<std::string> args :
       {std::vector<std::string>{"job", "show", id}, {"job", "list", "q1"},
        {"job", "list", "q1", "--state", "dead"}, {"queue", "stats"}, {"queue", "stats", "q1"}}) {
    args.push_back("--json");
    ProcessResult r = cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    boost::system::error_code ec;
    json::parse(r.out, ec);
    EXPECT_FALSE(ec) << args[0] << " " << args[1] << ": " << r.out;
  }
  // --json before the subcommand works too.
  ProcessResult r = cli_raw({"--json", "--backend", uri(), "job", "show", id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json::parse(r.out).is_object());
  ProcessResult added = cli({"job", "add", "q1", "echo", "--json"});
  EXPECT_EQ(added.exit_code, 0);
  EXPECT_EQ(json::parse(added.out).at("queue").as_string(), "q1");
}

TEST_F(CliTest, ListPagesWithAfterCursor) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(add({"pages", "noop"}));
  json::value p1 = cli_json({"job", "list", "pages", "--limit", "2"});
  ASSERT_EQ(p1.at("jobs").as_array().size(), 2u);
  ASSERT_TRUE(p1.at("next").is_string());
  json::value p2 = cli_json({"job", "list", "pages", "--limit", "2", "--after",
                             std::string(p1.at("next").as_string())});
  ASSERT_EQ(p2.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(p2.at("jobs").as_array()[0].at("id").as_string(), ids[2]);
}

TEST_F(CliTest, BackendFromEnvironment) {
  ProcessOptions env;
  env.env["ASYNCMQ_BACKEND"] = uri();
  ProcessResult r = cli_raw({"job", "add", "envq", "echo"}, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(db()));
  // --backend wins over the environment.
  env.env["ASYNCMQ_BACKEND"] = "bogus://x";
  ProcessResult s = cli_raw({"--backend", uri(), "queue", "stats", "envq"}, env);
  EXPECT_EQ(s.exit_code, 0) << s.err;
}

TEST_F(CliTest, HelpAndUsage) {
  EXPECT_EQ(cli_raw({"--help"}).exit_code, 0);
  EXPECT_EQ(cli_raw({"job", "add", "--help"}).exit_code, 0);
  ProcessResult none = cli_raw({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("asyncmq: error:"), std::string::npos);
  EXPECT_EQ(cli_raw({"frobnicate"}).exit_code, 2);
  EXPECT_FALSE(fs::exists("asyncmq.db")) << "usage errors must not create the default database";
}

// ---- bad input: exit 2, the problem named, nothing created or changed ----

struct BadInput {
  const char* name;
  std::vector<std::string> args;
  const char* message;  // a substring of stderr
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

class CliBadInput : public CliTest, public ::testing::WithParamInterface<BadInput> {};

std::vector<BadInput> bad_inputs() {
  return {
      {"QueueName", {"job", "add", "bad/queue", "echo"}, "invalid queue name"},
      {"EmptyQueueName", {"job", "add", "", "echo"}, "invalid queue name"},
      {"TaskName", {"job", "add", "q", "-dash"}, "task"},
      {"TaskNameChars", {"job", "add", "q", "ta sk"}, "invalid task name"},
      {"NotJson", {"job", "add", "q", "echo", "--payload", "{nope"}, "not valid JSON"},
      {"TrailingJson", {"job", "add", "q", "echo", "--payload", "{} {}"}, "not valid JSON"},
      {"UnknownOption", {"job", "add", "q", "echo", "--bogus"}, "unknown option --bogus"},
      {"StrayArgument", {"job", "add", "q", "echo", "extra"}, "unexpected argument"},
      {"Attempts", {"job", "add", "q", "echo", "--attempts", "0"}, "attempts"},
      {"AttemptsNotNumber", {"job", "add", "q", "echo", "--attempts", "many"}, "--attempts"},
      {"Priority", {"job", "add", "q", "echo", "--priority", "2000000"}, "priority"},
      {"Jitter", {"job", "add", "q", "echo", "--jitter", "1.5"}, "jitter"},
      {"BackoffKind", {"job", "add", "q", "echo", "--backoff", "linear"}, "--backoff"},
      {"NegativeDelay", {"job", "add", "q", "echo", "--delay", "-1"}, "delay"},
      {"LongIdempotencyKey", {"job", "add", "q", "echo", "--idempotency-key", std::string(300, 'k')},
       "idempotency key"},
      {"PayloadFileMissing", {"job", "add", "q", "echo", "--payload-file", "/nonexistent/p.json"},
       "cannot read payload file"},
      {"BadJobIdShow", {"job", "show", "not-a-job-id"}, "invalid job id"},
      {"BadJobIdRetry", {"job", "retry", "1234"}, "invalid job id"},
      {"BadJobIdRemove", {"job", "remove", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"}, "invalid job id"},
      {"UnknownState", {"job", "list", "q", "--state", "sleeping"}, "unknown job state"},
      {"BadLimit", {"job", "list", "q", "--limit", "0"}, "--limit"},
      {"BadAfter", {"job", "list", "q", "--after", "nope"}, "invalid job id"},
      {"StatsQueueName", {"queue", "stats", "no such"}, "invalid queue name"},
      {"PauseQueueName", {"queue", "pause", "a/b"}, "invalid queue name"},
      {"WorkerQueueName", {"worker", "--queue", "a b"}, "invalid queue name"},
      {"WorkerConcurrency", {"worker", "--queue", "q", "--concurrency", "0"}, "concurrency"},
      {"WorkerNoQueue", {"worker"}, "--queue"},
      {"BenchJobs", {"bench", "--jobs", "0"}, "--jobs"},
  };
}

TEST_P(CliBadInput, ExitsTwoAndCreatesNoDatabase) {
  const BadInput& c = GetParam();
  ProcessResult r = cli(c.args);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("asyncmq: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_FALSE(fs::exists(db())) << "bad input created the database";
}

TEST_P(CliBadInput, ExitsTwoAndLeavesAnExistingDatabaseAlone) {
  const BadInput& c = GetParam();
  add({"q", "echo", "--payload", "{}"});
  std::string before = slurp(db());
  ASSERT_FALSE(before.empty());
  ProcessResult r = cli(c.args);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  EXPECT_EQ(slurp(db()), before) << "bad input changed the database";
  EXPECT_FALSE(fs::exists(db() + "-wal") && fs::file_size(db() + "-wal") > 0);
  json::value stats = cli_json({"queue", "stats", "q"});
  EXPECT_EQ(stats.at("queues").as_array()[0].at("total").as_int64(), 1);
}

INSTANTIATE_TEST_SUITE_P(Cases, CliBadInput, ::testing::ValuesIn(bad_inputs()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(CliTest, PayloadOverOneMebibyteIsRefused) {
  std::string path = dir_.file("big.json");
  {
    std::ofstream f(path, std::ios::binary);
    f << '"' << std::string((1 << 20), 'a') << '"';  // 1 MiB + 2 bytes of JSON
  }
  ProcessResult r = cli({"job", "add", "q", "echo", "--payload-file", path});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("limit of 1048576 bytes"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("aaaa"), std::string::npos) << "payload echoed";
  EXPECT_FALSE(fs::exists(db()));

  // Through stdin as well.
  ProcessOptions in;
  in.stdin_data = "[" + std::string((1 << 20) + 10, ' ') + "]";
  ProcessResult s = cli({"job", "add", "q", "echo", "--payload-file", "-"}, in);
  EXPECT_EQ(s.exit_code, 2) << s.err;
  EXPECT_FALSE(fs::exists(db()));

  // Just under the limit is fine.
  in.stdin_data = "\"" + std::string((1 << 20) - 2, 'b') + "\"";
  ProcessResult ok = cli({"job", "add", "q", "echo", "--payload-file", "-"}, in);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST_F(CliTest, ErrorsNeverEchoPayloadsOrPasswords) {
  ProcessResult r = cli({"job", "add", "q", "echo", "--payload", R"({"card":"4111111111111111")"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.find("4111"), std::string::npos) << r.err;
  // A payload given without --payload is a stray argument: not echoed.
  ProcessResult stray = cli({"job", "add", "q", "echo", R"({"card":"4111111111111111"})"});
  EXPECT_EQ(stray.exit_code, 2);
  EXPECT_EQ(stray.err.find("4111"), std::string::npos) << stray.err;

  ProcessResult pw = cli_raw({"--backend", "sqlite://admin:hunter2@host/x.db", "job", "add", "q", "echo"});
  EXPECT_EQ(pw.exit_code, 2) << pw.err;
  EXPECT_EQ(pw.err.find("hunter2"), std::string::npos) << pw.err;
  ProcessResult pw2 =
      cli_raw({"--backend", "postgres://admin:hunter2@db.example/asyncmq", "queue", "stats"});
  EXPECT_EQ(pw2.exit_code, 2) << pw2.err;
  EXPECT_EQ(pw2.err.find("hunter2"), std::string::npos) << pw2.err;
}

TEST_F(CliTest, UnknownBackendSchemeIsUsageError) {
  ProcessResult r = cli_raw({"--backend", "mongodb://localhost/x", "job", "add", "q", "echo"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("unsupported backend scheme"), std::string::npos) << r.err;
  ProcessResult s = cli_raw({"--backend", "not a uri", "queue", "stats"});
  EXPECT_EQ(s.exit_code, 2) << s.err;
  ProcessResult o = cli_raw({"--backend", "sqlite://" + db() + "?colour=blue", "job", "add", "q", "echo"});
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_NE(o.err.find("colour"), std::string::npos) << o.err;
  EXPECT_FALSE(fs::exists(db()));
}

TEST_F(CliTest, GarbageFileAsDatabaseIsRefusedAndLeftUnchanged) {
  const std::string garbage = "this is not a database, just some text\n";
  {
    std::ofstream f(db(), std::ios::binary);
    f << garbage;
  }
  for (std::vector<std::string> args :
       {std::vector<std::string>{"job", "add", "q", "echo"}, {"job", "list", "q"}, {"queue", "stats"},
        {"queue", "pause", "q"}, {"job", "show", "01890a5d-ac96-774b-bcce-b302099a8057"},
        {"worker", "--queue", "q"}}) {
    ProcessResult r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("not an SQLite database"), std::string::npos) << r.err;
  }
  EXPECT_EQ(slurp(db()), garbage);
  EXPECT_FALSE(fs::exists(db() + "-wal"));
  EXPECT_FALSE(fs::exists(db() + "-journal"));
}

TEST_F(CliTest, DirectoryOrMissingDatabase) {
  // Read commands do not create a database.
  ProcessResult r = cli({"queue", "stats"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(db()));
  // A directory is not a database.
  fs::create_directory(db());
  ProcessResult d = cli({"job", "add", "q", "echo"});
  EXPECT_EQ(d.exit_code, 2) << d.err;
  EXPECT_NE(d.err.find("directory"), std::string::npos) << d.err;
  // A missing parent directory is named.
  ProcessResult m = cli_raw({"--backend", "sqlite://" + dir_.file("nope/x.db"), "job", "add", "q", "echo"});
  EXPECT_EQ(m.exit_code, 2) << m.err;
  EXPECT_FALSE(fs::exists(dir_.file("nope")));
}

TEST_F(CliTest, NotFoundIsRuntimeError) {
  add({"q", "echo"});
  for (const char* cmd : {"show", "retry", "remove"}) {
    ProcessResult r = cli({"job", cmd, "01890a5d-ac96-774b-bcce-b302099a8057"});
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
  }
}

// ---- the worker ----

TEST_F(CliTest, WorkerProcessesJobsAndStopsOnSigterm) {
  std::string ok = add({"work", "echo", "--payload", R"({"hello":"world"})"});
  std::string bad = add({"work", "fail", "--payload", R"({"message":"boom"})", "--attempts", "2",
                         "--backoff", "fixed", "--backoff-delay", "10", "--jitter", "0"});
  std::string slept = add({"work", "sleep", "--payload", R"({"ms":20})"});
  std::string nothing = add({"work", "noop"});

  Process worker({ASYNCMQ_CLI_PATH, "--backend", uri(), "worker", "--queue", "work", "--queue",
                  "other", "--concurrency", "4", "--lease-ms", "5000"});
  ASSERT_TRUE(wait_state(ok, "completed")) << worker.err_so_far();
  ASSERT_TRUE(wait_state(bad, "dead")) << worker.err_so_far();
  ASSERT_TRUE(wait_state(slept, "completed")) << worker.err_so_far();
  ASSERT_TRUE(wait_state(nothing, "completed")) << worker.err_so_far();

  json::value done = cli_json({"job", "show", ok});
  EXPECT_EQ(done.at("result"), json::parse(R"({"hello":"world"})"));
  json::value dead = cli_json({"job", "show", bad});
  EXPECT_EQ(dead.at("error").as_string(), "boom");
  EXPECT_EQ(dead.at("attempts_made").as_int64(), 2);
  EXPECT_EQ(cli_json({"job", "show", slept}).at("result").at("slept_ms").as_int64(), 20);

  // A job added while the worker runs, to a second queue.
  std::string later = add({"other", "echo", "--payload", "7"});
  ASSERT_TRUE(wait_state(later, "completed"));

  worker.send_signal(SIGTERM);
  auto res = worker.wait_for(60'000);
  ASSERT_TRUE(res.has_value()) << "worker did not stop on SIGTERM";
  EXPECT_EQ(res->exit_code, 0) << res->err;
  EXPECT_EQ(res->signal, 0);
  EXPECT_NE(res->err.find("stopped"), std::string::npos) << res->err;

  // retry brings the dead job back to waiting; remove deletes it.
  ProcessResult retry = cli({"job", "retry", bad});
  EXPECT_EQ(retry.exit_code, 0) << retry.err;
  json::value again = cli_json({"job", "show", bad});
  EXPECT_EQ(again.at("state").as_string(), "waiting");
  EXPECT_EQ(again.at("attempts_made").as_int64(), 0);
  EXPECT_EQ(cli({"job", "remove", bad}).exit_code, 0);
  EXPECT_EQ(cli({"job", "show", bad}).exit_code, 1);
  json::value stats = cli_json({"queue", "stats", "work"});
  EXPECT_EQ(stats.at("queues").as_array()[0].at("counts").at("completed").as_int64(), 3);
}

TEST_F(CliTest, WorkerStopsOnSigintWithJson) {
  std::string id = add({"w2", "echo"});
  Process worker({ASYNCMQ_CLI_PATH, "--backend", uri(), "worker", "-q", "w2", "--json"});
  ASSERT_TRUE(wait_state(id, "completed")) << worker.err_so_far();
  worker.send_signal(SIGINT);
  auto res = worker.wait_for(60'000);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->exit_code, 0) << res->err;
  json::value stats = json::parse(res->out);
  EXPECT_GE(stats.at("completed").as_int64(), 1);
}

// ---- bench and demo ----

TEST_F(CliTest, BenchOnMemoryPrintsRates) {
  ProcessResult r = cli_raw({"--backend", "memory://", "bench", "--jobs", "300", "--concurrency", "8", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json::value v = json::parse(r.out);
  EXPECT_GT(v.at("enqueue_jobs_per_s").as_double(), 0);
  EXPECT_GT(v.at("process_jobs_per_s").as_double(), 0);
  EXPECT_GT(v.at("end_to_end_jobs_per_s").as_double(), 0);
  EXPECT_EQ(v.at("latency_ms").at("samples").as_int64(), 300);
}

TEST_F(CliTest, BenchOnSqlite) {
  ProcessResult r = cli({"bench", "--jobs", "200", "--concurrency", "4", "--payload-bytes", "256"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("enqueue"), std::string::npos);
  EXPECT_NE(r.out.find("p99"), std::string::npos);
  EXPECT_NE(r.out.find("appended"), std::string::npos);
}

TEST_F(CliTest, DemoRunsToTheEnd) {
  ProcessResult r = run_process({ASYNCMQ_DEMO_PATH, "sqlite://" + dir_.file("demo.db")}, {}, 240'000);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("processed  400 jobs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dead       20"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("processed  400/400"), std::string::npos);
  // The store keeps the dead letters for the CLI.
  ProcessResult list = cli_raw({"--backend", "sqlite://" + dir_.file("demo.db"), "job", "list",
                                "billing", "--state", "dead", "--limit", "100", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(json::parse(list.out).at("jobs").as_array().size(), 20u);
}

}  // namespace
}  // namespace asyncmq::testing

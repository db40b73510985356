// End-to-end tests of the issue-4 commands of `asyncmq` (TTL, idempotency,
// cancel, logs, flows, clean/drain/obliterate, rate limits per queue and per
// group, events): each runs the real binary as a child process against a
// temporary SQLite file.
//
// Bad input is checked to write nothing: the store file is not created, or
// its bytes are unchanged.
//
// No sleeps: a test that waits for a worker polls with the CLI itself, a
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

class FeaturesCliTest : public ::testing::Test {
 protected:
  std::string db() const { return dir_.file("queue.db"); }
  std::string uri() const { return "sqlite://" + db(); }

  std::vector<std::string> argv(std::vector<std::string> args) const {
    std::vector<std::string> v{ASYNCMQ_CLI_PATH, "--backend", uri()};
    v.insert(v.end(), args.begin(), args.end());
    return v;
  }
  ProcessResult cli(std::vector<std::string> args) { return run_process(argv(std::move(args))); }
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
  bool wait_state(const std::string& id, const std::string& state) {
    for (int i = 0; i < 600; ++i)
      if (state_of(id) == state) return true;
    return false;
  }
  std::string write_file(const std::string& name, const std::string& text) {
    std::string path = dir_.file(name);
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  // Runs `args`, expects exit 2 with `needle` in stderr, and nothing written.
  void expect_refused(std::vector<std::string> args, const std::string& needle) {
    bool existed = fs::exists(db());
    std::string before = existed ? slurp(db()) : "";
    ProcessResult r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(fs::exists(db()), existed) << "the store was created";
    if (existed) {
      EXPECT_TRUE(slurp(db()) == before) << "the store changed";
    }
  }
  std::uint64_t count(const std::string& queue, const std::string& state) {
    json::value v = cli_json({"queue", "stats", queue});
    return v.at("queues").at(0).at("counts").at(state).to_number<std::uint64_t>();
  }

  TempDir dir_;
};

TEST_F(FeaturesCliTest, AddWithTtlTimeoutAndIdempotencyKeyDeduplicates) {
  json::value first = cli_json({"job", "add", "q", "echo", "--ttl", "1h", "--timeout", "30s",
                                "--idempotency-key", "order-7", "--idempotency-window", "5m"});
  EXPECT_EQ(first.at("deduplicated"), false);
  std::string id(first.at("id").as_string());

  json::value again = cli_json({"job", "add", "q", "echo", "--idempotency-key", "order-7"});
  EXPECT_EQ(again.at("deduplicated"), true);
  EXPECT_EQ(again.at("id"), json::value(id));

  ProcessResult text = cli({"job", "add", "q", "echo", "--idempotency-key", "order-7"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(trim(text.out), id);
  EXPECT_NE(text.err.find("deduplicated"), std::string::npos) << text.err;
  EXPECT_EQ(count("q", "waiting"), 1u);

  json::value show = cli_json({"job", "show", id});
  EXPECT_EQ(show.at("options").at("ttl_ms"), 3'600'000);
  EXPECT_EQ(show.at("options").at("timeout_ms"), 30'000);
  EXPECT_EQ(show.at("options").at("idempotency_window_ms"), 300'000);
  ProcessResult human = cli({"job", "show", id});
  EXPECT_NE(human.out.find("ttl"), std::string::npos) << human.out;

  // A bare number is milliseconds, as --timeout was before durations.
  json::value ms = cli_json({"job", "add", "q", "echo", "--timeout", "1500"});
  EXPECT_EQ(cli_json({"job", "show", std::string(ms.at("id").as_string())})
                .at("options")
                .at("timeout_ms"),
            1500);
}

TEST_F(FeaturesCliTest, BadInputIsRefusedAndWritesNothing) {
  // No store yet: nothing may create it.
  expect_refused({"job", "add", "q", "echo", "--ttl=-5s"}, "--ttl");
  expect_refused({"job", "add", "q", "echo", "--ttl", "5 parsecs"}, "--ttl");
  expect_refused({"job", "add", "q", "echo", "--idempotency-window", "1m"}, "idempotency");
  std::string cycle = write_file("cycle.json", R"([
    {"ref": "root", "queue": "q", "task": "echo"},
    {"ref": "a", "parent": "b", "queue": "q", "task": "echo"},
    {"ref": "b", "parent": "a", "queue": "q", "task": "echo"}])");
  expect_refused({"flow", "add", "--file", cycle}, "cycle");
  std::string bad_queue = write_file("badq.json", R"([
    {"ref": "root", "queue": "q", "task": "echo"},
    {"ref": "a", "parent": "root", "queue": "no such/queue", "task": "echo"}])");
  expect_refused({"flow", "add", "--file", bad_queue}, "queue");
  std::string bad_option = write_file("badopt.json",
                                      R"({"queue": "q", "task": "echo", "options": {"ttl_ms": -1}})");
  expect_refused({"flow", "add", "--file", bad_option}, "ttl");
  expect_refused({"queue", "limit", "q", "--max", "0"}, "--max");

  // With a store: it stays byte for byte the same.
  add({"q", "echo"});
  ASSERT_TRUE(fs::exists(db()));
  expect_refused({"job", "list", "q", "--state", "finished-ish"}, "finished-ish");
  expect_refused({"queue", "clean", "q", "--state", "bogus", "--older-than", "1h"}, "bogus");
  expect_refused({"queue", "clean", "q", "--state", "completed", "--older-than=-1h"},
                 "--older-than");
  expect_refused({"queue", "obliterate", "q"}, "--force");
  expect_refused({"job", "add", "q", "echo", "--ttl=-1ms"}, "--ttl");
  expect_refused({"flow", "add", "--file", cycle}, "cycle");
  expect_refused({"flow", "add", "--file", bad_queue}, "queue");
  EXPECT_EQ(count("q", "waiting"), 1u);
}

TEST_F(FeaturesCliTest, CancelWaitingJobAtOnce) {
  std::string id = add({"q", "echo"});
  json::value r = cli_json({"job", "cancel", id});
  EXPECT_EQ(r.at("cancelled"), true);
  EXPECT_EQ(r.at("stop_requested"), false);
  EXPECT_EQ(state_of(id), "cancelled");
  EXPECT_EQ(count("q", "cancelled"), 1u);

  ProcessResult twice = cli({"job", "cancel", id});
  EXPECT_EQ(twice.exit_code, 1) << twice.err;  // Conflict: already cancelled
  ProcessResult unknown = cli({"job", "cancel", "0190a5f0-0000-7000-8000-000000000000"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.err;
  ProcessResult bad = cli({"job", "cancel", "not-an-id"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
}

TEST_F(FeaturesCliTest, CancelActiveJobAsksItsHandlerToStopAndLogsShowIt) {
  std::string id = add({"q", "sleep", "--payload", R"({"ms": 600000})", "--attempts", "5"});
  // A short lease so that the heartbeat (lease / 3) carries the request soon.
  Process worker(argv({"worker", "--queue", "q", "--lease-ms", "1500", "--id", "w1"}));
  ASSERT_TRUE(wait_state(id, "active"));

  ProcessResult text = cli({"job", "cancel", id});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("asked"), std::string::npos) << text.out;
  ASSERT_TRUE(wait_state(id, "cancelled")) << worker.err_so_far();
  json::value show = cli_json({"job", "show", id});
  EXPECT_EQ(show.at("attempts_made"), 1);  // cancelled, not retried

  json::value logs = cli_json({"job", "logs", id});
  ASSERT_EQ(logs.at("lines").as_array().size(), 1u) << logs;
  EXPECT_EQ(logs.at("lines").at(0).at("text"), "sleeping 600000 ms");
  ProcessResult human = cli({"job", "logs", id});
  EXPECT_NE(human.out.find("sleeping 600000 ms"), std::string::npos) << human.out;

  worker.send_signal(SIGTERM);
  EXPECT_EQ(worker.wait().exit_code, 0);
}

TEST_F(FeaturesCliTest, ProgressIsShown) {
  std::string id = add({"q", "sleep", "--payload", R"({"ms": 1})"});
  Process worker(argv({"worker", "--queue", "q", "--id", "w1"}));
  ASSERT_TRUE(wait_state(id, "completed"));
  worker.send_signal(SIGTERM);
  EXPECT_EQ(worker.wait().exit_code, 0);
  EXPECT_EQ(cli_json({"job", "show", id}).at("progress"), 100);
  EXPECT_NE(cli({"job", "show", id}).out.find("progress"), std::string::npos);
}

TEST_F(FeaturesCliTest, FlowFlatAndNestedFormsRunParentLast) {
  std::string flat = write_file("flow.json", R"([
    {"ref": "report", "queue": "reports", "task": "echo", "payload": {"r": 1}},
    {"ref": "a", "parent": "report", "queue": "fetch", "task": "echo", "payload": {"n": 1}},
    {"ref": "b", "parent": "report", "queue": "fetch", "task": "fail", "on_failure": "ignore",
     "options": {"attempts": 1}}])");
  json::value ids = cli_json({"flow", "add", "--file", flat});
  EXPECT_EQ(ids.at("jobs"), 3);
  std::string root(ids.at("root").as_string());
  EXPECT_EQ(ids.at("ids").at("report"), json::value(root));
  std::string a(ids.at("ids").at("a").as_string());

  json::value parent = cli_json({"job", "show", root});
  EXPECT_EQ(parent.at("state"), "waiting-children");
  EXPECT_EQ(parent.at("children"), 2);
  EXPECT_EQ(parent.at("pending_children"), 2);
  EXPECT_EQ(cli_json({"job", "show", a}).at("parent"), json::value(root));
  EXPECT_NE(cli({"job", "show", root}).out.find("2 pending"), std::string::npos);
  EXPECT_EQ(count("reports", "waiting-children"), 1u);

  std::string nested = write_file("nested.json", R"({"queue": "reports", "task": "echo",
    "children": [{"task": "echo", "children": [{"queue": "fetch", "task": "echo"}]},
                 {"queue": "fetch", "task": "echo"}]})");
  ProcessResult text = cli({"flow", "add", "--file", nested});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  std::istringstream lines(text.out);
  std::string ref, id, queue, nested_root;
  int n = 0;
  while (lines >> ref >> id >> queue) {
    if (ref == "0") nested_root = id;
    std::string rest;
    std::getline(lines, rest);
    ++n;
  }
  EXPECT_EQ(n, 4) << text.out;

  Process worker(argv({"worker", "--queue", "fetch", "--queue", "reports", "--id", "w1"}));
  EXPECT_TRUE(wait_state(root, "completed")) << worker.err_so_far();
  EXPECT_TRUE(wait_state(nested_root, "completed")) << worker.err_so_far();
  worker.send_signal(SIGTERM);
  EXPECT_EQ(worker.wait().exit_code, 0);
  EXPECT_EQ(state_of(std::string(ids.at("ids").at("b").as_string())), "dead");
  EXPECT_EQ(cli_json({"job", "show", root}).at("pending_children"), 0);
}

TEST_F(FeaturesCliTest, CleanDrainAndObliterateReportWhatTheyRemoved) {
  std::string a = add({"q", "echo"});
  std::string b = add({"q", "echo"});
  add({"q", "echo"});
  add({"q", "echo", "--delay", "600000"});
  cli_json({"job", "cancel", a});
  cli_json({"job", "cancel", b});

  json::value none = cli_json({"queue", "clean", "q", "--state", "cancelled", "--older-than", "1h"});
  EXPECT_EQ(none.at("removed"), 0);
  json::value one = cli_json(
      {"queue", "clean", "q", "--state", "cancelled", "--older-than", "0", "--limit", "1"});
  EXPECT_EQ(one.at("removed"), 1);
  ASSERT_EQ(one.at("ids").as_array().size(), 1u);
  EXPECT_EQ(one.at("ids").at(0), json::value(a));  // oldest first
  ProcessResult text = cli({"queue", "clean", "q", "--state", "cancelled", "--older-than", "0s"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("removed 1 cancelled"), std::string::npos) << text.out;
  EXPECT_EQ(count("q", "cancelled"), 0u);

  json::value drained = cli_json({"queue", "drain", "q"});
  EXPECT_EQ(drained.at("removed"), 2);  // the waiting one and the delayed one
  EXPECT_EQ(count("q", "waiting") + count("q", "delayed"), 0u);

  add({"q", "echo"});
  add({"q", "echo"});
  cli_json({"queue", "limit", "q", "--max", "3"});
  json::value gone = cli_json({"queue", "obliterate", "q", "--force"});
  EXPECT_EQ(gone.at("removed"), 2);
  EXPECT_EQ(cli_json({"queue", "stats"}).at("queues").as_array().size(), 0u);
}

TEST_F(FeaturesCliTest, RateLimitIsSetShownAndRemoved) {
  json::value set = cli_json({"queue", "limit", "q", "--max", "100", "--per", "1s"});
  EXPECT_EQ(set.at("rate_limit").at("max"), 100);
  EXPECT_EQ(set.at("rate_limit").at("interval_ms"), 1000);
  add({"q", "echo"});
  json::value stats = cli_json({"queue", "stats", "q"});
  EXPECT_EQ(stats.at("queues").at(0).at("rate_limit").at("interval_ms"), 1000);
  for (const char* s : {"expired", "cancelled", "waiting-children"})
    EXPECT_TRUE(stats.at("queues").at(0).at("counts").as_object().contains(s)) << s;
  ProcessResult table = cli({"queue", "stats"});
  EXPECT_NE(table.out.find("100/1000ms"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("EXPIRED"), std::string::npos) << table.out;

  ProcessResult shown = cli({"queue", "limit", "q"});
  EXPECT_NE(shown.out.find("at most 100 jobs per 1000 ms"), std::string::npos) << shown.out;
  json::value off = cli_json({"queue", "limit", "q", "--off"});
  EXPECT_TRUE(off.at("rate_limit").is_null());
  EXPECT_TRUE(cli_json({"queue", "stats", "q"}).at("queues").at(0).at("rate_limit").is_null());
}

// Per-group limits end to end: set and shown (text and --json), the group
// key of a job shown, bad input refused, and a worker process that takes a
// quiet tenant's job while a busy tenant waits out its limit (an hour: no
// timing in the test).
TEST_F(FeaturesCliTest, PerGroupLimitAndGroupKeysAreSetShownAndObeyed) {
  expect_refused({"queue", "limit", "q", "--per-group"}, "--max");
  expect_refused({"job", "add", "q", "echo", "--group", std::string(257, 'k')}, "group key");

  json::value set =
      cli_json({"queue", "limit", "q", "--max", "1", "--interval", "1h", "--per-group"});
  EXPECT_EQ(set.at("rate_limit").at("max"), 1);
  EXPECT_EQ(set.at("rate_limit").at("interval_ms"), 3'600'000);
  EXPECT_EQ(set.at("rate_limit").at("per_group"), true);
  ProcessResult shown = cli({"queue", "limit", "q"});
  EXPECT_NE(shown.out.find("for each group key"), std::string::npos) << shown.out;

  std::vector<std::string> busy;
  for (int i = 0; i < 3; ++i) busy.push_back(add({"q", "echo", "--group", "tenant-busy"}));
  std::string quiet = add({"q", "echo", "--group", "tenant-quiet"});
  std::string plain = add({"q", "echo"});
  EXPECT_EQ(cli_json({"job", "show", busy[0]}).at("options").at("group"), "tenant-busy");
  EXPECT_TRUE(cli_json({"job", "show", plain}).at("options").at("group").is_null());
  EXPECT_NE(cli({"job", "show", quiet}).out.find("tenant-quiet"), std::string::npos);

  json::value stats = cli_json({"queue", "stats", "q"});
  EXPECT_EQ(stats.at("queues").at(0).at("rate_limit").at("per_group"), true);
  ProcessResult table = cli({"queue", "stats"});
  EXPECT_NE(table.out.find("1/3600000ms per group"), std::string::npos) << table.out;
  expect_refused({"queue", "limit", "q", "--max=-1", "--per-group"}, "--max");

  Process worker(argv({"worker", "--queue", "q", "--id", "w1"}));
  ASSERT_TRUE(wait_state(quiet, "completed"));
  ASSERT_TRUE(wait_state(plain, "completed"));
  ASSERT_TRUE(wait_state(busy[0], "completed"));
  worker.send_signal(SIGTERM);
  EXPECT_EQ(worker.wait().exit_code, 0);
  EXPECT_EQ(state_of(busy[1]), "waiting");
  EXPECT_EQ(state_of(busy[2]), "waiting");
  EXPECT_EQ(count("q", "completed"), 3u);
}

TEST_F(FeaturesCliTest, EventsTailPrintsPastAndLiveEvents) {
  // A store records events only while followed: this add's are not kept.
  std::string unseen = add({"q", "echo"});
  expect_refused({"events", "record", "--for", "0"}, "--for");
  expect_refused({"events", "record", "--for", "31d"}, "--for");
  json::value rec = cli_json({"events", "record", "--for", "1h"});
  EXPECT_GT(rec.at("recording_until_ms").as_int64(), 0);
  std::string a = add({"q", "echo"});
  add({"other", "echo"});
  add({"q", "echo", "--delay", "60000"});

  ProcessResult past = cli({"events", "tail", "q", "--from-start", "--count", "2", "--json"});
  ASSERT_EQ(past.exit_code, 0) << past.err;
  std::istringstream lines(past.out);
  std::string line;
  std::vector<json::value> events;
  while (std::getline(lines, line)) events.push_back(json::parse(line));
  ASSERT_EQ(events.size(), 2u) << past.out;
  EXPECT_EQ(events[0].at("type"), "waiting");
  EXPECT_EQ(events[0].at("job"), json::value(a));
  EXPECT_NE(events[0].at("job"), json::value(unseen));
  EXPECT_EQ(events[1].at("type"), "delayed");
  EXPECT_EQ(events[1].at("queue"), "q");

  // Live: a tail started now sees only what happens next. The cancel's event
  // comes after everything already in the log, so the first event the tail
  // can see, from whichever point it starts, is that one (or a later one).
  Process tail(argv({"events", "tail", "q", "--count", "1", "--json", "--poll-ms", "20"}));
  std::optional<ProcessResult> r;
  for (int i = 0; i < 600 && !r; ++i) {
    cli_json({"job", "cancel", add({"q", "echo"})});
    r = tail.wait_for(100);
  }
  ASSERT_TRUE(r);
  ASSERT_EQ(r->exit_code, 0) << r->err;
  json::value live = json::parse(r->out);
  EXPECT_EQ(live.at("queue"), "q");
  EXPECT_NE(live.at("job"), json::value(a));

  ProcessResult text = cli({"events", "tail", "--from-start", "--count", "1"});
  EXPECT_NE(text.out.find("waiting"), std::string::npos) << text.out;
}

}  // namespace
}  // namespace asyncmq::testing

// End-to-end tests of `asyncmq repeat ...` and `asyncmq scheduler`: the real
// binary as a child process against a temporary SQLite file. Firing is
// checked with the scheduler's simulated clock (no waiting for real ticks).
#include <asyncmq/env.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <filesystem>

namespace asyncmq::testing {
namespace {

namespace json = boost::json;

class RepeatCli : public ::testing::Test {
 protected:
  std::string db() const { return dir_.file("queue.db"); }
  ProcessResult cli(std::vector<std::string> args) {
    std::vector<std::string> argv{ASYNCMQ_CLI_PATH, "--backend", "sqlite://" + db()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv);
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
  json::array list() {
    auto v = cli_json({"repeat", "list"});
    return v.is_object() ? v.at("repeatables").as_array() : json::array{};
  }
  TempDir dir_;
};

TEST_F(RepeatCli, AddListPauseResumeRemove) {
  auto r = cli({"repeat", "add", "reports", "nightly", "--task", "echo", "--payload", R"({"a":1})",
                "--cron", "30 2 * * *", "--tz", "Europe/Berlin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cli({"repeat", "add", "reports", "beat", "--task", "echo", "--every", "5m", "--catch-up"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto all = list();
  ASSERT_EQ(all.size(), 2u);
  // By name: beat, nightly.
  EXPECT_EQ(all[0].at("name").as_string(), "beat");
  EXPECT_EQ(all[0].at("every_ms").as_int64(), 300'000);
  EXPECT_TRUE(all[0].at("catch_up").as_bool());
  EXPECT_EQ(all[1].at("cron").as_string(), "30 2 * * *");
  EXPECT_EQ(all[1].at("time_zone").as_string(), "Europe/Berlin");
  EXPECT_EQ(all[1].at("payload"), (json::value{{"a", 1}}));
  std::string local(all[1].at("next_fire_local").as_string());
  EXPECT_NE(local.find("02:30:00"), std::string::npos) << local;
  EXPECT_TRUE(local.find("CET") != std::string::npos || local.find("CEST") != std::string::npos ||
              local.find("03:00:00") != std::string::npos)
      << local;

  r = cli({"repeat", "list", "reports"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("NEXT (LOCAL)"), std::string::npos);
  EXPECT_NE(r.out.find("Europe/Berlin"), std::string::npos);

  ASSERT_EQ(cli({"repeat", "pause", "reports", "beat"}).exit_code, 0);
  EXPECT_TRUE(list()[0].at("paused").as_bool());
  ASSERT_EQ(cli({"repeat", "resume", "reports", "beat"}).exit_code, 0);
  EXPECT_FALSE(list()[0].at("paused").as_bool());
  ASSERT_EQ(cli({"repeat", "remove", "reports", "beat"}).exit_code, 0);
  EXPECT_EQ(list().size(), 1u);

  EXPECT_EQ(cli({"repeat", "remove", "reports", "beat"}).exit_code, 1);
  EXPECT_EQ(cli({"repeat", "pause", "reports", "nope"}).exit_code, 1);
}

TEST_F(RepeatCli, BadInputExitsTwoNamingTheProblemAndCreatesNothing) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  std::vector<Case> cases{
      {{"--cron", "0 25 * * *"}, "field 2 (hour)"},
      {{"--cron", "0 1 * * *", "--tz", "Mars/Olympus"}, "Mars/Olympus"},
      {{"--cron", "* * * * *", "--every", "1m"}, "both"},
      {{}, "neither"},
      {{"--every", "5 parsecs"}, "--every"},
      {{"--every", "10ms"}, "shorter than 1s"},
      {{"--every", "1m", "--payload", "{nope"}, "JSON"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"repeat", "add", "q", "r", "--task", "echo"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << c.needle << ": " << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(db()));
}

TEST_F(RepeatCli, SimulatedSchedulerFiresEveryTickOnce) {
  auto r = cli({"repeat", "add", "q", "beat", "--task", "echo", "--every", "1m", "--attempts", "3",
                "--priority", "-5", "--ttl", "10m"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::int64_t t0 = list()[0].at("next_fire_ms").as_int64();
  // Ten simulated minutes at 100x: about 6 s. The clock starts 1 s of real
  // time from now, so that the process is up before the first tick (a tick
  // first seen a whole period late is skipped, as after downtime).
  std::int64_t epoch = Env::system().now_ms() + 1000;
  auto v = cli_json({"scheduler", "--simulate-from", std::to_string(t0 - 10'000), "--simulate-until",
                     std::to_string(t0 + 9 * 60'000 + 10'000), "--simulate-epoch-ms",
                     std::to_string(epoch), "--simulate-speed", "100"});
  EXPECT_EQ(v.at("fired").to_number<std::int64_t>(), 10);
  auto stats = cli_json({"queue", "stats", "q"});
  EXPECT_EQ(stats.at("queues").as_array()[0].at("counts").at("waiting").to_number<std::int64_t>(), 10);
  // Each fired job carries the repeatable's job options.
  auto jobs = cli_json({"job", "list", "q", "--state", "waiting"});
  for (const auto& j : jobs.at("jobs").as_array()) {
    const auto& o = j.at("options");
    EXPECT_EQ(o.at("attempts").to_number<std::int64_t>(), 3);
    EXPECT_EQ(o.at("priority").to_number<std::int64_t>(), -5);
    EXPECT_EQ(o.at("ttl_ms").to_number<std::int64_t>(), 600'000);
  }
}

TEST_F(RepeatCli, BadJobOptionIsRefusedAndNothingWritten) {
  auto r = cli({"repeat", "add", "q", "beat", "--task", "echo", "--every", "1m", "--ttl", "-5s"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--ttl"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(db()));
}

}  // namespace
}  // namespace asyncmq::testing

// Issue 4's acceptance: three scheduler processes on one SQLite file for a
// simulated hour of a `* * * * *` schedule produce exactly 60 jobs.
//
// How the hour is simulated: processes cannot share a FakeEnv, so each runs
// `asyncmq scheduler --simulate-from T0 --simulate-epoch-ms E
// --simulate-speed 75 --simulate-until T1`: the real scheduler loop on a
// clock that reads T0 at the real instant E and runs 75 times faster. The
// three processes get the same E, so they share one simulated clock, as
// processes on one machine share the real one, and race for every tick
// through Backend::fire_repeatable on one file. The hour takes 48 s; a tick
// is missed only if all three processes stall for 800 ms of real time at once.
#include <asyncmq/asyncmq.hpp>
#include <asyncmq/repeat.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace asyncmq::testing {
namespace {

constexpr std::int64_t kMinute = 60'000;

class SchedulerProcesses : public ::testing::Test {
 protected:
  std::string uri() const { return "sqlite://" + dir_.file("store.db"); }
  ProcessResult cli(std::vector<std::string> args) {
    std::vector<std::string> argv{ASYNCMQ_CLI_PATH, "--backend", uri()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv);
  }
  std::int64_t next_fire(const std::string& name) {
    auto r = cli({"repeat", "list", "cron", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    boost::json::value listed = boost::json::parse(r.out);
    for (const auto& v : listed.at("repeatables").as_array())
      if (v.at("name").as_string() == name) return v.at("next_fire_ms").as_int64();
    ADD_FAILURE() << "no repeatable " << name;
    return 0;
  }
  // Runs three simulating schedulers over [from, until] at once; returns
  // the sum of what they report fired.
  std::int64_t race(std::int64_t from, std::int64_t until) {
    std::vector<std::unique_ptr<Process>> procs;
    // Real start a little ahead, so that all three are up by then.
    std::int64_t epoch = Env::system().now_ms() + 2000;
    for (int i = 0; i < 3; ++i) {
      procs.push_back(std::make_unique<Process>(std::vector<std::string>{
          ASYNCMQ_CLI_PATH, "--backend", uri(), "scheduler", "--queue", "cron",
          "--simulate-from", std::to_string(from), "--simulate-until", std::to_string(until),
          "--simulate-epoch-ms", std::to_string(epoch), "--simulate-speed", "75"}));
    }
    std::int64_t fired = 0, lost = 0;
    for (auto& p : procs) {
      auto r = p->wait_for(300'000);
      if (!r) {
        ADD_FAILURE() << "a scheduler process did not finish";
        continue;
      }
      EXPECT_EQ(r->exit_code, 0) << r->err;
      auto v = boost::json::parse(r->out);
      fired += v.at("fired").to_number<std::int64_t>();
      lost += v.at("lost").to_number<std::int64_t>();
    }
    std::cout << "three schedulers: fired " << fired << ", lost the race " << lost << " times\n";
    return fired;
  }
  // Idempotency keys ("repeat:NAME:TICK") of the queue's waiting jobs.
  std::map<std::string, int> ticks_of(const std::string& name) {
    auto client = Client::open(uri());
    Queue q(client, "cron");
    auto page = sync_wait(q.list(JobState::waiting, {}, 1000));
    std::map<std::string, int> out;
    for (const auto& j : page.jobs)
      if (j.options.idempotency_key.rfind("repeat:" + name + ":", 0) == 0)
        out[j.options.idempotency_key]++;
    return out;
  }

  TempDir dir_;
};

TEST_F(SchedulerProcesses, ThreeProcessesOverASimulatedHourFireSixtyJobs) {
  auto r = cli({"repeat", "add", "cron", "minutely", "--task", "echo", "--cron", "* * * * *"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::int64_t t0 = next_fire("minutely");
  // Ticks t0, t0 + 1 min, ..., t0 + 59 min: one simulated hour.
  std::int64_t fired = race(t0 - 30'000, t0 + 59 * kMinute + 30'000);
  auto ticks = ticks_of("minutely");
  EXPECT_EQ(fired, 60);
  ASSERT_EQ(ticks.size(), 60u);
  for (int i = 0; i < 60; ++i) {
    std::string key = "repeat:minutely:" + std::to_string(t0 + i * kMinute);
    EXPECT_EQ(ticks[key], 1) << key;
  }
}

}  // namespace
}  // namespace asyncmq::testing

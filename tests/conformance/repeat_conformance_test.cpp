// Repeatables through the public API and the Scheduler, on every backend,
// with the fake clock: nothing here sleeps. Passes are run at chosen
// instants with Scheduler::fire_due(now).
#include "conformance/backend_fixture.hpp"

#include <asyncmq/cron.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/repeat.hpp>
#include <asyncmq/sync.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace asyncmq::testing {
namespace {

using boost::json::object;

constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kHour = 60 * kMinute;

// Unix ms of a UTC civil time (days_from_civil, H. Hinnant).
std::int64_t utc_ms(int y, unsigned mo, unsigned d, int h, int mi) {
  y -= mo <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const std::int64_t days = era * 146097 + static_cast<std::int64_t>(doe) - 719468;
  return ((days * 24 + h) * 60 + mi) * kMinute;
}

class Repeat : public BackendConformance {
 protected:
  Repeatables reps(const std::string& queue = "cron") {
    return Repeatables(Queue(client(), queue));
  }
  Repeatable add_every(const std::string& name, std::int64_t every, bool catch_up = false) {
    RepeatOptions ro;
    ro.every_ms = every;
    ro.catch_up = catch_up;
    auto r = reps();
    return sync_wait(r.add(name, "tick", object{{"n", name}}, ro));
  }
  Repeatable add_cron(const std::string& name, const std::string& expr,
                      const std::string& tz = "UTC", bool catch_up = false) {
    RepeatOptions ro;
    ro.cron = expr;
    ro.time_zone = tz;
    ro.catch_up = catch_up;
    auto r = reps();
    return sync_wait(r.add(name, "tick", object{{"n", name}}, ro));
  }
  SchedulerPass pass(Scheduler& s) { return sync_wait(s.fire_due(env().now_ms())); }
  SchedulerPass pass() {
    Scheduler s(client());
    return pass(s);
  }
  std::uint64_t waiting(const std::string& queue = "cron") {
    return counts(queue)[static_cast<int>(JobState::waiting)];
  }
  std::vector<Job> jobs(const std::string& queue = "cron") {
    Queue q(client(), queue);
    return sync_wait(q.list(JobState::waiting, {}, 1000)).jobs;
  }
  // Moves the clock to `to` in steps of `step`, one pass per step.
  void walk(std::int64_t to, std::int64_t step) {
    Scheduler s(client());
    while (env().now_ms() < to) {
      env().advance(std::min(step, to - env().now_ms()));
      pass(s);
    }
  }
};

TEST_P(Repeat, EveryNFiresOncePerTick) {
  auto r = add_every("beat", 10'000);
  EXPECT_EQ(r.next_fire_ms, env().now_ms() + 10'000);
  EXPECT_EQ(pass().fired, 0u);
  std::int64_t end = env().now_ms() + 100'000;
  walk(end, 1000);
  EXPECT_EQ(waiting(), 10u);
  // Another pass at the same instant fires nothing more.
  EXPECT_EQ(pass().fired, 0u);
  auto js = jobs();
  ASSERT_EQ(js.size(), 10u);
  EXPECT_EQ(js[0].task, "tick");
  EXPECT_EQ(js[0].payload, R"({"n":"beat"})");
  EXPECT_EQ(js[0].options.idempotency_key,
            "repeat:beat:" + std::to_string(r.created_ms + 10'000));
}

TEST_P(Repeat, CronEveryFiveMinutesFiresAtTheRightMinutes) {
  env().advance(utc_ms(2026, 3, 2, 10, 1) - env().now_ms());
  add_cron("five", "*/5 * * * *");
  walk(utc_ms(2026, 3, 2, 11, 0) + 30'000, 20'000);
  auto js = jobs();
  ASSERT_EQ(js.size(), 12u);  // 10:05 .. 11:00
  for (std::size_t i = 0; i < js.size(); ++i) {
    std::int64_t tick = utc_ms(2026, 3, 2, 10, 5) + static_cast<std::int64_t>(i) * 5 * kMinute;
    EXPECT_EQ(js[i].options.idempotency_key, "repeat:five:" + std::to_string(tick));
    // Each job was made within one walking step of its tick.
    EXPECT_GE(js[i].created_ms, tick);
    EXPECT_LT(js[i].created_ms, tick + 20'000);
  }
}

TEST_P(Repeat, AfterDowntimeFiresOnceWithoutCatchUpAndPerTickWithIt) {
  env().advance(utc_ms(2026, 3, 2, 9, 30) - env().now_ms());
  add_cron("once", "0 * * * *");
  add_cron("every", "0 * * * *", "UTC", /*catch_up=*/true);
  env().advance(3 * kHour);  // 12:30: the ticks at 10, 11 and 12 were missed
  Scheduler s(client());
  auto first = pass(s);
  EXPECT_EQ(first.fired, 2u);
  // catch-up: the next due tick is already past, so passes continue at once.
  EXPECT_LE(first.next_due_ms, env().now_ms());
  for (int i = 0; i < 5; ++i) pass(s);
  std::map<std::string, int> per_name;
  for (const auto& j : jobs()) per_name[j.options.idempotency_key.substr(0, 12)]++;
  EXPECT_EQ(per_name["repeat:once:"], 1);
  EXPECT_EQ(per_name["repeat:every"], 3);
  auto list = sync_wait(reps().list());
  ASSERT_EQ(list.size(), 2u);
  for (const auto& r : list) EXPECT_EQ(r.next_fire_ms, utc_ms(2026, 3, 2, 13, 0)) << r.name;
}

TEST_P(Repeat, PausedFiresNothingAndResumeContinuesFromTheNextTick) {
  add_every("beat", kMinute, /*catch_up=*/true);
  auto r = reps();
  sync_wait(r.pause("beat"));
  EXPECT_TRUE(sync_wait(r.list())[0].paused);
  walk(env().now_ms() + 10 * kMinute + 1000, 30'000);
  EXPECT_EQ(waiting(), 0u);
  sync_wait(r.resume("beat"));
  auto after = sync_wait(r.list())[0];
  EXPECT_FALSE(after.paused);
  EXPECT_GT(after.next_fire_ms, env().now_ms());
  EXPECT_EQ(pass().fired, 0u);  // the paused ticks are gone, even with catch-up
  walk(env().now_ms() + kMinute, 30'000);
  EXPECT_EQ(waiting(), 1u);
  EXPECT_THROW(sync_wait(r.pause("nope")), NotFound);
  EXPECT_THROW(sync_wait(r.resume("nope")), NotFound);
}

TEST_P(Repeat, RemoveStopsIt) {
  add_every("beat", kMinute);
  walk(env().now_ms() + kMinute, 30'000);
  EXPECT_EQ(waiting(), 1u);
  auto r = reps();
  sync_wait(r.remove("beat"));
  EXPECT_TRUE(sync_wait(r.list()).empty());
  walk(env().now_ms() + 10 * kMinute, 30'000);
  EXPECT_EQ(waiting(), 1u);
  EXPECT_THROW(sync_wait(r.remove("beat")), NotFound);
}

TEST_P(Repeat, TwoSchedulersOverAnHourFireEachTickExactlyOnce) {
  env().advance(utc_ms(2026, 3, 2, 10, 0) + 1 - env().now_ms());
  add_cron("minutely", "* * * * *");
  Scheduler a(client()), b(client());
  std::size_t fired = 0, lost = 0;
  std::int64_t end = env().now_ms() + kHour;
  while (env().now_ms() < end) {
    env().advance(7'000);
    // Both see the same due tick; the second one's compare-and-set fails.
    std::int64_t now = env().now_ms();
    auto pa = sync_wait(a.fire_due(now));
    auto pb = sync_wait(b.fire_due(now));
    fired += pa.fired + pb.fired;
    lost += pa.lost + pb.lost;
  }
  auto js = jobs();
  EXPECT_EQ(js.size(), 60u);
  EXPECT_EQ(fired, 60u);
  std::set<std::string> keys;
  for (const auto& j : js) keys.insert(j.options.idempotency_key);
  EXPECT_EQ(keys.size(), 60u);
}

TEST_P(Repeat, StaleSchedulerLosesTheTickItSawDue) {
  // A scheduler that read the repeatable before another fired the tick must
  // not fire it again: the compare-and-set on next_fire_ms refuses it.
  add_every("beat", kMinute);
  env().advance(kMinute);
  auto stale = sync_wait(client()->backend().repeatables("cron"))[0];
  EXPECT_EQ(pass().fired, 1u);
  Job j = make_job("cron", "tick");
  EXPECT_FALSE(sync_wait(client()->backend().fire_repeatable(
      "cron", "beat", stale.next_fire_ms, stale.next_fire_ms + kMinute, j)));
  EXPECT_EQ(waiting(), 1u);
}

TEST_P(Repeat, DaylightSavingDaysInBerlinFollowTheCronRules) {
  // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). 02:30 does not
  // exist: a fixed-time job fires once, at the change.
  env().advance(utc_ms(2026, 3, 27, 12, 0) - env().now_ms());
  add_cron("night", "30 2 * * *", "Europe/Berlin");
  walk(utc_ms(2026, 3, 31, 12, 0), 10 * kMinute);
  std::vector<std::string> keys;
  for (const auto& j : jobs()) keys.push_back(j.options.idempotency_key);
  std::vector<std::string> want{
      "repeat:night:" + std::to_string(utc_ms(2026, 3, 28, 1, 30)),  // 02:30 CET
      "repeat:night:" + std::to_string(utc_ms(2026, 3, 29, 1, 0)),   // the change: 03:00 CEST
      "repeat:night:" + std::to_string(utc_ms(2026, 3, 30, 0, 30)),  // 02:30 CEST
      "repeat:night:" + std::to_string(utc_ms(2026, 3, 31, 0, 30)),
  };
  EXPECT_EQ(keys, want);
  // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice and
  // a fixed-time job fires in the first pass only.
  auto r = reps();
  sync_wait(r.remove("night"));
  env().advance(utc_ms(2026, 10, 24, 12, 0) - env().now_ms());
  add_cron("fall", "30 2 * * *", "Europe/Berlin");
  walk(utc_ms(2026, 10, 26, 12, 0), 10 * kMinute);
  keys.clear();
  for (const auto& j : jobs())
    if (j.options.idempotency_key.rfind("repeat:fall:", 0) == 0) keys.push_back(j.options.idempotency_key);
  want = {
      "repeat:fall:" + std::to_string(utc_ms(2026, 10, 25, 0, 30)),  // 02:30 CEST
      "repeat:fall:" + std::to_string(utc_ms(2026, 10, 26, 1, 30)),  // 02:30 CET
  };
  EXPECT_EQ(keys, want);
}

TEST_P(Repeat, BadInputIsRefusedNamingTheProblemAndWritesNothing) {
  auto r = reps();
  auto refused = [&](RepeatOptions ro, const std::string& name, const std::string& task,
                     const std::string& needle) {
    try {
      sync_wait(r.add(name, task, object{}, ro));
      ADD_FAILURE() << "accepted, expected: " << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  RepeatOptions bad_field;
  bad_field.cron = "0 25 * * *";
  refused(bad_field, "x", "t", "field 2 (hour)");
  RepeatOptions bad_zone;
  bad_zone.cron = "0 1 * * *";
  bad_zone.time_zone = "Mars/Olympus";
  refused(bad_zone, "x", "t", "Mars/Olympus");
  RepeatOptions both;
  both.cron = "* * * * *";
  both.every_ms = 60'000;
  refused(both, "x", "t", "exactly one of cron and every (both");
  refused(RepeatOptions{}, "x", "t", "exactly one of cron and every (neither");
  RepeatOptions tiny;
  tiny.every_ms = 10;
  refused(tiny, "x", "t", "every 10 ms");
  RepeatOptions ok;
  ok.every_ms = 60'000;
  refused(ok, "bad name!", "t", "repeatable");
  refused(ok, "x", "", "task");
  EXPECT_TRUE(sync_wait(client()->backend().repeatables("")).empty());
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Repeat, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

// The worker's side of the issue-4 features, on every backend: progress and
// log lines of a handler are stored, cancel reaches a running handler through
// its heartbeat, a flow parent sees its children's results, a job past its
// TTL never runs, and a rate-limited queue never starts more than its limit
// in a window (per queue, or per group key without one group holding back
// the others). Time is a FakeEnv; nothing sleeps.
#include "conformance/worker_fixture.hpp"

#include <asyncmq/error.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

namespace asyncmq::testing {
namespace {

using boost::json::object;

TEST_P(WorkerConformance, HandlerProgressAndLogLinesAreStored) {
  tasks->add("report", [](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    ctx.log("starting");
    ctx.progress(40);
    co_await ctx.env().sleep_for(10);
    ctx.progress(object{{"stage", "merge"}});
    ctx.log("done with " + std::to_string(ctx.payload().at("n").as_int64()));
    co_return "ok";
  });
  JobId id = add("q", "report", object{{"n", 7}}, {});
  run_worker(options(), [&] { return state_of(id) == JobState::completed; });

  auto job = sync_wait(client()->get(id));
  EXPECT_EQ(job->progress, R"({"stage":"merge"})");
  auto lines = sync_wait(client()->logs(id));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].text, "starting");
  EXPECT_EQ(lines[1].text, "done with 7");
  EXPECT_LE(lines[0].time_ms, lines[1].time_ms);
}

TEST_P(WorkerConformance, CancelReachesTheRunningHandlerAtItsNextHeartbeat) {
  std::atomic<bool> started{false};
  std::atomic<int> runs{0};
  std::int64_t saw_cancel_at = -1;
  tasks->add("long", [&](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    ++runs;
    started = true;
    while (!ctx.cancelled()) co_await ctx.env().sleep_for(100);
    saw_cancel_at = ctx.env().now_ms();
    throw std::runtime_error("stopped on request");
  });
  JobOptions o;
  o.attempts = 5;  // a plain failure would be retried; a cancelled one is not
  JobId id = add("q", "long", object{}, o);

  WorkerOptions wo = options();
  wo.heartbeat_ms = 1'000;
  Worker worker(client(), tasks, wo);
  boost::asio::io_context io;
  bool finished = false;
  start(worker, io, finished);
  ASSERT_TRUE(run_until(io, env(), [&] { return started.load(); }));
  std::int64_t cancelled_at = env().now_ms();
  EXPECT_EQ(sync_wait(client()->cancel(id)), JobState::active);
  EXPECT_TRUE(sync_wait(backend().get(id))->cancel_requested);
  ASSERT_TRUE(run_until(io, env(), [&] { return state_of(id) == JobState::cancelled; }));
  worker.stop();
  ASSERT_TRUE(run_until(io, env(), [&] { return finished; }));

  EXPECT_GE(saw_cancel_at, cancelled_at);
  EXPECT_LE(saw_cancel_at, cancelled_at + wo.heartbeat_ms + 100);  // the next heartbeat
  EXPECT_EQ(runs.load(), 1);
  auto job = sync_wait(backend().get(id));
  EXPECT_EQ(job->attempts_made, 1);
  EXPECT_EQ(counts("q")[static_cast<int>(JobState::cancelled)], 1u);
}

TEST_P(WorkerConformance, FlowParentRunsLastAndSeesItsChildrenResults) {
  std::mutex m;
  std::vector<std::string> order;
  tasks->add("child", [&](TaskContext& ctx) -> boost::json::value {
    std::lock_guard lock(m);
    order.push_back("child");
    return ctx.payload().at("n").as_int64() * 2;
  }, TaskOptions{.blocking = false});
  std::vector<ChildResult> seen;
  tasks->add("parent", [&](TaskContext& ctx) -> boost::json::value {
    std::lock_guard lock(m);
    order.push_back("parent");
    seen = ctx.children();
    std::int64_t sum = 0;
    for (const auto& c : ctx.children()) sum += c.result.as_int64();
    return sum;
  }, TaskOptions{.blocking = false});
  FlowJob root;
  root.task = "parent";
  root.payload = object{};
  for (int n = 1; n <= 3; ++n) {
    FlowJob c;
    c.queue = "kids";
    c.task = "child";
    c.payload = object{{"n", n}};
    root.children.push_back(std::move(c));
  }
  Queue q(client(), "q");
  FlowIds ids = sync_wait(q.add_flow(std::move(root)));
  EXPECT_EQ(state_of(ids.root), JobState::waiting_children);

  WorkerOptions wo = options();
  wo.queues = {"q", "kids"};
  run_worker(wo, [&] { return state_of(ids.root) == JobState::completed; });

  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order.back(), "parent");
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& c : seen) {
    EXPECT_EQ(c.state, JobState::completed);
    EXPECT_EQ(c.queue, "kids");
  }
  EXPECT_EQ(sync_wait(client()->get(ids.root))->result, "12");
}

TEST_P(WorkerConformance, JobThatWaitsPastItsTtlIsNeverRun) {
  std::atomic<int> runs{0};
  tasks->add("t", [&](TaskContext&) -> boost::json::value {
    ++runs;
    return "ran";
  }, TaskOptions{.blocking = false});
  JobOptions o;
  o.ttl_ms = 5'000;
  JobId stale = add("q", "t", object{}, o);
  JobId fresh_delayed = [&] {
    JobOptions d;
    d.ttl_ms = 5'000;
    d.delay_ms = 10'000;  // due after its TTL: never runs either
    return add("q", "t", object{}, d);
  }();
  env().advance(6'000);  // the worker starts after the TTL passed
  JobId ok = add("q", "t", object{}, o);

  WorkerStats stats = run_worker(options(), [&] {
    return state_of(ok) == JobState::completed && state_of(fresh_delayed) == JobState::expired;
  });
  EXPECT_EQ(state_of(stale), JobState::expired);
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(stats.completed, 1u);
}

TEST_P(WorkerConformance, RateLimitedQueueNeverStartsMoreThanItsLimitInAWindow) {
  std::mutex m;
  std::vector<std::int64_t> starts;
  tasks->add("t", [&](TaskContext& ctx) -> boost::json::value {
    std::lock_guard lock(m);
    starts.push_back(ctx.env().now_ms());
    return nullptr;
  }, TaskOptions{.blocking = false});
  Queue q(client(), "q");
  sync_wait(q.set_rate_limit(RateLimit{3, 1'000}));
  std::vector<JobId> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(add("q", "t", object{}, {}));

  WorkerOptions wo = options();
  wo.concurrency = 8;
  run_worker(wo, [&] { return all_in(ids, JobState::completed); });

  ASSERT_EQ(starts.size(), 12u);
  std::sort(starts.begin(), starts.end());
  for (std::size_t i = 0; i < starts.size(); ++i) {
    auto in_window = std::count_if(starts.begin(), starts.end(), [&](std::int64_t t) {
      return t >= starts[i] && t < starts[i] + 1'000;
    });
    EXPECT_LE(in_window, 3) << "window starting at " << starts[i];
  }
  // Limited, not stopped: 12 jobs at 3 per second take at least 3 s.
  EXPECT_GE(starts.back() - starts.front(), 3'000);
}

// Per group: each tenant within its own limit, and a tenant with a backlog
// does not delay the others' jobs.
TEST_P(WorkerConformance, PerGroupLimitHoldsForEachTenantWithoutBlockingTheOthers) {
  std::mutex m;
  std::map<std::string, std::vector<std::int64_t>> starts;
  tasks->add("t", [&](TaskContext& ctx) -> boost::json::value {
    std::lock_guard lock(m);
    starts[ctx.job().options.group].push_back(ctx.env().now_ms());
    return nullptr;
  }, TaskOptions{.blocking = false});
  Queue q(client(), "q");
  sync_wait(q.set_rate_limit(RateLimit{2, 1'000, true}));
  std::vector<JobId> ids;
  JobOptions hot;
  hot.group = "hot";
  for (int i = 0; i < 8; ++i) ids.push_back(add("q", "t", object{}, hot));
  JobOptions cold;
  cold.group = "cold";
  for (int i = 0; i < 2; ++i) ids.push_back(add("q", "t", object{}, cold));

  WorkerOptions wo = options();
  wo.concurrency = 8;
  run_worker(wo, [&] { return all_in(ids, JobState::completed); });

  ASSERT_EQ(starts["hot"].size(), 8u);
  ASSERT_EQ(starts["cold"].size(), 2u);
  for (auto& [group, times] : starts) {
    std::sort(times.begin(), times.end());
    for (std::size_t i = 0; i < times.size(); ++i) {
      auto in_window = std::count_if(times.begin(), times.end(), [&](std::int64_t t) {
        return t >= times[i] && t < times[i] + 1'000;
      });
      EXPECT_LE(in_window, 2) << group << ": window starting at " << times[i];
    }
  }
  // The cold tenant ran before the hot one's third job, not behind its
  // backlog; the hot one was limited, not stopped: 8 jobs at 2 per second.
  EXPECT_LT(starts["cold"].back(), starts["hot"][2]);
  EXPECT_GE(starts["hot"].back() - starts["hot"].front(), 3'000);
}

}  // namespace
}  // namespace asyncmq::testing

// The worker's behaviour, on every backend: handlers of each kind, retries
// with backoff to dead, the concurrency limit, leases, fencing, reclaim of
// stalled jobs and graceful stop. Time is a FakeEnv; nothing sleeps.
#include "conformance/worker_fixture.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/task.hpp>
#include <asyncmq/worker.hpp>

#include <boost/asio/co_spawn.hpp>

#include <atomic>
#include <thread>

namespace asyncmq::testing {
namespace {

using boost::json::object;

TEST_P(WorkerConformance, RunsCoroutineInlineAndBlockingHandlers) {
  tasks->add("co", [](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    co_await ctx.env().sleep_for(10);
    co_return object{{"co", ctx.payload().at("n")}};
  });
  tasks->add("inline", [](TaskContext& ctx) -> boost::json::value {
    return ctx.payload().at("n").as_int64() + 1;
  }, TaskOptions{.blocking = false});
  tasks->add("blocking", [](TaskContext& ctx) -> boost::json::value {
    return ctx.payload().at("n").as_int64() * 10;
  });
  JobId a = add("q", "co", object{{"n", 1}}, {});
  JobId b = add("q", "inline", object{{"n", 2}}, {});
  JobId c = add("q", "blocking", object{{"n", 3}}, {});

  WorkerStats stats = run_worker(options(), [&] { return all_in({a, b, c}, JobState::completed); });

  EXPECT_EQ(sync_wait(client()->get(a))->result, R"({"co":1})");
  EXPECT_EQ(sync_wait(client()->get(b))->result, "3");
  EXPECT_EQ(sync_wait(client()->get(c))->result, "30");
  EXPECT_EQ(stats.completed, 3u);
  EXPECT_EQ(stats.claimed, 3u);
}

TEST_P(WorkerConformance, FailingJobIsRetriedWithBackoffUntilDead) {
  std::atomic<int> calls{0};
  std::vector<std::int64_t> started;
  tasks->add("boom", [&](TaskContext& ctx) -> boost::json::value {
    ++calls;
    started.push_back(ctx.env().now_ms());
    throw std::runtime_error("boom #" + std::to_string(ctx.attempt()));
  }, TaskOptions{.blocking = false});
  JobOptions o;
  o.attempts = 3;
  o.backoff = Backoff{Backoff::Kind::exponential, 1000, 60'000, 0.0};
  JobId id = add("q", "boom", object{}, o);

  WorkerStats stats = run_worker(options(), [&] { return state_of(id) == JobState::dead; });

  auto job = sync_wait(client()->get(id));
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(job->attempts_made, 3);
  EXPECT_EQ(job->error, "boom #3");
  ASSERT_EQ(started.size(), 3u);
  EXPECT_GE(started[1] - started[0], 1000);  // first retry waits the base delay
  EXPECT_GE(started[2] - started[1], 2000);  // the second twice as long
  EXPECT_EQ(stats.retried, 2u);
  EXPECT_EQ(stats.dead, 1u);
}

TEST_P(WorkerConformance, FlakyJobSucceedsOnRetry) {
  tasks->add("flaky", [](TaskContext& ctx) -> boost::json::value {
    if (ctx.attempt() < 2) throw std::runtime_error("transient");
    return "ok";
  }, TaskOptions{.blocking = false});
  JobOptions o;
  o.attempts = 3;
  o.backoff.delay_ms = 100;
  JobId id = add("q", "flaky", object{}, o);
  run_worker(options(), [&] { return state_of(id) == JobState::completed; });
  auto job = sync_wait(client()->get(id));
  EXPECT_EQ(job->attempts_made, 2);
  EXPECT_EQ(job->result, "\"ok\"");
}

TEST_P(WorkerConformance, UnrecoverableErrorAndUnknownTaskGoDeadWithAClearReason) {
  tasks->add("fatal", [](TaskContext&) -> boost::json::value {
    throw UnrecoverableError("card expired");
  }, TaskOptions{.blocking = false});
  JobOptions o;
  o.attempts = 5;
  JobId fatal = add("q", "fatal", object{}, o);
  JobId unknown = add("q", "nobody-handles-this", object{}, {});
  run_worker(options(), [&] { return all_in({fatal, unknown}, JobState::dead); });
  auto f = sync_wait(client()->get(fatal));
  EXPECT_EQ(f->attempts_made, 1);
  EXPECT_EQ(f->error, "card expired");
  auto u = sync_wait(client()->get(unknown));
  EXPECT_NE(u->error.find("no handler registered for task 'nobody-handles-this'"), std::string::npos);
}

TEST_P(WorkerConformance, NeverRunsMoreThanItsConcurrency) {
  int running = 0, peak = 0;
  tasks->add("slow", [&](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    peak = std::max(peak, ++running);
    co_await ctx.env().sleep_for(100);
    --running;
    co_return nullptr;
  });
  std::vector<JobId> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(add("q", "slow", object{}, {}));
  auto o = options();
  o.concurrency = 3;
  run_worker(o, [&] { return all_in(ids, JobState::completed); });
  EXPECT_EQ(peak, 3);
}

TEST_P(WorkerConformance, StalledJobIsReclaimedAndCompletedByALiveWorker) {
  tasks->add("t", [](TaskContext&) -> boost::json::value { return "done"; },
             TaskOptions{.blocking = false});
  JobId id = add("q", "t", object{}, {});
  // A worker that died holding the job: claimed, never heard from again.
  auto dead_claim = claim("q", 1, 5'000, "dead-worker");
  ASSERT_EQ(dead_claim.size(), 1u);

  auto o = options();
  o.maintenance_ms = 1'000;
  Worker worker(client(), tasks, o);
  boost::asio::io_context io;
  bool finished = false;
  start(worker, io, finished);
  std::int64_t t0 = env().now_ms();
  ASSERT_TRUE(run_until(io, env(), [&] { return state_of(id) == JobState::completed; }));
  EXPECT_GT(env().now_ms() - t0, 5'000);  // not before the lease expired
  worker.stop();
  ASSERT_TRUE(run_until(io, env(), [&] { return finished; }));
  auto job = sync_wait(client()->get(id));
  EXPECT_EQ(job->stalls, 1);
  EXPECT_EQ(job->attempts_made, 2);
  EXPECT_EQ(worker.stats().reclaimed, 1u);
  // The dead worker comes back to life: its late completion is refused.
  EXPECT_EQ(finish({completed(dead_claim[0], "zombie")}), std::vector<bool>{false});
  EXPECT_EQ(sync_wait(client()->get(id))->result, "\"done\"");
}

TEST_P(WorkerConformance, WorkerThatLostItsLeaseIsCancelledAndFenced) {
  bool saw_cancel = false;
  tasks->add("long", [&](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    while (!ctx.cancelled()) co_await ctx.env().sleep_for(100);
    saw_cancel = true;
    co_return "finished anyway";
  });
  JobId id = add("q", "long", object{}, {});
  auto o = options();
  o.lease_ms = 1'000;
  o.heartbeat_ms = 3'000;      // too slow to keep the lease: the worker stalls
  o.maintenance_ms = 600'000;  // and does not reclaim for itself
  Worker worker(client(), tasks, o);
  boost::asio::io_context io;
  bool finished = false;
  start(worker, io, finished);
  ASSERT_TRUE(run_until(io, env(), [&] { return state_of(id) == JobState::active; }));
  // Another worker's housekeeping reclaims the expired job and claims it.
  ASSERT_TRUE(run_until(io, env(), [&] {
    return !sync_wait(backend().reclaim_expired(env().now_ms(), 3)).requeued.empty();
  }));
  auto other = claim("q", 1, 60'000, "other-worker");
  ASSERT_EQ(other.size(), 1u);
  // The stalled worker's next heartbeat is refused: its handler is cancelled
  // and its outcome is refused by the fencing token.
  ASSERT_TRUE(run_until(io, env(), [&] { return worker.stats().lease_lost == 1; }));
  EXPECT_TRUE(saw_cancel);
  auto job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::active);
  EXPECT_EQ(job->lease.owner, "other-worker");
  EXPECT_EQ(worker.stats().completed, 0u);
  worker.stop();
  ASSERT_TRUE(run_until(io, env(), [&] { return finished; }));
}

TEST_P(WorkerConformance, GracefulStopFinishesInFlightJobsAndClaimsNoMore) {
  tasks->add("slow", [](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    co_await ctx.env().sleep_for(500);
    co_return "ok";
  });
  std::vector<JobId> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(add("q", "slow", object{}, {}));
  auto o = options();
  o.concurrency = 2;
  Worker worker(client(), tasks, o);
  boost::asio::io_context io;
  bool finished = false;
  start(worker, io, finished);
  ASSERT_TRUE(run_until(io, env(), [&] { return counts("q")[2] == 2; }));  // two active
  worker.stop();
  ASSERT_TRUE(run_until(io, env(), [&] { return finished; }));
  StateCounts c = counts("q");
  EXPECT_EQ(c[static_cast<int>(JobState::completed)], 2u);
  EXPECT_EQ(c[static_cast<int>(JobState::waiting)], 4u);
  EXPECT_EQ(c[static_cast<int>(JobState::active)], 0u);
}

TEST_P(WorkerConformance, StopPastTheDeadlineReleasesTheRest) {
  tasks->add("stuck", [](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    co_await ctx.env().sleep_for(3'600'000);  // ignores cancellation
    co_return "late";
  });
  JobId id = add("q", "stuck", object{}, {});
  auto o = options();
  o.shutdown_grace_ms = 2'000;
  Worker worker(client(), tasks, o);
  boost::asio::io_context io;
  bool finished = false;
  start(worker, io, finished);
  ASSERT_TRUE(run_until(io, env(), [&] { return state_of(id) == JobState::active; }));
  std::int64_t t0 = env().now_ms();
  worker.stop();
  ASSERT_TRUE(run_until(io, env(), [&] { return finished; }));
  EXPECT_GE(env().now_ms() - t0, 2'000);
  EXPECT_LT(env().now_ms() - t0, 60'000);
  // Given back at once: another worker can take it without waiting for the lease.
  auto again = claim("q", 1, 1000, "next");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, id);
}

TEST_P(WorkerConformance, CoroutineHandlerPastItsTimeoutIsCancelledAndRetried) {
  int started = 0, stopped_cleanly = 0;
  tasks->add("hang", [&](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    ++started;
    for (int i = 0; i < 1000; ++i) co_await ctx.env().sleep_for(100);  // 100 s: far too long
    ++stopped_cleanly;
    co_return "never";
  });
  JobOptions o;
  o.timeout_ms = 1'000;
  o.attempts = 2;
  o.backoff = Backoff{Backoff::Kind::fixed, 10, 10, 0.0};
  JobId id = add("q", "hang", object{}, o);
  Worker worker(client(), tasks, options());
  boost::asio::io_context io;
  bool finished = false;
  start(worker, io, finished);
  std::int64_t t0 = env().now_ms();
  ASSERT_TRUE(run_until(io, env(), [&] { return state_of(id) == JobState::dead; }));
  // Two attempts of ~1 s, not 100 s each. (Fake time: it also jumps to the
  // heartbeat and maintenance timers while a loaded machine's SQLite thread
  // is slow, so the bound leaves room for that.)
  EXPECT_LT(env().now_ms() - t0, 60'000);
  worker.stop();
  ASSERT_TRUE(run_until(io, env(), [&] { return finished; }));
  auto job = sync_wait(client()->get(id));
  EXPECT_EQ(job->attempts_made, 2);
  EXPECT_EQ(job->error, "timed out after 1000 ms");
  EXPECT_EQ(started, 2);
  EXPECT_EQ(stopped_cleanly, 0);
}

TEST_P(WorkerConformance, BlockingHandlerPastItsTimeoutIsAskedToStopAndReportedTimedOut) {
  tasks->add("spin", [](TaskContext& ctx) -> boost::json::value {
    while (!ctx.cancelled()) std::this_thread::yield();  // cooperative: checks cancelled()
    return "stopped";
  });
  JobOptions o;
  o.timeout_ms = 500;
  JobId id = add("q", "spin", object{}, o);
  run_worker(options(), [&] { return state_of(id) == JobState::dead; });
  EXPECT_EQ(sync_wait(client()->get(id))->error, "timed out after 500 ms");
}

TEST_P(WorkerConformance, HandlerWithinItsTimeoutCompletes) {
  tasks->add("quick", [](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
    co_await ctx.env().sleep_for(200);
    co_return "ok";
  });
  tasks->add("quick-blocking", [](TaskContext&) -> boost::json::value { return "ok"; });
  JobOptions o;
  o.timeout_ms = 1'000;
  JobId a = add("q", "quick", object{}, o);
  JobId b = add("q", "quick-blocking", object{}, o);
  run_worker(options(), [&] { return all_in({a, b}, JobState::completed); });
  EXPECT_EQ(sync_wait(client()->get(a))->result, "\"ok\"");
}

INSTANTIATE_TEST_SUITE_P(AllBackends, WorkerConformance, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

// The worker runtime.
//
// Everything below runs on the single-threaded executor that `run` is
// awaited on, except the bodies of blocking handlers, which run on a private
// thread pool and resume the job's coroutine back on that executor. So the
// worker's state needs no locks; only `stop` (any thread) and the stats
// (atomics) cross threads.
//
// Four coroutines cooperate:
//   claim loop   claims up to the free capacity, spawns one coroutine per job
//   flusher      records finished jobs in batches: one backend call per batch
//   heartbeat    extends the leases of running jobs; cancels those it lost
//   maintenance  promotes due jobs, expires TTLs, reclaims expired leases
//                (stalled jobs)
//   scheduler    fires due repeatables (WorkerOptions::run_scheduler)
// A job cancelled while active learns it at the next heartbeat, through
// TaskContext::cancelled(). A rate-limited queue is not polled: the claim
// loop sleeps until the backend says a slot frees.
// Batching is what makes this fast: while one finish() call is in flight,
// outcomes pile up for the next, so a busy worker makes one round trip per
// batch, not per job.
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/repeat.hpp>
#include <asyncmq/worker.hpp>

#include "core/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <utility>
#include <optional>
#include <map>
#include <thread>
#include <unordered_map>

namespace asyncmq {
namespace {

using boost::asio::awaitable;
using boost::asio::use_awaitable;
using namespace boost::asio::experimental::awaitable_operators;

std::string default_worker_id(Env& env) {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%08llx",
                static_cast<unsigned long long>(env.random_u64() & 0xffffffffULL));
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + suffix;
}

// A wake-up for a coroutine: `notify` ends the current (or the next) wait
// early. `wait_for` also ends after `ms` of the Env's time; `wait` only on
// notify. Single-executor use only.
class Wakeup {
 public:
  awaitable<void> wait() {
    if (pending_) {
      pending_ = false;
      co_return;
    }
    if (!timer_) timer_.emplace(co_await boost::asio::this_coro::executor);
    timer_->expires_at(boost::asio::steady_timer::time_point::max());
    timer_waiting_ = true;
    co_await timer_->async_wait(boost::asio::as_tuple(use_awaitable));
    timer_waiting_ = false;
    pending_ = false;
  }
  awaitable<void> wait_for(Env& env, std::int64_t ms) {
    if (pending_) {
      pending_ = false;
      co_return;
    }
    sleeping_ = true;
    auto ex = co_await boost::asio::this_coro::executor;
    co_await boost::asio::co_spawn(
        ex, env.sleep_for(ms), boost::asio::bind_cancellation_slot(signal_.slot(), use_awaitable));
    sleeping_ = false;
    pending_ = false;
  }
  // Drops the timer, which is bound to the executor's context: a worker may
  // outlive the io_context it ran on.
  void release() {
    timer_.reset();
    pending_ = false;
  }
  void notify() {
    if (timer_waiting_) {
      timer_waiting_ = false;
      timer_->cancel();
    } else if (sleeping_) {
      sleeping_ = false;
      signal_.emit(boost::asio::cancellation_type::terminal);
    } else {
      pending_ = true;
    }
  }

 private:
  std::optional<boost::asio::steady_timer> timer_;
  boost::asio::cancellation_signal signal_;
  bool timer_waiting_ = false;
  bool sleeping_ = false;
  bool pending_ = false;
};

// An attempt that ran past JobOptions::timeout_ms. Retried like any failure.
class TimedOut : public std::runtime_error {
 public:
  explicit TimedOut(std::int64_t ms)
      : std::runtime_error("timed out after " + std::to_string(ms) + " ms") {}
};

}  // namespace

struct Worker::Impl : std::enable_shared_from_this<Worker::Impl> {
  // Collects what a handler reports. Progress is encoded (sealed) on the
  // handler's thread, bound to the job like a log line, and goes straight to
  // the backend (posted to the worker's executor); log lines wait for the
  // attempt to end and are stored before its outcome.
  struct Reporter final : TaskReporter {
    // `job` is the Running entry's job: it outlives the handler's attempt.
    Reporter(Impl* impl, const Job& job, LeaseRef lease) : impl(impl), job(job), lease(lease) {}
    void progress(std::string json) override {
      std::shared_ptr<Impl> self = impl->shared_from_this();
      try {
        json = self->client->codec().encode(codec_context(job, Field::progress), json);
      } catch (const std::exception& e) {
        // No primary key any more, or the subject's data key was destroyed
        // by a purge: the value is dropped, never stored in the clear, and
        // the handler goes on (progress is informational).
        core::log(core::LogLevel::warn, "worker",
                  "job " + job.id.str() + ": progress could not be sealed and is not stored: " +
                      e.what());
        return;
      }
      boost::asio::any_io_executor ex;
      {
        std::lock_guard lock(self->executor_mu);
        if (!self->executor) return;
        ex = *self->executor;
      }
      LeaseRef l = lease;
      boost::asio::co_spawn(ex, self->send_progress(self, l, std::move(json)),
                            boost::asio::detached);
    }
    void log(std::string line) override {
      std::lock_guard lock(mu);
      lines.push_back(LogLine{impl->env().now_ms(), std::move(line)});
    }
    std::vector<LogLine> take() {
      std::lock_guard lock(mu);
      return std::exchange(lines, {});
    }
    Impl* impl;
    const Job& job;
    LeaseRef lease;
    std::mutex mu;
    std::vector<LogLine> lines;
  };

  struct Running {
    Job job;
    std::unique_ptr<TaskContext> ctx;
    bool lost = false;      // the backend refused a heartbeat: another worker owns it
    bool finished = false;  // outcome queued, waiting for the flusher
    bool cancel_requested = false;  // someone cancelled the job
    // In place, not on the heap: one allocation less per job (Running lives
    // in a node of `running`, so its address is stable).
    std::optional<Reporter> reporter;
  };

  Impl(std::shared_ptr<Client> c, std::shared_ptr<const TaskRegistry> t, WorkerOptions o)
      : client(std::move(c)), tasks(std::move(t)), options(std::move(o)) {}

  std::shared_ptr<Client> client;
  std::shared_ptr<const TaskRegistry> tasks;
  WorkerOptions options;
  std::optional<boost::asio::thread_pool> pool;

  // Executor-confined state.
  std::optional<boost::asio::any_io_executor> executor;
  std::unordered_map<std::uint64_t, Running> running;  // by lease token
  std::vector<Outcome> pending_outcomes;
  // Rate-limited queues, true for those limited per group; refreshed by
  // maintenance.
  std::map<std::string, bool> limited_queues;
  int executing = 0;  // handlers running (the concurrency limit)
  bool stopping = false;
  bool flusher_done = false;
  int loops_alive = 0;
  // One waiter per Wakeup: each belongs to one coroutine.
  Wakeup claim_wakeup, flush_wakeup, heartbeat_wakeup, maintenance_wakeup, drain_wakeup,
      scheduler_wakeup;

  std::atomic<bool> stop_requested{false};
  std::exception_ptr fatal;  // a claim refusal that ends run() (I/O loop only)
  std::uint64_t claim_calls = 0, finish_calls = 0;  // for the batching figures in the log
  std::mutex executor_mu;  // guards `executor` for stop() from other threads

  std::atomic<std::uint64_t> claimed{0}, completed{0}, retried{0}, dead{0}, lease_lost{0},
      reclaimed{0}, cancelled{0}, expired{0};

  Env& env() { return client->env(); }
  Backend& backend() { return client->backend(); }

  awaitable<void> send_progress(std::shared_ptr<Impl> self, LeaseRef lease, std::string json) {
    try {
      std::int64_t now = env().now_ms();
      co_await backend().set_progress(lease, std::move(json), now);
    } catch (const std::exception& e) {
      core::log(core::LogLevel::warn, "worker", std::string("progress not stored: ") + e.what());
    }
  }

  // A flow parent's children, decoded, for its TaskContext.
  awaitable<std::vector<ChildResult>> load_children(const Job& job) {
    std::vector<ChildResult> out;
    auto kids = co_await backend().children(job.id);
    for (auto& k : kids) {
      ChildResult c;
      c.id = k.id;
      c.queue = k.queue;
      c.task = k.task;
      c.state = k.state;
      if (k.state == JobState::completed) {
        std::string text = client->codec().decode(codec_context(k, Field::result), k.result);
        boost::system::error_code ec;
        c.result = boost::json::parse(text, ec);
        if (ec) throw IntegrityError("job " + k.id.str() + ": stored result is not valid JSON");
      }
      out.push_back(std::move(c));
    }
    co_return out;
  }

  // --- running one job --------------------------------------------------
  // Asks a blocking handler to stop once `ms` have passed, unless cancelled
  // first (the handler returned in time).
  awaitable<void> watch_deadline(std::int64_t ms, TaskContext& ctx) {
    co_await env().sleep_for(ms);
    // Not folded into the if: GCC 12 miscompiles co_await in a condition.
    auto state = co_await boost::asio::this_coro::cancellation_state;
    if (state.cancelled() == boost::asio::cancellation_type::none) ctx.request_cancel();
  }

  // Holds `self` so that a handler finishing after run() returned (it
  // ignored cancellation past the shutdown deadline) still finds its worker.
  awaitable<void> run_job(std::uint64_t token, std::shared_ptr<Impl> self) {
    Running& r = running.at(token);  // node-based map: stable until erased
    const Job& job = r.job;
    Outcome out;
    out.id = job.id;
    out.token = token;
    bool unrecoverable = false;
    bool integrity = false;
    std::string error;
    try {
      std::string plain = client->codec().decode(codec_context(job, Field::payload), job.payload);
      boost::system::error_code ec;
      boost::json::value payload = boost::json::parse(plain, ec);
      if (ec) throw IntegrityError("job " + job.id.str() + ": stored payload is not valid JSON");
      std::vector<ChildResult> kids;
      if (job.children > 0) kids = co_await load_children(job);
      r.reporter.emplace(this, r.job, LeaseRef{job.id, token});
      r.ctx = std::make_unique<TaskContext>(r.job, std::move(payload), env(), &*r.reporter,
                                            std::move(kids));
      if (r.cancel_requested) r.ctx->request_cancel();
      const Task* task = tasks->find(job.task);
      if (!task) throw InvalidArgument("no handler registered for task '" + job.task + "'",
                                       errc::unknown_task);
      boost::json::value result;
      const std::int64_t limit = job.options.timeout_ms;
      const std::int64_t started = env().now_ms();
      if (task->async && limit > 0) {
        // The loser of the race is cancelled: a handler stops at its next
        // suspension (asio throws operation_aborted into it there).
        auto first = co_await (task->async(*r.ctx) || env().sleep_for(limit));
        if (first.index() == 1) {
          r.ctx->request_cancel();
          throw TimedOut(limit);
        }
        result = std::move(std::get<0>(first));
      } else if (task->async) {
        result = co_await task->async(*r.ctx);
      } else if (task->options.blocking) {
        TaskContext& ctx = *r.ctx;
        const SyncHandler& fn = task->sync;
        // A thread cannot be stopped safely: past its time limit a blocking
        // handler is asked to stop (ctx.cancelled()) and, whatever it
        // returns, its attempt counts as timed out.
        // The watch's completion handler owns the signal, so the signal
        // outlives the watch however the two finish.
        // (No co_await inside this statement: GCC 12 destroys temporaries of
        // a full-expression that contains a co_await twice.)
        auto stop_watch = std::make_shared<boost::asio::cancellation_signal>();
        if (limit > 0) {
          auto keep_signal = [stop_watch](std::exception_ptr) {};
          boost::asio::co_spawn(*executor, watch_deadline(limit, ctx),
                                boost::asio::bind_cancellation_slot(stop_watch->slot(),
                                                                    std::move(keep_signal)));
        }
        result = co_await boost::asio::co_spawn(
            *pool, [&fn, &ctx]() -> awaitable<boost::json::value> { co_return fn(ctx); },
            use_awaitable);
        if (limit > 0) stop_watch->emit(boost::asio::cancellation_type::terminal);
        if (limit > 0 && env().now_ms() - started >= limit) throw TimedOut(limit);
      } else {
        result = task->sync(*r.ctx);
      }
      out.kind = Outcome::Kind::completed;
      // Encoded even when null, so that every completed job's result passes
      // through the codec (a sealed result cannot be blanked unnoticed).
      out.result = client->codec().encode(codec_context(job, Field::result),
                                          boost::json::serialize(result));
    } catch (const UnrecoverableError& e) {
      unrecoverable = true;
      error = e.what();
    } catch (const IntegrityError& e) {
      unrecoverable = true;  // retrying cannot make tampered data open
      integrity = true;
      error = e.what();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "handler failed";
    } catch (...) {
      error = "handler threw a non-standard exception";
    }
    if (r.reporter) {
      std::vector<LogLine> lines = r.reporter->take();
      if (!lines.empty()) {
        for (auto& l : lines) l.text = client->codec().encode(codec_context(job, Field::log), l.text);
        try {
          co_await backend().append_logs(LeaseRef{job.id, token}, std::move(lines));
        } catch (const std::exception& e) {
          core::log(core::LogLevel::warn, "worker",
                    "log lines of job " + job.id.str() + " not stored: " + e.what());
        }
      }
    }
    std::int64_t now = env().now_ms();
    out.now_ms = now;
    if (!error.empty() && r.cancel_requested) {
      out.kind = Outcome::Kind::cancelled;
      error = "cancelled on request: " + error;
      out.error = client->codec().encode(codec_context(job, Field::error), error);
    } else if (!error.empty()) {
      if (!unrecoverable && job.attempts_made < job.options.attempts) {
        out.kind = Outcome::Kind::retry;
        out.run_at_ms = now + job.options.backoff.delay_for(job.attempts_made, env());
      } else {
        out.kind = Outcome::Kind::dead;
      }
      if (integrity)
        core::log(core::LogLevel::warn, "worker",
                  "moved to dead without retrying: " + error);
      try {
        out.error = client->codec().encode(codec_context(job, Field::error), error);
      } catch (const std::exception& e) {
        // The error cannot be sealed (no primary key any more, or the
        // subject's data key was destroyed by a purge): record the outcome
        // without it rather than leave the job active until its lease ends.
        core::log(core::LogLevel::warn, "worker",
                  "job " + job.id.str() + ": its error could not be sealed and is not stored: " +
                      e.what());
        out.error.clear();
      }
    }
    r.finished = true;
    pending_outcomes.push_back(std::move(out));
    --executing;
    flush_wakeup.notify();
    claim_wakeup.notify();
    drain_wakeup.notify();
  }

  // --- the loops ---------------------------------------------------------
  awaitable<void> claim_loop() {
    const std::size_t batch =
        static_cast<std::size_t>(options.claim_batch > 0 ? options.claim_batch : options.concurrency);
    std::int64_t idle_wait = options.poll_min_ms;
    auto ex = co_await boost::asio::this_coro::executor;
    // Refill in batches: claiming one job each time one finishes would make a
    // round trip per job. Wait until half a batch of slots is free, unless
    // the worker is idle. Outcomes not yet recorded are bounded too (at most
    // two batches of them), which makes the claim loop yield to the flusher
    // even when handlers and the backend complete without suspending. Below
    // that bound the next claim goes out while the last batch's outcomes are
    // being recorded, and a backend that groups concurrent calls (SQLite's
    // writer) commits both in one transaction: one commit per batch, not two.
    const int refill = std::max(1, static_cast<int>(batch) / 2);
    while (!stop_requested.load()) {
      int free = options.concurrency - executing;
      int unrecorded = static_cast<int>(running.size()) - executing;
      if (free <= 0 || (executing > 0 && free < refill) || unrecorded >= 2 * options.concurrency) {
        co_await claim_wakeup.wait();
        continue;
      }
      std::size_t want = std::min(batch, static_cast<std::size_t>(free));
      bool got = false;
      try {
        for (const auto& queue : options.queues) {
          if (want == 0 || stop_requested.load()) break;
          ClaimRequest req{queue, options.id, want, options.lease_ms, env().now_ms()};
          auto jobs = co_await backend().claim(req);
          if (jobs.empty()) continue;
          got = true;
          want -= jobs.size();
          claimed += jobs.size();
          ++claim_calls;
          for (auto& job : jobs) {
            std::uint64_t token = job.lease.token;
            running.try_emplace(token).first->second.job = std::move(job);
            ++executing;
            boost::asio::co_spawn(ex, run_job(token, shared_from_this()), boost::asio::detached);
          }
        }
      } catch (const Error& e) {
        if (e.kind() == errc::permission_denied || e.kind() == errc::unauthenticated) {
          // Asking again cannot succeed: stop, and let run() throw it.
          core::log(core::LogLevel::error, "worker", std::string("claim refused, stopping: ") + e.what());
          fatal = std::current_exception();
          stop_requested = true;
          break;
        }
        core::log(core::LogLevel::warn, "worker", std::string("claim failed: ") + e.what());
      } catch (const std::exception& e) {
        core::log(core::LogLevel::warn, "worker", std::string("claim failed: ") + e.what());
      }
      if (got) {
        idle_wait = options.poll_min_ms;
        // Let the jobs just spawned and the flusher run before claiming more.
        co_await boost::asio::post(ex, use_awaitable);
        continue;
      }
      // Nothing claimed. If every queue is held back by its rate limit, sleep
      // until the first one frees a slot instead of polling it.
      std::int64_t now = env().now_ms();
      std::int64_t until = 0;
      try {
        for (const auto& queue : options.queues) {
          if (!limited_queues.count(queue)) {
            until = 0;
            break;
          }
          std::int64_t u = co_await backend().rate_limited_until(queue, now);
          if (u == 0) {
            until = 0;
            break;
          }
          // Per group, a job of an idle group may arrive meanwhile: wake up
          // at least as often as the idle poll would.
          if (auto l = limited_queues.find(queue); l != limited_queues.end() && l->second)
            u = std::min(u, now + options.poll_max_ms);
          until = until == 0 ? u : std::min(until, u);
        }
      } catch (const std::exception&) {
        until = 0;  // the claim's own error path logs store failures
      }
      if (until > now) {
        co_await claim_wakeup.wait_for(env(), until - now);
      } else {
        co_await claim_wakeup.wait_for(env(), idle_wait);
        idle_wait = std::min(idle_wait * 2, options.poll_max_ms);
      }
    }
  }

  awaitable<void> flush_loop() {
    for (;;) {
      if (pending_outcomes.empty()) {
        if (flusher_done) break;
        co_await flush_wakeup.wait();
        continue;
      }
      std::vector<Outcome> batch;
      batch.swap(pending_outcomes);
      std::vector<bool> applied;
      bool failed = false;
      try {
        applied = co_await backend().finish(batch);  // a copy: kept for a retry
      } catch (const std::exception& e) {
        failed = true;
        core::log(core::LogLevel::warn, "worker",
                  std::string("recording ") + std::to_string(batch.size()) +
                      " outcomes failed, will retry: " + e.what());
      }
      if (failed) {
        // Put them back in front; the leases keep being heartbeated meanwhile.
        batch.insert(batch.end(), std::make_move_iterator(pending_outcomes.begin()),
                     std::make_move_iterator(pending_outcomes.end()));
        pending_outcomes = std::move(batch);
        co_await env().sleep_for(std::max<std::int64_t>(options.poll_min_ms, 10));
        continue;
      }
      ++finish_calls;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Outcome& o = batch[i];
        if (!applied[i]) {
          ++lease_lost;
        } else if (o.kind == Outcome::Kind::completed) {
          ++completed;
        } else if (o.kind == Outcome::Kind::retry) {
          ++retried;
        } else if (o.kind == Outcome::Kind::cancelled) {
          ++cancelled;
        } else {
          ++dead;
        }
        running.erase(o.token);
      }
      claim_wakeup.notify();
      drain_wakeup.notify();
    }
  }

  awaitable<void> heartbeat_loop(std::shared_ptr<Impl> self) {
    const std::int64_t every = options.heartbeat_ms > 0 ? options.heartbeat_ms : options.lease_ms / 3;
    while (!flusher_done) {
      co_await heartbeat_wakeup.wait_for(env(), every);
      if (flusher_done) break;
      std::vector<LeaseRef> leases;
      for (const auto& [token, r] : running)
        if (!r.lost) leases.push_back({r.job.id, token});
      if (leases.empty()) continue;
      try {
        auto ok = co_await backend().heartbeat(leases, env().now_ms() + options.lease_ms);
        for (std::size_t i = 0; i < leases.size(); ++i) {
          if (ok[i] == LeaseStatus::held) continue;
          auto it = running.find(leases[i].token);
          if (it == running.end()) continue;
          if (ok[i] == LeaseStatus::cancel_requested) {
            if (!it->second.cancel_requested)
              core::log(core::LogLevel::info, "worker",
                        "job " + leases[i].id.str() + " was cancelled; asking its handler to stop");
            it->second.cancel_requested = true;
            if (it->second.ctx) it->second.ctx->request_cancel();
            continue;
          }
          it->second.lost = true;
          if (it->second.ctx) it->second.ctx->request_cancel();
          core::log(core::LogLevel::warn, "worker",
                    "lost the lease of job " + leases[i].id.str() + "; asking its handler to stop");
        }
      } catch (const std::exception& e) {
        core::log(core::LogLevel::warn, "worker", std::string("heartbeat failed: ") + e.what());
      }
    }
    --loops_alive;
    drain_wakeup.notify();
  }

  awaitable<void> maintenance_loop(std::shared_ptr<Impl> self) {
    while (!flusher_done) {
      try {
        std::int64_t now = env().now_ms();
        co_await backend().promote_due(now);
        std::map<std::string, bool> limited;
        for (const auto& queue : options.queues) {
          RateLimit limit = co_await backend().rate_limit(queue);
          if (limit.max > 0) limited[queue] = limit.per_group;
        }
        limited_queues.swap(limited);
        auto gone = co_await backend().expire_due(now);
        expired += gone.size();
        auto r = co_await backend().reclaim_expired(now, options.max_stalls);
        reclaimed += r.requeued.size();
        if (!r.requeued.empty() || !r.dead.empty()) {
          core::log(core::LogLevel::info, "worker",
                    "reclaimed " + std::to_string(r.requeued.size()) + " stalled jobs, " +
                        std::to_string(r.dead.size()) + " moved to dead");
          claim_wakeup.notify();
        }
      } catch (const std::exception& e) {
        core::log(core::LogLevel::warn, "worker", std::string("maintenance failed: ") + e.what());
      }
      co_await maintenance_wakeup.wait_for(env(), options.maintenance_ms);
    }
    --loops_alive;
    drain_wakeup.notify();
  }

  awaitable<void> scheduler_loop(std::shared_ptr<Impl> self) {
    SchedulerOptions so;
    so.queues = options.queues;
    Scheduler scheduler(client, so);
    while (!flusher_done) {
      std::int64_t wait = so.max_sleep_ms;
      try {
        SchedulerPass pass = co_await scheduler.fire_due(env().now_ms());
        if (pass.fired > 0) claim_wakeup.notify();
        if (pass.next_due_ms - env().now_ms() < wait)
          wait = std::max<std::int64_t>(0, pass.next_due_ms - env().now_ms());
      } catch (const PermissionDenied& e) {
        core::log(core::LogLevel::warn, "worker",
                  std::string("not scheduling repeatables: ") + e.what());
        break;
      } catch (const std::exception& e) {
        core::log(core::LogLevel::warn, "worker", std::string("scheduler pass failed: ") + e.what());
      }
      co_await scheduler_wakeup.wait_for(env(), wait);
    }
    --loops_alive;
    drain_wakeup.notify();
  }

  awaitable<void> run() {
    auto ex = co_await boost::asio::this_coro::executor;
    {
      std::lock_guard lock(executor_mu);
      executor = ex;
    }
    int threads = options.blocking_threads > 0
                      ? options.blocking_threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    pool.emplace(static_cast<std::size_t>(threads));

    bool flusher_running = true;
    boost::asio::co_spawn(ex, flush_loop(), [&](std::exception_ptr) {
      flusher_running = false;
      drain_wakeup.notify();
    });
    loops_alive = options.run_scheduler ? 3 : 2;  // counted down by the loops themselves
    boost::asio::co_spawn(ex, heartbeat_loop(shared_from_this()), boost::asio::detached);
    boost::asio::co_spawn(ex, maintenance_loop(shared_from_this()), boost::asio::detached);
    if (options.run_scheduler)
      boost::asio::co_spawn(ex, scheduler_loop(shared_from_this()), boost::asio::detached);

    co_await claim_loop();

    // Graceful stop: no more claims. Let running handlers finish within the
    // grace period, then ask the rest to cancel and give their jobs back.
    stopping = true;
    std::int64_t deadline = env().now_ms() + options.shutdown_grace_ms;
    while (executing > 0 && env().now_ms() < deadline) {
      co_await drain_wakeup.wait_for(env(), std::max<std::int64_t>(1, deadline - env().now_ms()));
    }
    if (executing > 0) {
      core::log(core::LogLevel::warn, "worker",
                std::to_string(executing) + " jobs still running at the shutdown deadline; "
                "releasing them to other workers");
      for (auto& [token, r] : running) {
        if (r.finished) continue;
        if (r.ctx) r.ctx->request_cancel();
      }
      // Give the jobs back now rather than after their lease expires. Their
      // handlers' late outcomes will be refused by the fencing token.
      std::vector<Outcome> release;
      std::int64_t now = env().now_ms();
      for (auto& [token, r] : running) {
        if (r.finished) continue;
        Outcome o;
        o.id = r.job.id;
        o.token = token;
        o.kind = Outcome::Kind::retry;
        o.run_at_ms = now;
        o.now_ms = now;
        o.error = client->codec().encode(codec_context(r.job, Field::error),
                                         "released: the worker shut down before the job finished");
        release.push_back(std::move(o));
        r.lost = true;
      }
      try {
        co_await backend().finish(std::move(release));
      } catch (const std::exception& e) {
        core::log(core::LogLevel::warn, "worker",
                  std::string("releasing jobs failed; they return when their lease expires: ") +
                      e.what());
      }
    }
    // Drain outcomes, then stop the loops.
    flusher_done = true;
    flush_wakeup.notify();
    heartbeat_wakeup.notify();
    maintenance_wakeup.notify();
    scheduler_wakeup.notify();
    while (flusher_running || loops_alive > 0) {
      co_await drain_wakeup.wait_for(env(), 50);
      heartbeat_wakeup.notify();
      maintenance_wakeup.notify();
      scheduler_wakeup.notify();
    }
    // Handlers still running on the pool (past the deadline) must not touch
    // this worker after run() returns: wait for the pool to finish them.
    pool->join();
    core::log(core::LogLevel::debug, "worker",
              "stopped: " + std::to_string(claimed.load()) + " jobs in " +
                  std::to_string(claim_calls) + " claims, " + std::to_string(finish_calls) +
                  " finish batches");
    for (Wakeup* w : {&claim_wakeup, &flush_wakeup, &heartbeat_wakeup, &maintenance_wakeup, &drain_wakeup,
                     &scheduler_wakeup})
      w->release();
    {
      std::lock_guard lock(executor_mu);
      executor.reset();
    }
    if (fatal) std::rethrow_exception(fatal);
  }
};

Worker::Worker(std::shared_ptr<Client> client, std::shared_ptr<const TaskRegistry> tasks,
               WorkerOptions options) {
  if (!client) throw InvalidArgument("Worker needs a client");
  if (!tasks) throw InvalidArgument("Worker needs a task registry");
  if (options.queues.empty()) throw InvalidArgument("Worker needs at least one queue");
  for (const auto& q : options.queues) validate_name("queue", q);
  if (options.concurrency < 1 || options.concurrency > 10000)
    throw InvalidArgument("worker concurrency " + std::to_string(options.concurrency) +
                          " is outside [1, 10000]");
  if (options.lease_ms < 100) throw InvalidArgument("worker lease must be at least 100 ms");
  if (options.poll_min_ms < 1 || options.poll_max_ms < options.poll_min_ms)
    throw InvalidArgument("worker poll intervals must satisfy 1 <= poll_min_ms <= poll_max_ms");
  if (options.max_stalls < 0) throw InvalidArgument("worker max_stalls must not be negative");
  if (options.id.empty()) options.id = default_worker_id(client->env());
  impl_ = std::make_shared<Impl>(std::move(client), std::move(tasks), std::move(options));
}

Worker::~Worker() = default;

boost::asio::awaitable<void> Worker::run() { co_await impl_->run(); }

void Worker::stop() {
  impl_->stop_requested.store(true);
  std::lock_guard lock(impl_->executor_mu);
  if (impl_->executor) {
    Impl* impl = impl_.get();
    boost::asio::post(*impl_->executor, [impl] { impl->claim_wakeup.notify(); });
  }
}

WorkerStats Worker::stats() const {
  const Impl& i = *impl_;
  WorkerStats s;
  s.claimed = i.claimed.load();
  s.completed = i.completed.load();
  s.retried = i.retried.load();
  s.dead = i.dead.load();
  s.lease_lost = i.lease_lost.load();
  s.reclaimed = i.reclaimed.load();
  s.cancelled = i.cancelled.load();
  s.expired = i.expired.load();
  return s;
}

const std::string& Worker::id() const { return impl_->options.id; }

}  // namespace asyncmq

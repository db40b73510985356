// Repeatables and the scheduler that fires them.
//
// A repeatable is a job template stored in the backend under (queue, name)
// with a schedule: a cron expression in an IANA time zone (cron.hpp says
// what it accepts and how daylight-saving days behave), or a fixed period.
// A Scheduler turns due ticks into jobs. Any number of schedulers, in any
// number of processes, may run against one store: each tick is claimed
// through Backend::fire_repeatable, a compare-and-set on the repeatable's
// next fire time that enqueues the job in the same transaction, so a tick
// fires exactly once however many schedulers race for it.
//
// After downtime a schedule fires once (its next tick is the first one after
// "now"), unless it was created with catch_up: then every missed tick fires,
// one per scheduler pass, oldest first.
//
// Every-N schedules tick at created + k * every_ms (k >= 1), so their phase
// does not drift with scheduler latency.
//
// Each fired job carries the idempotency key "repeat:<name>:<tick ms>" unless
// the repeatable's JobOptions set one: a second guard against a double fire.
#pragma once

#include <asyncmq/backend.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/queue.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace asyncmq {

// The schedule of a repeatable: exactly one of `cron` and `every_ms`.
struct RepeatOptions {
  RepeatOptions() {}  // not an aggregate: see JobOptions (GCC 12)
  // A cron expression (cron.hpp); empty for an every-N schedule.
  std::string cron;
  // The IANA zone the cron fields are read in. Only with `cron`.
  std::string time_zone = "UTC";
  // The period in ms; 0 for a cron schedule. At least kMinEveryMs.
  std::int64_t every_ms = 0;
  // After downtime fire every missed tick (true) or only one (false).
  bool catch_up = false;
};

// The shortest period an every-N schedule may have.
inline constexpr std::int64_t kMinEveryMs = 1000;

// The tick of `r` strictly after `after_ms` (CronSchedule::kNever if none).
// Throws InvalidArgument for a schedule that does not parse.
std::int64_t next_tick(const Repeatable& r, std::int64_t after_ms);

// The repeatables of one queue, by name.
//
// Thread safety: safe for concurrent use. Lifetime: cheap to copy.
// Errors: InvalidArgument for bad input (nothing is written), naming the
// problem: the name, the task, a bad cron field, an unknown time zone,
// both or neither of cron and every_ms, a period under kMinEveryMs, a job
// option; NotFound for an unknown name.
class Repeatables {
 public:
  explicit Repeatables(Queue queue) : queue_(std::move(queue)) {}

  // Creates or replaces the repeatable `name`. Its first tick is the first
  // one after now. The payload is encoded through the client's codec (job id
  // nil) and re-encoded under each fired job's id.
  boost::asio::awaitable<Repeatable> add(std::string name, std::string task,
                                         boost::json::value payload, RepeatOptions repeat,
                                         JobOptions options = {});
  // The queue's repeatables by name; payloads decoded (JSON text).
  boost::asio::awaitable<std::vector<Repeatable>> list();
  boost::asio::awaitable<void> pause(std::string_view name);
  // Continues from the first tick after now (paused ticks never fire).
  boost::asio::awaitable<void> resume(std::string_view name);
  boost::asio::awaitable<void> remove(std::string_view name);

  const Queue& queue() const { return queue_; }

 private:
  Queue queue_;
};

struct SchedulerOptions {
  // The queues to schedule; empty means every queue of the store.
  std::vector<std::string> queues;
  // Longest sleep between passes of run(): also how long a repeatable added
  // by someone else may wait before this scheduler sees it. Range 10..60000.
  std::int64_t max_sleep_ms = 1000;
};

// What one pass did.
struct SchedulerPass {
  std::size_t fired = 0;  // ticks this scheduler fired
  std::size_t lost = 0;   // due ticks another scheduler fired first
  std::size_t failed = 0; // due ticks that could not be fired (logged)
  // The earliest next_fire_ms of an unpaused repeatable after the pass;
  // CronSchedule::kNever if there is none.
  std::int64_t next_due_ms = 0;
};

// Fires due repeatables.
//
// Thread safety: fire_due may run concurrently on several threads (the
// backend decides each tick once); stop() from any thread.
// Lifetime: holds its Client; must outlive run()'s completion.
class Scheduler {
 public:
  // Throws InvalidArgument for bad queue names or options.
  Scheduler(std::shared_ptr<Client> client, SchedulerOptions options = {});

  // One pass at `now_ms`: every unpaused repeatable with next_fire_ms <=
  // now_ms fires one tick (see the top of this file for which tick comes
  // next). A repeatable whose payload or options no longer produce a job
  // (e.g. a codec key removed) is logged and skipped; the pass goes on.
  boost::asio::awaitable<SchedulerPass> fire_due(std::int64_t now_ms);

  // Runs passes on the Env clock until stop(): after each pass sleeps until
  // the earliest next fire time, at most max_sleep_ms. stop() takes effect
  // within max_sleep_ms. Backend errors are logged and retried next pass.
  boost::asio::awaitable<void> run();
  void stop() { stop_ = true; }

  // What run() has done so far (next_due_ms unused).
  SchedulerPass totals() const;

 private:
  std::shared_ptr<Client> client_;
  SchedulerOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> fired_{0}, lost_{0}, failed_{0};
};

}  // namespace asyncmq

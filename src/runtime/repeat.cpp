// Repeatables and the scheduler (include/asyncmq/repeat.hpp).
#include <asyncmq/cron.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/repeat.hpp>

#include "core/log.hpp"
#include "runtime/make_job.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <optional>

namespace asyncmq {
namespace {

constexpr std::int64_t kMaxEveryMs = 10LL * 365 * 24 * 3600 * 1000;

// The repeatable's payload in plain JSON text.
std::string decode_payload(Client& c, const Repeatable& r) {
  JobId nil;
  return c.codec().decode({r.queue, nil, Field::payload}, r.payload);
}

// The job one tick of `r` produces.
Job job_for_tick(Client& c, const Repeatable& r, std::int64_t tick, std::int64_t now) {
  auto payload = boost::json::parse(decode_payload(c, r));
  JobOptions options = r.options;
  // The stored subject is already in its stored form (encode_subject at add).
  std::string subject = std::move(options.subject);
  options.subject.clear();
  if (options.idempotency_key.empty())
    options.idempotency_key = "repeat:" + r.name + ":" + std::to_string(tick);
  Job job = make_job(c, r.queue, r.task, payload, options, now);
  job.options.subject = std::move(subject);
  return job;
}

std::string encode_payload(Client& c, const std::string& queue, const boost::json::value& v) {
  JobId nil;
  return c.codec().encode({queue, nil, Field::payload}, boost::json::serialize(v));
}

// Not a coroutine: the Job parameter is built here, outside any co_await
// expression (GCC 12 destroys aggregate temporaries there twice).
boost::asio::awaitable<bool> fire(Backend& b, const Repeatable& r, std::int64_t tick,
                                  std::int64_t next, Job& job) {
  return b.fire_repeatable(r.queue, r.name, tick, next, std::move(job));
}

boost::asio::awaitable<Repeatable> find(Backend& b, const std::string& queue,
                                        std::string_view name) {
  auto all = co_await b.repeatables(queue);
  for (auto& r : all)
    if (r.name == name) co_return r;
  throw NotFound("repeatable '" + std::string(name) + "' not found in queue " + queue);
}

}  // namespace

std::int64_t next_tick(const Repeatable& r, std::int64_t after_ms) {
  if (!r.cron.empty()) return CronSchedule::parse(r.cron, r.time_zone).next_after(after_ms);
  if (r.every_ms <= 0) throw InvalidArgument("repeatable '" + r.name + "' has no schedule");
  if (after_ms < r.created_ms) return r.created_ms + r.every_ms;
  std::int64_t k = (after_ms - r.created_ms) / r.every_ms + 1;
  return r.created_ms + k * r.every_ms;
}

boost::asio::awaitable<Repeatable> Repeatables::add(std::string name, std::string task,
                                                    boost::json::value payload,
                                                    RepeatOptions repeat, JobOptions options) {
  Client& c = queue_.client();
  validate_name("repeatable", name);
  validate_name("task", task);
  validate_options(options);
  bool has_cron = !repeat.cron.empty();
  bool has_every = repeat.every_ms != 0;
  if (has_cron == has_every)
    throw InvalidArgument(std::string("repeatable '") + name + "': give exactly one of cron and every (" +
                          (has_cron ? "both" : "neither") + " given)");
  Repeatable r;
  r.queue = queue_.name();
  r.name = std::move(name);
  r.task = std::move(task);
  r.catch_up = repeat.catch_up;
  r.created_ms = c.env().now_ms();
  if (has_cron) {
    if (repeat.time_zone.empty()) throw InvalidArgument("repeatable: the time zone is empty");
    CronSchedule::parse(repeat.cron, repeat.time_zone);  // throws naming the field or the zone
    r.cron = std::move(repeat.cron);
    r.time_zone = std::move(repeat.time_zone);
  } else {
    if (repeat.every_ms < kMinEveryMs || repeat.every_ms > kMaxEveryMs)
      throw InvalidArgument("repeatable: every " + std::to_string(repeat.every_ms) +
                            " ms is outside [" + std::to_string(kMinEveryMs) + " ms, ten years]");
    if (repeat.time_zone != "UTC" && !repeat.time_zone.empty())
      throw InvalidArgument("repeatable: a time zone applies to cron schedules only");
    r.every_ms = repeat.every_ms;
  }
  // A trial job validates the payload size and options exactly as firing will.
  (void)make_job(c, r.queue, r.task, payload, options, r.created_ms);
  if (!options.subject.empty()) options.subject = c.codec().encode_subject(options.subject);
  r.options = std::move(options);
  r.payload = encode_payload(c, r.queue, payload);
  r.next_fire_ms = next_tick(r, r.created_ms);
  co_await c.backend().upsert_repeatable(r);
  co_return r;
}

boost::asio::awaitable<std::vector<Repeatable>> Repeatables::list() {
  Client& c = queue_.client();
  auto all = co_await c.backend().repeatables(queue_.name());
  for (auto& r : all) {
    if (r.payload != kRedacted) r.payload = decode_payload(c, r);
  }
  co_return all;
}

boost::asio::awaitable<void> Repeatables::pause(std::string_view name) {
  validate_name("repeatable", name);
  co_await queue_.client().backend().set_repeatable_paused(queue_.name(), name, true, 0);
}

boost::asio::awaitable<void> Repeatables::resume(std::string_view name) {
  validate_name("repeatable", name);
  Client& c = queue_.client();
  Repeatable r = co_await find(c.backend(), queue_.name(), name);
  if (!r.paused) co_return;
  // Ticks that fell while paused are skipped, catch_up or not.
  std::int64_t next = next_tick(r, std::max(c.env().now_ms(), r.last_fire_ms));
  co_await c.backend().set_repeatable_paused(queue_.name(), name, false, next);
}

boost::asio::awaitable<void> Repeatables::remove(std::string_view name) {
  validate_name("repeatable", name);
  co_await queue_.client().backend().remove_repeatable(queue_.name(), name);
}

Scheduler::Scheduler(std::shared_ptr<Client> client, SchedulerOptions options)
    : client_(std::move(client)), options_(std::move(options)) {
  if (!client_) throw InvalidArgument("Scheduler needs a client");
  for (const auto& q : options_.queues) validate_name("queue", q);
  if (options_.max_sleep_ms < 10 || options_.max_sleep_ms > 60'000)
    throw InvalidArgument("scheduler: max sleep is outside [10, 60000] ms");
}

boost::asio::awaitable<SchedulerPass> Scheduler::fire_due(std::int64_t now_ms) {
  Client& c = *client_;
  SchedulerPass pass;
  pass.next_due_ms = CronSchedule::kNever;
  std::vector<Repeatable> all;
  if (options_.queues.empty()) {
    all = co_await c.backend().repeatables("");
  } else {
    for (const auto& q : options_.queues) {
      auto some = co_await c.backend().repeatables(q);
      for (auto& r : some) all.push_back(std::move(r));
    }
  }
  for (auto& r : all) {
    if (r.paused) continue;
    if (r.next_fire_ms > now_ms) {
      pass.next_due_ms = std::min(pass.next_due_ms, r.next_fire_ms);
      continue;
    }
    std::int64_t tick = r.next_fire_ms;
    std::int64_t next = 0;
    std::optional<Job> job;
    try {
      next = next_tick(r, r.catch_up ? tick : now_ms);
      job = job_for_tick(c, r, tick, now_ms);
    } catch (const std::exception& e) {
      ++pass.failed;
      core::log(core::LogLevel::warn, "scheduler",
                "repeatable '" + r.name + "' of queue " + r.queue + " cannot fire: " + e.what());
      continue;
    }
    bool won = co_await fire(c.backend(), r, tick, next, *job);
    if (won) {
      ++pass.fired;
      pass.next_due_ms = std::min(pass.next_due_ms, next);
    } else {
      ++pass.lost;
    }
  }
  co_return pass;
}

SchedulerPass Scheduler::totals() const {
  SchedulerPass t;
  t.fired = fired_.load();
  t.lost = lost_.load();
  t.failed = failed_.load();
  return t;
}

boost::asio::awaitable<void> Scheduler::run() {
  Env& env = client_->env();
  while (!stop_) {
    std::int64_t wait = options_.max_sleep_ms;
    try {
      std::int64_t now = env.now_ms();
      SchedulerPass pass = co_await fire_due(now);
      fired_ += pass.fired;
      lost_ += pass.lost;
      failed_ += pass.failed;
      if (pass.next_due_ms != CronSchedule::kNever)
        wait = std::clamp<std::int64_t>(pass.next_due_ms - env.now_ms(), 0, options_.max_sleep_ms);
    } catch (const std::exception& e) {
      core::log(core::LogLevel::warn, "scheduler", std::string("pass failed: ") + e.what());
    }
    if (stop_) break;
    co_await env.sleep_for(wait);
  }
}

}  // namespace asyncmq

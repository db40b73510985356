// `asyncmq repeat add|list|pause|resume|remove` and `asyncmq scheduler`.
//
// The scheduler command has a hidden test mode (--simulate-from/-until/
// -step-ms): the process's clock starts at FROM and moves by STEP after each
// pass until it passes UNTIL, as fast as the store allows, then the process
// prints what it fired and exits. Several such processes on one store race
// for the same ticks, which is how tests/fault/scheduler_test.cpp checks that
// every tick fires exactly once across processes without waiting an hour.
#include <asyncmq/cron.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/repeat.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"

#include <CLI/CLI.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>

#include <date/date.h>
#include <date/tz.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>

namespace asyncmq::cli {
namespace {

// "1500ms", "30s", "5m", "2h", "1d"; a bare number is milliseconds.
std::int64_t parse_duration_ms(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::string unit = text.substr(digits);
  if (digits == 0 || digits > 12)
    throw InvalidArgument("--every '" + text + "': expected a number and a unit (ms, s, m, h, d)");
  std::int64_t n = std::stoll(text.substr(0, digits));
  std::int64_t scale = 0;
  if (unit.empty() || unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60'000;
  else if (unit == "h") scale = 3'600'000;
  else if (unit == "d") scale = 86'400'000;
  else throw InvalidArgument("--every '" + text + "': unknown unit '" + unit + "' (ms, s, m, h, d)");
  return n * scale;
}

struct AddArgs {
  std::string queue, name, task, payload = "{}", cron, tz = "UTC", every;
  bool catch_up = false;
};

int do_add(const Context& ctx, const AddArgs& a) {
  // All input is checked before the store is opened.
  validate_name("queue", a.queue);
  validate_name("repeatable", a.name);
  validate_name("task", a.task);
  RepeatOptions ro;
  ro.catch_up = a.catch_up;
  if (a.cron.empty() == a.every.empty())
    throw InvalidArgument(std::string("repeat add: give exactly one of --cron and --every (") +
                          (a.cron.empty() ? "neither" : "both") + " given)");
  if (!a.cron.empty()) {
    CronSchedule::parse(a.cron, a.tz);
    ro.cron = a.cron;
    ro.time_zone = a.tz;
  } else {
    if (a.tz != "UTC") throw InvalidArgument("repeat add: --tz applies to --cron only");
    ro.every_ms = parse_duration_ms(a.every);
    if (ro.every_ms < kMinEveryMs)
      throw InvalidArgument("repeat add: --every " + a.every + " is shorter than 1s");
  }
  auto payload = parse_payload(a.payload, ClientOptions{});
  auto client = open_client(ctx, Access::create);
  Repeatables reps(Queue(client, a.queue));
  JobOptions options;
  Repeatable r = sync_wait(reps.add(a.name, a.task, std::move(payload), ro, options));
  if (ctx.json) {
    print_json({{"queue", r.queue}, {"name", r.name}, {"next_fire_ms", r.next_fire_ms},
                {"next_fire", format_time_ms(r.next_fire_ms)}});
  } else {
    std::cout << "added repeatable " << r.name << " to " << r.queue << "; next fire "
              << format_time_ms(r.next_fire_ms) << '\n';
  }
  return kExitOk;
}

// `ms` in the repeatable's zone, "2026-03-29 03:00:00 CEST"; "-" if none.
std::string local_time(const Repeatable& r, std::int64_t ms) {
  if (ms <= 0 || ms == CronSchedule::kNever) return "-";
  date::sys_time<std::chrono::milliseconds> tp{std::chrono::milliseconds(ms)};
  try {
    auto z = date::make_zoned(r.cron.empty() ? std::string("UTC") : r.time_zone,
                              date::floor<std::chrono::seconds>(tp));
    return date::format("%F %T %Z", z);
  } catch (const std::exception&) {
    return "?";
  }
}

std::string schedule_of(const Repeatable& r) {
  if (!r.cron.empty()) return r.cron + " (" + r.time_zone + ")";
  return "every " + std::to_string(r.every_ms) + " ms";
}

int do_list(const Context& ctx, const std::string& queue) {
  if (!queue.empty()) validate_name("queue", queue);
  auto client = open_client(ctx, Access::must_exist);
  auto all = sync_wait(client->backend().repeatables(queue));
  JobId nil;
  for (auto& r : all)
    if (r.payload != kRedacted)
      r.payload = client->codec().decode({r.queue, nil, Field::payload}, r.payload);
  if (ctx.json) {
    boost::json::array arr;
    for (const auto& r : all) {
      boost::json::object o{{"queue", r.queue},
                            {"name", r.name},
                            {"task", r.task},
                            {"catch_up", r.catch_up},
                            {"paused", r.paused},
                            {"next_fire_ms", r.next_fire_ms},
                            {"next_fire", format_time_ms(r.next_fire_ms)},
                            {"next_fire_local", local_time(r, r.next_fire_ms)},
                            {"last_fire_ms", r.last_fire_ms},
                            {"created_ms", r.created_ms}};
      if (!r.cron.empty()) {
        o["cron"] = r.cron;
        o["time_zone"] = r.time_zone;
      } else {
        o["every_ms"] = r.every_ms;
      }
      boost::system::error_code ec;
      auto v = boost::json::parse(r.payload, ec);
      if (ec) o["payload"] = r.payload; else o["payload"] = v;
      arr.push_back(std::move(o));
    }
    print_json({{"repeatables", std::move(arr)}});
    return kExitOk;
  }
  if (all.empty()) {
    std::cout << "no repeatables\n";
    return kExitOk;
  }
  Table t({"QUEUE", "NAME", "TASK", "SCHEDULE", "STATE", "NEXT (UTC)", "NEXT (LOCAL)", "LAST"});
  for (const auto& r : all)
    t.add({r.queue, r.name, r.task, schedule_of(r), r.paused ? "paused" : "active",
           format_time_ms(r.next_fire_ms), local_time(r, r.next_fire_ms),
           format_time_ms(r.last_fire_ms)});
  t.print(std::cout);
  return kExitOk;
}

enum class Op { pause, resume, remove };

int do_op(const Context& ctx, Op op, const std::string& queue, const std::string& name) {
  validate_name("queue", queue);
  validate_name("repeatable", name);
  auto client = open_client(ctx, Access::must_exist);
  Repeatables reps(Queue(client, queue));
  const char* done = "";
  switch (op) {
    case Op::pause: sync_wait(reps.pause(name)); done = "paused"; break;
    case Op::resume: sync_wait(reps.resume(name)); done = "resumed"; break;
    case Op::remove: sync_wait(reps.remove(name)); done = "removed"; break;
  }
  if (ctx.json) {
    print_json({{"queue", queue}, {"name", name}, {"done", done}});
  } else {
    std::cout << done << " repeatable " << name << " of " << queue << '\n';
  }
  return kExitOk;
}

// The system Env with a clock the process sets itself (simulation mode).
class SteppedEnv final : public Env {
 public:
  explicit SteppedEnv(std::int64_t start) : now_(start) {}
  std::int64_t now_ms() override { return now_.load(); }
  std::int64_t monotonic_ns() override { return Env::system().monotonic_ns(); }
  boost::asio::awaitable<void> sleep_for(std::int64_t ms) override {
    return Env::system().sleep_for(ms);
  }
  std::uint64_t random_u64() override { return Env::system().random_u64(); }
  void set(std::int64_t ms) { now_ = ms; }

 private:
  std::atomic<std::int64_t> now_;
};

struct SchedulerArgs {
  std::vector<std::string> queues;
  std::int64_t max_sleep_ms = 1000;
  std::int64_t sim_from = 0, sim_until = 0, sim_step = 0;
};

int do_simulate(const Context& ctx, const SchedulerArgs& a, const SchedulerOptions& so) {
  if (a.sim_until < a.sim_from || a.sim_step < 1)
    throw InvalidArgument("scheduler: the simulation needs from <= until and a step >= 1");
  SteppedEnv env(a.sim_from);
  auto client = open_client(ctx, Access::must_exist, env);
  Scheduler scheduler(client, so);
  std::int64_t fired = 0, lost = 0, failed = 0, passes = 0;
  for (std::int64_t t = a.sim_from; t <= a.sim_until; t += a.sim_step) {
    env.set(t);
    SchedulerPass p = sync_wait(scheduler.fire_due(t));
    fired += static_cast<std::int64_t>(p.fired);
    lost += static_cast<std::int64_t>(p.lost);
    failed += static_cast<std::int64_t>(p.failed);
    ++passes;
  }
  print_json({{"passes", passes}, {"fired", fired}, {"lost", lost}, {"failed", failed}});
  return failed == 0 ? kExitOk : kExitRuntime;
}

int do_scheduler(const Context& ctx, const SchedulerArgs& a) {
  for (const auto& q : a.queues) validate_name("queue", q);
  SchedulerOptions so;
  so.queues = a.queues;
  so.max_sleep_ms = a.max_sleep_ms;
  if (a.sim_step != 0 || a.sim_from != 0 || a.sim_until != 0) return do_simulate(ctx, a, so);

  boost::asio::io_context io(1);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  auto client = open_client(ctx, Access::create);
  auto scheduler = std::make_shared<Scheduler>(client, so);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    std::cerr << "asyncmq scheduler: stopping\n";
    scheduler->stop();
  });
  std::cerr << "asyncmq scheduler: queues "
            << (a.queues.empty() ? std::string("(all)") : std::to_string(a.queues.size()))
            << "; backend " << client->backend().describe() << '\n';
  std::exception_ptr error;
  boost::asio::co_spawn(io, scheduler->run(), [&](std::exception_ptr e) {
    error = e;
    signals.cancel();
  });
  io.run();
  if (error) std::rethrow_exception(error);
  return kExitOk;
}

}  // namespace

void add_repeat_commands(CLI::App& app, Context& ctx) {
  auto* repeat = app.add_subcommand("repeat", "jobs added on a schedule (cron or every N)");
  repeat->require_subcommand(1);

  auto add_args = std::make_shared<AddArgs>();
  auto* add = repeat->add_subcommand("add", "create or replace a repeatable");
  add->add_option("queue", add_args->queue, "queue name")->required();
  add->add_option("name", add_args->name, "repeatable name (unique in the queue)")->required();
  add->add_option("--task", add_args->task, "task of the jobs it adds")->required();
  add->add_option("--payload", add_args->payload, "JSON payload (default {})");
  add->add_option("--cron", add_args->cron, "cron expression, 5 or 6 fields or @daily etc.");
  add->add_option("--tz", add_args->tz, "IANA time zone of --cron (default UTC)");
  add->add_option("--every", add_args->every, "period: 1500ms, 30s, 5m, 2h, 1d");
  add->add_flag("--catch-up", add_args->catch_up,
                "after downtime fire every missed tick (default: fire once)");
  add->callback([&ctx, add_args] {
    ctx.action = [&ctx, add_args] { return do_add(ctx, *add_args); };
  });

  auto list_queue = std::make_shared<std::string>();
  auto* list = repeat->add_subcommand("list", "repeatables with their next fire time");
  list->add_option("queue", *list_queue, "queue name (default: all)");
  list->callback([&ctx, list_queue] {
    ctx.action = [&ctx, list_queue] { return do_list(ctx, *list_queue); };
  });

  struct OpSpec {
    const char* name;
    const char* help;
    Op op;
  };
  for (const OpSpec& spec : {OpSpec{"pause", "stop firing (ticks while paused are skipped)", Op::pause},
                             OpSpec{"resume", "fire again from the next tick", Op::resume},
                             OpSpec{"remove", "delete a repeatable", Op::remove}}) {
    auto args = std::make_shared<std::pair<std::string, std::string>>();
    auto* sub = repeat->add_subcommand(spec.name, spec.help);
    sub->add_option("queue", args->first, "queue name")->required();
    sub->add_option("name", args->second, "repeatable name")->required();
    Op op = spec.op;
    sub->callback([&ctx, args, op] {
      ctx.action = [&ctx, args, op] { return do_op(ctx, op, args->first, args->second); };
    });
  }

  auto sargs = std::make_shared<SchedulerArgs>();
  auto* sched = app.add_subcommand(
      "scheduler", "fire due repeatables until SIGINT/SIGTERM (workers do this too by default)");
  sched->add_option("-q,--queue", sargs->queues, "queue to schedule (repeatable; default all)");
  sched->add_option("--max-sleep-ms", sargs->max_sleep_ms,
                    "longest wait between passes (default 1000)");
  // Test-only: a simulated clock (see the top of this file).
  sched->add_option("--simulate-from", sargs->sim_from)->group("");
  sched->add_option("--simulate-until", sargs->sim_until)->group("");
  sched->add_option("--simulate-step-ms", sargs->sim_step)->group("");
  sched->callback([&ctx, sargs] {
    ctx.action = [&ctx, sargs] { return do_scheduler(ctx, *sargs); };
  });
}

}  // namespace asyncmq::cli

// `asyncmq repeat add|list|pause|resume|remove` and `asyncmq scheduler`.
//
// The scheduler command has a hidden test mode (--simulate-from/-until/
// -epoch-ms/-speed): the process's clock reads FROM at the real instant EPOCH
// and runs SPEED times faster than real time; the real scheduler loop runs
// on it until it passes UNTIL, then the process prints what it fired and
// exits. Several such processes with the same EPOCH share one simulated
// clock and race for the same ticks, which is how
// tests/fault/scheduler_test.cpp checks a simulated hour in seconds.
#include <asyncmq/cron.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/repeat.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_features.hpp"

#include <CLI/CLI.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>

#include <date/date.h>
#include <date/tz.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>

namespace asyncmq::cli {
namespace {

struct AddArgs {
  std::string queue, name, task, payload = "{}", cron, tz = "UTC", every;
  bool catch_up = false;
  JobOptionFlags flags;
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
    ro.every_ms = parse_cli_duration("--every", a.every);
    if (ro.every_ms < kMinEveryMs)
      throw InvalidArgument("repeat add: --every " + a.every + " is shorter than 1s");
  }
  JobOptions options = a.flags.resolve();
  auto payload = parse_payload(a.payload, ClientOptions{});
  // The guards refuse before the store exists (the codec checks again).
  check_payload(ctx.settings.guards.limits_for(a.queue), a.queue, boost::json::serialize(payload));
  auto client = open_client(ctx, Access::create);
  Repeatables reps(Queue(client, a.queue));
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

// The system Env with its clock sped up (simulation mode): simulated time is
// FROM + (real time - EPOCH) * SPEED, and sleeps last 1/SPEED as long, so
// processes started with the same EPOCH share one simulated clock.
class ScaledEnv final : public Env {
 public:
  ScaledEnv(std::int64_t from, std::int64_t epoch, std::int64_t speed)
      : from_(from), epoch_(epoch), speed_(speed) {}
  std::int64_t now_ms() override { return from_ + (Env::system().now_ms() - epoch_) * speed_; }
  std::int64_t monotonic_ns() override { return Env::system().monotonic_ns() * speed_; }
  boost::asio::awaitable<void> sleep_for(std::int64_t ms) override {
    return Env::system().sleep_for(std::max<std::int64_t>(1, ms / speed_));
  }
  std::uint64_t random_u64() override { return Env::system().random_u64(); }

 private:
  std::int64_t from_, epoch_, speed_;
};

struct SchedulerArgs {
  std::vector<std::string> queues;
  std::int64_t max_sleep_ms = 1000;
  std::int64_t sim_from = 0, sim_until = 0, sim_epoch = 0, sim_speed = 0;
};

// Runs the real scheduler loop on a ScaledEnv until the simulated clock
// passes UNTIL, then prints what this process fired.
int do_simulate(const Context& ctx, const SchedulerArgs& a, const SchedulerOptions& so) {
  if (a.sim_until < a.sim_from || a.sim_speed < 1 || a.sim_speed > 10'000)
    throw InvalidArgument("scheduler: the simulation needs from <= until and a speed in [1, 10000]");
  ScaledEnv env(a.sim_from, a.sim_epoch, a.sim_speed);
  auto client = open_client(ctx, Access::must_exist, env);
  Scheduler scheduler(client, so);
  boost::asio::io_context io(1);
  std::exception_ptr error;
  boost::asio::co_spawn(io, scheduler.run(), [&](std::exception_ptr e) { error = e; });
  auto stopper = [&]() -> boost::asio::awaitable<void> {
    while (env.now_ms() <= a.sim_until) co_await env.sleep_for(so.max_sleep_ms / 4);
    scheduler.stop();
  };
  boost::asio::co_spawn(io, stopper(), boost::asio::detached);
  io.run();
  if (error) std::rethrow_exception(error);
  SchedulerPass t = scheduler.totals();
  print_json({{"fired", t.fired}, {"lost", t.lost}, {"failed", t.failed}});
  return t.failed == 0 ? kExitOk : kExitRuntime;
}

int do_scheduler(const Context& ctx, const SchedulerArgs& a) {
  for (const auto& q : a.queues) validate_name("queue", q);
  SchedulerOptions so;
  so.queues = a.queues;
  so.max_sleep_ms = a.max_sleep_ms;
  if (a.sim_speed != 0) return do_simulate(ctx, a, so);

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
  add_job_option_flags(add, add_args->flags);
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
  sched->add_option("--simulate-epoch-ms", sargs->sim_epoch)->group("");
  sched->add_option("--simulate-speed", sargs->sim_speed)->group("");
  sched->callback([&ctx, sargs] {
    ctx.action = [&ctx, sargs] { return do_scheduler(ctx, *sargs); };
  });
}

}  // namespace asyncmq::cli

// `asyncmq worker`: runs the built-in tasks plus the program's own tasks
// until SIGINT or SIGTERM, then shuts down gracefully.
#include <asyncmq/cli.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/worker.hpp>

#include "cli/cli_common.hpp"
#include "security/key_watch.hpp"

#include <CLI/CLI.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>

namespace asyncmq::cli {
namespace {

struct WorkerArgs {
  std::vector<std::string> queues;
  WorkerOptions options;
};

// The program's tasks, then every built-in task the program did not
// override.
std::shared_ptr<TaskRegistry> make_registry(const TaskRegistry* user) {
  auto reg = std::make_shared<TaskRegistry>();
  if (user) reg->merge(*user);
  TaskRegistry builtins = builtin_tasks();
  for (const auto& name : builtins.names()) {
    if (reg->find(name)) continue;
    const Task* t = builtins.find(name);
    if (t->async) {
      reg->add(name, t->async, t->options);
    } else {
      reg->add(name, t->sync, t->options);
    }
  }
  return reg;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Reloading the keyring without a restart: on SIGHUP, and when the key file
// changes (checked once a second through the Env, on this io_context). A
// failed reload keeps the old keys and logs one line (KeyWatch).
class KeyReload {
 public:
  KeyReload(boost::asio::io_context& io, boost::asio::signal_set& hangup, const Protection& p,
            Env& env)
      : hangup_(hangup) {
    if (p.keys && !p.keys->source_file().empty()) {
      watch_ = std::make_unique<security::KeyWatch>(p.keys, env);
      auto run = watch_->run(stop_flag_);
      boost::asio::co_spawn(io, std::move(run),
                            boost::asio::bind_cancellation_slot(cancel_.slot(), boost::asio::detached));
    }
    on_hup_ = [this](const boost::system::error_code& ec, int) {
      if (ec) return;  // cancelled: the worker stopped
      if (watch_) {
        watch_->reload_now("SIGHUP");
      } else {
        std::cerr << "asyncmq worker: SIGHUP: no key file configured; nothing to reload\n";
      }
      hangup_.async_wait(on_hup_);
    };
    hangup_.async_wait(on_hup_);
  }
  void stop() {
    hangup_.cancel();
    stop_flag_->store(true);
    cancel_.emit(boost::asio::cancellation_type::terminal);
  }

 private:
  boost::asio::signal_set& hangup_;
  std::unique_ptr<security::KeyWatch> watch_;
  std::shared_ptr<std::atomic<bool>> stop_flag_ = std::make_shared<std::atomic<bool>>(false);
  boost::asio::cancellation_signal cancel_;
  std::function<void(const boost::system::error_code&, int)> on_hup_;
};

int do_worker(const Context& ctx, WorkerArgs a) {
  if (a.queues.empty()) throw InvalidArgument("worker needs at least one --queue");
  for (const auto& q : a.queues) validate_name("queue", q);
  if (a.options.concurrency < 1 || a.options.concurrency > 10000)
    throw InvalidArgument("--concurrency " + std::to_string(a.options.concurrency) +
                          " is outside [1, 10000]");
  if (a.options.lease_ms < 100) throw InvalidArgument("--lease-ms must be at least 100");
  a.options.queues = a.queues;
  auto tasks = make_registry(ctx.user_tasks);

  // Catch SIGINT/SIGTERM before opening the store: a signal that arrives
  // while the backend opens is held and then stops the worker gracefully,
  // instead of killing the process mid-open.
  boost::asio::io_context io(1);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::signal_set hangup(io, SIGHUP);  // reload the key file (issue 5)

  Protection protection = load_protection(ctx);
  auto client = open_client(ctx, Access::create, protection);
  KeyReload key_reload(io, hangup, protection, client->env());
  auto worker = std::make_shared<Worker>(client, tasks, a.options);
  int signals_seen = 0;
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;  // cancelled: run() finished
        if (++signals_seen == 1) {
          std::cerr << "asyncmq worker: " << (signo == SIGINT ? "SIGINT" : "SIGTERM")
                    << ": stopping; running jobs get " << a.options.shutdown_grace_ms
                    << " ms to finish (signal again to quit at once)\n";
          worker->stop();
          signals.async_wait(on_signal);
        } else {
          std::cerr << "asyncmq worker: second signal: quitting now; unfinished jobs are "
                       "retaken when their leases expire\n";
          std::_Exit(130);
        }
      };
  signals.async_wait(on_signal);

  std::cerr << "asyncmq worker " << worker->id() << ": queues " << join(a.queues)
            << "; concurrency " << a.options.concurrency << "; tasks " << join(tasks->names())
            << "; backend " << client->backend().describe() << '\n';

  std::exception_ptr error;
  boost::asio::co_spawn(io, worker->run(), [&](std::exception_ptr e) {
    error = e;
    signals.cancel();
    key_reload.stop();
  });
  io.run();
  if (error) std::rethrow_exception(error);

  WorkerStats s = worker->stats();
  if (ctx.json) {
    print_json({{"worker", worker->id()},
                {"claimed", s.claimed},
                {"completed", s.completed},
                {"retried", s.retried},
                {"dead", s.dead},
                {"lease_lost", s.lease_lost},
                {"reclaimed", s.reclaimed}});
  }
  std::cerr << "asyncmq worker stopped: claimed " << s.claimed << ", completed " << s.completed
            << ", retried " << s.retried << ", dead " << s.dead << ", lease lost " << s.lease_lost
            << ", reclaimed " << s.reclaimed << '\n';
  return kExitOk;
}

}  // namespace

void add_worker_command(CLI::App& app, Context& ctx) {
  auto args = std::make_shared<WorkerArgs>();
  WorkerOptions& o = args->options;
  auto* w = app.add_subcommand("worker", "run jobs until SIGINT/SIGTERM (graceful stop)");
  w->add_option("-q,--queue", args->queues, "queue to take jobs from (repeatable, in order of preference)")
      ->required();
  w->add_option("-c,--concurrency", o.concurrency, "handlers running at once (default 10)");
  w->add_option("--lease-ms", o.lease_ms, "lease length, ms (default 30000)");
  w->add_option("--heartbeat-ms", o.heartbeat_ms, "lease renewal interval, ms (default lease/3)");
  w->add_option("--claim-batch", o.claim_batch, "jobs per claim (default: concurrency)");
  w->add_option("--shutdown-grace-ms", o.shutdown_grace_ms,
                "on stop, how long running jobs may take (default 10000)");
  w->add_option("--blocking-threads", o.blocking_threads, "threads for blocking handlers (default: cores)");
  w->add_option("--max-stalls", o.max_stalls, "lease expiries before a job is dead (default 3)");
  w->add_option("--id", o.id, "worker id recorded as lease owner (default host:pid:random)");
  w->callback([&ctx, args] { ctx.action = [&ctx, args] { return do_worker(ctx, *args); }; });
}

}  // namespace asyncmq::cli

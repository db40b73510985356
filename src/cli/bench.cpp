// `asyncmq bench`: end-to-end throughput and latency against one backend.
//
// Three phases, each on a fresh queue whose name carries a random run id (so
// runs against one SQLite file never see each other's jobs):
//   enqueue     add_bulk in batches of 1000, nothing else running.
//   process     a Worker drains the pre-filled queue of the enqueue phase
//               with a no-op coroutine handler.
//   end-to-end  a producer thread adds in batches while a Worker processes;
//               timed from the first add to the last completion. The
//               enqueue→start latency (Job::created_ms to handler start) is
//               measured here, where it means something: in the process
//               phase it would only be the time spent in the backlog.
// Time comes from Env: monotonic_ns for rates, now_ms for latency (the same
// wall clock the job's created_ms was taken from, so ms resolution).
#include <asyncmq/cli.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>
#include <asyncmq/worker.hpp>

#include "cli/cli_common.hpp"
#include "security/crypto.hpp"

#include <CLI/CLI.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

namespace asyncmq::cli {
namespace {

constexpr std::size_t kBatch = 1000;
// A phase that makes no progress for this long is abandoned.
constexpr std::int64_t kStallMs = 30'000;

struct BenchArgs {
  std::int64_t jobs = 10'000;
  int concurrency = 32;
  std::int64_t payload_bytes = 64;
  bool seal = false;  // AES-256-GCM sealing with a fresh in-memory key
};

// What handlers record. Handlers of one worker run on its I/O thread, but
// the mutex keeps this correct for any worker design.
struct Probe {
  Env* env = nullptr;
  bool record_latency = false;
  std::mutex mu;
  std::vector<std::int64_t> latency_ms;
};

boost::asio::awaitable<boost::json::value> probe_noop(TaskContext& ctx, std::shared_ptr<Probe> p) {
  if (p->record_latency) {
    std::int64_t lat = p->env->now_ms() - ctx.job().created_ms;
    std::lock_guard lock(p->mu);
    p->latency_ms.push_back(lat);
  }
  co_return nullptr;
}

std::vector<NewJob> make_batch(std::size_t n, const boost::json::value& payload) {
  std::vector<NewJob> batch;
  batch.reserve(n);
  for (std::size_t i = 0; i < n; ++i) batch.push_back({"noop", payload, {}});
  return batch;
}

boost::asio::awaitable<void> enqueue_all(Queue queue, std::int64_t n, boost::json::value payload) {
  for (std::int64_t done = 0; done < n;) {
    std::size_t k = static_cast<std::size_t>(std::min<std::int64_t>(kBatch, n - done));
    co_await queue.add_bulk(make_batch(k, payload));
    done += static_cast<std::int64_t>(k);
  }
}

// Runs a worker on `queue` until `n` jobs are completed or dead. Returns the
// monotonic time (ns) at which the last one was seen done.
std::int64_t drain(std::shared_ptr<Client> client, const std::string& queue, std::int64_t n,
                   int concurrency, std::shared_ptr<Probe> probe) {
  Env& env = client->env();
  auto tasks = std::make_shared<TaskRegistry>();
  tasks->add("noop", [probe](TaskContext& ctx) { return probe_noop(ctx, probe); });
  WorkerOptions wo;
  wo.queues = {queue};
  wo.concurrency = concurrency;
  wo.poll_min_ms = 1;
  wo.poll_max_ms = 20;
  auto worker = std::make_shared<Worker>(client, tasks, wo);

  boost::asio::io_context io(1);
  std::exception_ptr run_error, watch_error;
  bool run_done = false;
  std::int64_t end_ns = 0;
  boost::asio::co_spawn(io, worker->run(), [&](std::exception_ptr e) {
    run_error = e;
    run_done = true;
  });
  auto watch = [&]() -> boost::asio::awaitable<void> {
    std::uint64_t last = 0;
    std::int64_t last_change = env.monotonic_ns();
    for (;;) {
      WorkerStats s = worker->stats();
      std::uint64_t done = s.completed + s.dead;
      std::int64_t now = env.monotonic_ns();
      if (done >= static_cast<std::uint64_t>(n)) {
        end_ns = now;
        worker->stop();
        co_return;
      }
      if (run_done) throw std::runtime_error("the worker stopped before every job was processed");
      if (done != last) {
        last = done;
        last_change = now;
      } else if (now - last_change > kStallMs * 1'000'000) {
        worker->stop();
        throw std::runtime_error("no job finished for " + std::to_string(kStallMs / 1000) +
                                 " s (" + std::to_string(done) + " of " + std::to_string(n) + " done)");
      }
      co_await env.sleep_for(1);
    }
  };
  boost::asio::co_spawn(io, watch(), [&](std::exception_ptr e) { watch_error = e; });
  io.run();
  if (watch_error) std::rethrow_exception(watch_error);
  if (run_error) std::rethrow_exception(run_error);
  return end_ns;
}

double rate(std::int64_t n, std::int64_t ns) {
  return ns > 0 ? static_cast<double>(n) * 1e9 / static_cast<double>(ns) : 0.0;
}

std::int64_t percentile(std::vector<std::int64_t>& v, double p) {
  if (v.empty()) return 0;
  std::size_t k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

std::string fmt_rate(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", r);
  return buf;
}

int do_bench(const Context& ctx, const BenchArgs& a) {
  if (a.jobs < 1 || a.jobs > 10'000'000) throw InvalidArgument("--jobs must be in [1, 10000000]");
  if (a.concurrency < 1 || a.concurrency > 10000)
    throw InvalidArgument("--concurrency must be in [1, 10000]");
  if (a.payload_bytes < 8 || a.payload_bytes > (1 << 20))
    throw InvalidArgument("--payload-bytes must be in [8, 1048576]");

  std::shared_ptr<Client> client;
  if (a.seal) {
    // A throwaway key: the point is the cost of sealing, not the key file.
    Protection p;
    p.keys = std::make_shared<Keyring>();
    p.keys->add("bench", KeyState::primary, Secret(security::random_bytes(32)));
    p.codec = make_sealing_codec(p.keys);
    client = open_client(ctx, Access::create, p);
  } else {
    client = open_client(ctx, Access::create);
  }
  Env& env = client->env();
  char run_id[20];
  std::snprintf(run_id, sizeof run_id, "%08llx",
                static_cast<unsigned long long>(env.random_u64() & 0xffffffffULL));
  std::string q_fill = std::string("bench-") + run_id + "-fill";
  std::string q_e2e = std::string("bench-") + run_id + "-e2e";
  // {"d":"xxx…"}: 8 bytes of framing plus the filler.
  boost::json::value payload = {{"d", std::string(static_cast<std::size_t>(a.payload_bytes - 8), 'x')}};

  std::string backend = client->backend().describe();
  if (!ctx.json) {
    std::cout << "asyncmq bench: backend " << backend << ", " << a.jobs << " jobs, concurrency "
              << a.concurrency << ", payload " << a.payload_bytes << " B"
              << (a.seal ? ", sealed (AES-256-GCM)" : "") << "\n";
    if (backend.rfind("sqlite", 0) == 0) {
      std::cout << "  (jobs are appended to this database, queues " << q_fill << " and " << q_e2e
                << ")\n";
    }
    std::cout.flush();
  }

  // 1. enqueue
  Queue fill(client, q_fill);
  std::int64_t t0 = env.monotonic_ns();
  sync_wait(enqueue_all(fill, a.jobs, payload));
  double enqueue_rate = rate(a.jobs, env.monotonic_ns() - t0);
  if (!ctx.json) std::cout << "  enqueue      " << fmt_rate(enqueue_rate) << " jobs/s  (add_bulk, batches of 1000)\n" << std::flush;

  // 2. process the pre-filled queue
  auto p2 = std::make_shared<Probe>();
  p2->env = &env;
  t0 = env.monotonic_ns();
  std::int64_t end = drain(client, q_fill, a.jobs, a.concurrency, p2);
  double process_rate = rate(a.jobs, end - t0);
  if (!ctx.json) std::cout << "  process      " << fmt_rate(process_rate) << " jobs/s  (worker draining a full queue, no-op handler)\n" << std::flush;

  // 3. end to end: producer thread and worker at once
  auto p3 = std::make_shared<Probe>();
  p3->env = &env;
  p3->record_latency = true;
  p3->latency_ms.reserve(static_cast<std::size_t>(a.jobs));
  Queue e2e(client, q_e2e);
  std::exception_ptr produce_error;
  t0 = env.monotonic_ns();
  std::thread producer([&] {
    try {
      sync_wait(enqueue_all(e2e, a.jobs, payload));
    } catch (...) {
      produce_error = std::current_exception();
    }
  });
  std::int64_t e2e_end = 0;
  try {
    e2e_end = drain(client, q_e2e, a.jobs, a.concurrency, p3);
  } catch (...) {
    producer.join();
    throw;
  }
  producer.join();
  if (produce_error) std::rethrow_exception(produce_error);
  double e2e_rate = rate(a.jobs, e2e_end - t0);
  std::int64_t p50 = percentile(p3->latency_ms, 0.50);
  std::int64_t p99 = percentile(p3->latency_ms, 0.99);

  if (ctx.json) {
    print_json({{"backend", backend},
                {"jobs", a.jobs},
                {"concurrency", a.concurrency},
                {"payload_bytes", a.payload_bytes},
                {"sealed", a.seal},
                {"queues", {q_fill, q_e2e}},
                {"enqueue_jobs_per_s", enqueue_rate},
                {"process_jobs_per_s", process_rate},
                {"end_to_end_jobs_per_s", e2e_rate},
                {"latency_ms", {{"p50", p50}, {"p99", p99}, {"samples", p3->latency_ms.size()}}}});
  } else {
    std::cout << "  end-to-end   " << fmt_rate(e2e_rate)
              << " jobs/s  (producer and worker at once, first add to last completion)\n"
              << "  latency      p50 " << p50 << " ms, p99 " << p99
              << " ms  (enqueue to handler start in the end-to-end phase;\n"
              << "               includes time in the backlog when enqueue outpaces processing)\n";
  }
  return kExitOk;
}

}  // namespace

void add_bench_command(CLI::App& app, Context& ctx) {
  auto args = std::make_shared<BenchArgs>();
  auto* b = app.add_subcommand("bench", "measure enqueue, processing and end-to-end throughput");
  b->add_option("-n,--jobs", args->jobs, "jobs per phase (default 10000)");
  b->add_option("-c,--concurrency", args->concurrency, "worker concurrency (default 32)");
  b->add_option("--payload-bytes", args->payload_bytes, "approximate JSON payload size (default 64)");
  b->add_flag("--seal", args->seal,
              "seal payloads and results with AES-256-GCM under a fresh in-memory key");
  b->callback([&ctx, args] { ctx.action = [&ctx, args] { return do_bench(ctx, *args); }; });
}

}  // namespace asyncmq::cli

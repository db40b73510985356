// A Worker claims jobs from its queues and runs their handlers.
//
// Life of a job in a worker: claimed in a batch under a lease ─► payload
// decoded through the codec ─► handler run (coroutines on the I/O loop,
// blocking functions on a separate pool) with at most `concurrency` running
// ─► outcome recorded in a batch: completed, retry after backoff, or dead.
// While a job runs its lease is heartbeated; if the backend refuses the
// heartbeat (the lease expired and another worker took the job) the handler
// is asked to cancel and its outcome is dropped: the fencing token makes the
// backend refuse it anyway.
//
// The worker also does the housekeeping every live worker shares: promoting
// due delayed/failed jobs and reclaiming jobs whose lease expired, and (by
// default) fires the due repeatables of its queues.
//
// Errors: run() stops the worker gracefully and throws PermissionDenied or
// Unauthenticated when the backend refuses a claim for that reason (the
// client's principal may not claim from a queue, or its credential was
// revoked): asking again cannot succeed. Other backend errors are logged and
// retried.
//
// Thread safety: `run` is called once; `stop` and `stats` from any thread.
// Lifetime: the Client and TaskRegistry are shared; the Worker must outlive
// the completion of `run`.
#pragma once

#include <asyncmq/client.hpp>
#include <asyncmq/task.hpp>

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace asyncmq {

struct WorkerOptions {
  // The queues to take jobs from, in order of preference. At least one.
  std::vector<std::string> queues;
  // Handlers running at once. Range 1..10000.
  int concurrency = 10;
  // Claim at most this many jobs per backend round trip; 0 means `concurrency`.
  int claim_batch = 0;
  // How long a claim holds a job before another worker may reclaim it. A
  // shorter lease recovers faster from a dead worker; a longer one tolerates
  // longer pauses (GC, swapping) without a duplicate run.
  std::int64_t lease_ms = 30'000;
  // How often leases of running jobs are extended; 0 means lease_ms / 3.
  std::int64_t heartbeat_ms = 0;
  // Idle polling: waits grow from min to max while no job is found.
  std::int64_t poll_min_ms = 2;
  std::int64_t poll_max_ms = 250;
  // How often to promote due jobs, expire TTLs and reclaim expired leases.
  std::int64_t maintenance_ms = 1'000;
  // A job whose lease expires more than this many times goes to dead.
  int max_stalls = 3;
  // On stop: how long in-flight jobs may take to finish before they are
  // cancelled and their leases released.
  std::int64_t shutdown_grace_ms = 10'000;
  // Threads for blocking handlers; 0 means the number of cores.
  int blocking_threads = 0;
  // Also fire the due repeatables of `queues` (include/asyncmq/repeat.hpp),
  // so a program with workers needs no separate scheduler process. Safe with
  // any number of workers and schedulers: each tick fires once. Turn it off
  // to leave scheduling to `asyncmq scheduler` processes.
  bool run_scheduler = true;
  // Recorded as lease owner; empty means "<host>:<pid>:<random>".
  std::string id;
};

// Counters since start. Read with `Worker::stats`.
struct WorkerStats {
  std::uint64_t claimed = 0;
  std::uint64_t completed = 0;
  std::uint64_t retried = 0;    // attempts that failed and were scheduled again
  std::uint64_t dead = 0;       // jobs moved to dead
  std::uint64_t lease_lost = 0; // outcomes refused by fencing
  std::uint64_t reclaimed = 0;  // stalled jobs this worker returned to waiting
  std::uint64_t cancelled = 0;  // jobs that stopped on a cancel request
  std::uint64_t expired = 0;    // jobs this worker's maintenance found past their TTL
};

class Worker {
 public:
  // Throws InvalidArgument for bad options or queue names.
  Worker(std::shared_ptr<Client> client, std::shared_ptr<const TaskRegistry> tasks,
         WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until `stop` is called, then shuts down gracefully: stops claiming,
  // lets in-flight jobs finish within shutdown_grace_ms, releases the rest
  // (their leases are given back so another worker takes them at once), and
  // returns. Must be co_awaited on a single-threaded executor (an
  // io_context run by one thread, or a strand). A blocking handler that
  // ignores TaskContext::cancelled() past the deadline delays the return
  // until it finishes (a thread cannot be killed safely); its job has been
  // released already, and its late outcome is refused by the fencing token.
  boost::asio::awaitable<void> run();

  // Begins a graceful shutdown. Safe from any thread and from a signal
  // handler's asio::signal_set callback.
  void stop();

  WorkerStats stats() const;
  const std::string& id() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace asyncmq

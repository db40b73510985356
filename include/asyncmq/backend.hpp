// The Backend contract: where jobs live.
//
// A Backend stores jobs and moves them between states. It knows nothing of
// JSON, tasks or encryption: payloads, results and errors are opaque bytes
// produced by the codec seam (see client.hpp). Every backend (memory, SQLite,
// and later Redis and PostgreSQL) passes the same conformance suite,
// tests/conformance/, which is the executable form of this header.
//
// Batches are the unit. A call that takes a batch applies all of it or none
// of it (one transaction), and a backend that can do one round trip per batch
// must.
//
// Durability: when an awaitable that writes completes without throwing, the
// write is durable to the degree the backend's URI promises:
//   memory://            not durable; for tests and benchmarks.
//   sqlite:///path.db    survives a kill -9 of any process (WAL, synchronous
//                        NORMAL: the commit is in the WAL file before return).
//   sqlite:///path.db?sync=full   also survives a power loss (fsync per commit).
//
// Fencing: `claim` gives each active job a new lease token. `heartbeat` and
// `finish` name the token, and a backend applies them only while the job is
// still active under that token. A worker that lost its lease (it stalled,
// the lease expired and another worker reclaimed the job) is refused, never
// applied: its write reports `false` for that item.
//
// Thread safety: a Backend is safe for concurrent use from any number of
// threads and coroutines without external synchronisation. Awaitables
// complete on the awaiting coroutine's executor.
// Lifetime: shared (std::shared_ptr); the Env given at open must outlive it.
#pragma once

#include <asyncmq/job.hpp>

#include <boost/asio/awaitable.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace asyncmq {

class Env;

// Note for callers on GCC 12: build request structs as named variables before
// `co_await backend.claim(request)`; GCC 12 destroys an aggregate temporary
// created inside a co_await expression twice.
struct ClaimRequest {
  std::string queue;
  std::string worker_id;     // recorded as the lease owner
  std::size_t max = 1;       // claim at most this many jobs
  std::int64_t lease_ms = 30'000;
  std::int64_t now_ms = 0;
};

// One job a worker is done with (for now).
struct Outcome {
  enum class Kind : std::uint8_t {
    completed,  // success: `result` is stored, state completed
    retry,      // failed, will run again at `run_at_ms`: state failed
    dead,       // failed for good: state dead
  };
  JobId id;
  std::uint64_t token = 0;  // the lease token from claim (fencing)
  Kind kind = Kind::completed;
  std::string result;  // completed
  std::string error;   // retry, dead
  std::int64_t run_at_ms = 0;  // retry
  std::int64_t now_ms = 0;
};

struct LeaseRef {
  JobId id;
  std::uint64_t token = 0;
};

struct ListRequest {
  std::string queue;
  JobState state = JobState::waiting;
  std::optional<JobId> after;  // cursor: start after this id (exclusive)
  std::size_t limit = 50;      // at most this many, 1..1000
};

// A page of jobs in id (creation) order.
struct JobPage {
  std::vector<Job> jobs;
  std::optional<JobId> next;  // pass as `after` to get the next page; empty at the end
};

using StateCounts = std::array<std::uint64_t, kJobStateCount>;

struct ReclaimResult {
  std::vector<JobId> requeued;  // back to waiting
  std::vector<JobId> dead;      // stalled more than max_stalls times
};

// One compare-and-set of Backend::rewrite_sealed.
struct SealedRewrite {
  JobId id;
  std::string expected_payload, expected_result, expected_error;  // as read
  std::string payload, result, error;                             // to store
};

struct PurgeResult {
  std::uint64_t jobs = 0;  // jobs deleted
  // False if the backend could not make sure that no old copy of the
  // deleted bytes is left in its files (SQLite: another connection kept the
  // WAL checkpoint from completing; run the purge again later to retry).
  bool scrubbed = true;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Stores `jobs` atomically: all or none. Each job arrives fully formed:
  // id, queue, task, options, encoded payload, created_ms, run_at_ms and
  // state (waiting, or delayed when run_at_ms is in the future).
  // Durable on return. Concurrent enqueues may be grouped into one commit.
  // Throws Conflict (and stores nothing) if an id already exists.
  virtual boost::asio::awaitable<void> enqueue(std::vector<Job> jobs) = 0;

  // Moves up to `max` claimable jobs of `queue` to active under new leases
  // and returns them, in claim order: priority ascending, then LIFO jobs
  // newest first, then FIFO jobs oldest first. First promotes the queue's
  // delayed and failed jobs whose run_at_ms <= now_ms. Returns nothing while
  // the queue is paused. Each returned job has attempts_made incremented,
  // started_ms = now_ms and a lease with a fresh token that expires at
  // now_ms + lease_ms. Atomic: two concurrent claims never return the same
  // job. Durable on return.
  virtual boost::asio::awaitable<std::vector<Job>> claim(const ClaimRequest& request) = 0;

  // Extends each lease to `expires_ms`. Returns, per item, whether it was
  // extended (false: the job is no longer active under that token).
  virtual boost::asio::awaitable<std::vector<bool>> heartbeat(std::vector<LeaseRef> leases,
                                                              std::int64_t expires_ms) = 0;

  // Records outcomes. Returns, per item, whether it was applied (false: the
  // lease was lost; nothing was changed for that item). Applied items are
  // one transaction. Durable on return.
  virtual boost::asio::awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) = 0;

  // Promotes delayed and failed jobs of every queue whose run_at_ms <= now_ms
  // to waiting. Returns how many moved.
  virtual boost::asio::awaitable<std::size_t> promote_due(std::int64_t now_ms) = 0;

  // Finds active jobs whose lease expired before now_ms (their worker died or
  // stalled) and returns them to waiting with stalls + 1, or moves them to
  // dead once stalls would exceed `max_stalls`. Either way the old lease
  // token stops working.
  virtual boost::asio::awaitable<ReclaimResult> reclaim_expired(std::int64_t now_ms,
                                                               int max_stalls) = 0;

  virtual boost::asio::awaitable<std::optional<Job>> get(const JobId& id) = 0;
  // Throws InvalidArgument if limit is outside 1..1000.
  virtual boost::asio::awaitable<JobPage> list(const ListRequest& request) = 0;
  virtual boost::asio::awaitable<StateCounts> counts(std::string_view queue) = 0;
  // Every queue that holds a job or has been paused, sorted.
  virtual boost::asio::awaitable<std::vector<std::string>> queues() = 0;

  // Deletes the job. Throws NotFound, or Conflict while it is active (cancel
  // it first).
  virtual boost::asio::awaitable<void> remove(const JobId& id) = 0;

  // Moves a failed or dead job back to waiting now, with attempts_made and
  // stalls reset to 0. Throws NotFound, or Conflict in any other state.
  virtual boost::asio::awaitable<void> retry(const JobId& id, std::int64_t now_ms) = 0;

  // A paused queue keeps accepting jobs but `claim` returns none.
  virtual boost::asio::awaitable<void> set_paused(std::string_view queue, bool paused) = 0;
  virtual boost::asio::awaitable<bool> is_paused(std::string_view queue) = 0;

  // The URI this backend was opened with, passwords masked.
  virtual std::string describe() const = 0;

  // Data protection (issue 5) ------------------------------------------------
  // Used by key rotation (`asyncmq keys reseal|retire|list`) and erasure
  // (`asyncmq purge --subject`). Like everything else here they treat
  // payload, result, error and subject as opaque bytes.

  // Every job of every queue, in any state, in id order, a page at a time
  // (pass `next` back as `after`). Not a snapshot: jobs added or removed
  // meanwhile may or may not be seen. Throws InvalidArgument if limit is
  // outside 1..1000.
  virtual boost::asio::awaitable<JobPage> scan(std::optional<JobId> after,
                                               std::size_t limit) = 0;

  // Compare-and-set of the sealed fields of jobs (re-sealing under a new
  // key while workers run). For each item: if the job exists and its stored
  // payload, result and error are still exactly `expected_*`, they become
  // `payload`, `result` and `error`; nothing else of the job changes (state,
  // lease and token included, so an active job's worker is not disturbed).
  // Returns, per item, whether it was applied (false: the job is gone or one
  // of its fields changed since it was read; read it again). One
  // transaction; durable on return.
  virtual boost::asio::awaitable<std::vector<bool>> rewrite_sealed(
      std::vector<SealedRewrite> rewrites) = 0;

  // Erasure: deletes every job whose stored subject (JobOptions::subject as
  // stored, i.e. the blind index) equals `subject`, in every queue and
  // state (active ones too: their workers' writes are then refused), with
  // its payload, result, error and dead letter, in one transaction, and
  // returns how many. Durable on return. A backend that keeps old bytes
  // around overwrites them before returning where it can (SQLite:
  // secure_delete for the deletion, then a WAL checkpoint with TRUNCATE).
  // Throws InvalidArgument for an empty subject.
  virtual boost::asio::awaitable<PurgeResult> purge_subject(std::string subject) = 0;
};

// Opens a backend by URI:
//   memory://                      a fresh in-process store
//   sqlite:///abs/path.db          an absolute path
//   sqlite:///./rel/path.db        a path relative to the working directory
//                                  (the path starts with ./ or ../)
//     options: ?sync=normal|full (default normal), &busy_timeout_ms=N
// Throws InvalidArgument for an unknown scheme, an unknown option or a bad
// value, naming it; NotFound or BackendError if the store cannot be opened
// (for example, a file that is not an SQLite database).
std::shared_ptr<Backend> open_backend(std::string_view uri, Env& env);

}  // namespace asyncmq

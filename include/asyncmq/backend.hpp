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
// Errors a backend writes itself (a stall, a child that failed) start with
// kSystemError ('\0') so that readers show them as they are instead of
// passing them through the codec; codec output never starts with it.
//
// Events: while the store is followed (follow_events), every transition a
// backend makes is also recorded in its event log, in the same transaction,
// so another process can follow them (read_events); promotions of due
// delayed and failed jobs (by claim or promote_due) too. The log keeps at
// least the last kEventRetention events. Unfollowed, nothing is recorded:
// like a pub/sub channel without listeners, events nobody reads cost nothing
// (on SQLite the event rows were 7 % of a 30,000-job bench's end-to-end
// rate, and the queue features may not cost the bench 5 % unused).
//
// Audit outbox: once enable_audit_outbox() was called on a backend object,
// every transition made through it that the audit trail records (the table
// at the top of src/security/audit_backend.hpp) also writes its audit
// entries into the store's outbox, in the SAME transaction as the
// transition: committed together or not at all. The auditing decorator
// (src/security) relays them into the chain (see AuditLog::append_outbox);
// a crash between the commit and the relay leaves them in the outbox for
// the next relay of any process sharing the store.
//
// Audit table: the backend sink of the audit chain (AuditOptions::
// backend_sink). The auditing decorator copies the chain's lines into it
// (append_audit_chain) after writing them to the log; `asyncmq audit
// verify --from-backend` and `audit export --from-backend` read it back
// (read_audit_chain). Append-only: there is no call that changes or
// deletes a line, and re-appending one is a no-op.
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

#include <asyncmq/audit.hpp>
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

inline constexpr char kSystemError = '\0';
inline constexpr std::int64_t kEventRetention = 100'000;

// What a transition was, for subscribers (see read_events).
//
// A `progress` event carries no detail: the value lives only in the job row
// (Job::progress), as the codec made it (sealed when sealing is on), and a
// subscriber that wants it reads the job and decodes it (Client::get). So the
// event log never holds a copy of the value, in the clear or sealed: nothing
// there for key rotation to re-seal or for erasure to chase, and a busy
// handler's progress costs the log a few bytes per event, not up to 4 KiB.
// The price: a subscriber sees the job's latest value, not the one of the
// moment of each event.
enum class EventType : std::uint8_t {
  waiting = 0,      // added, promoted (a delayed job came due, a failed one's
                    // backoff passed) or retried by hand: ready to run
  delayed = 1,      // added with a delay
  active = 2,       // claimed by a worker
  progress = 3,     // the handler reported progress (no detail: read the job)
  completed = 4,
  failed = 5,       // an attempt failed; it will be retried (detail: attempt number)
  dead = 6,
  expired = 7,      // TTL passed before it started
  cancelled = 8,
  stalled = 9,      // its worker's lease expired; requeued
  deduplicated = 10,  // an add was answered with this existing job (detail: the refused id)
  removed = 11,
  waiting_children = 12,
};
inline constexpr int kEventTypeCount = 13;
std::string_view to_string(EventType t);
// Throws InvalidArgument listing the valid names.
EventType parse_event_type(std::string_view name);

struct Event {
  std::int64_t seq = 0;  // increasing; pass the last one seen to read_events
  std::int64_t time_ms = 0;
  EventType type = EventType::waiting;
  std::string queue;
  JobId job;
  std::string detail;  // never payload data
};

// A page of events and the cursor to read on from. `last_seq` is the seq of
// the last event the read went past, shown or not (a policy may leave
// events out), so a subscriber that passes it back never re-reads them;
// -1 when the read found no event.
struct EventPage {
  std::vector<Event> events;
  std::int64_t last_seq = -1;
};

// What heartbeat found for one lease.
enum class LeaseStatus : std::uint8_t {
  lost = 0,              // not active under that token any more: stop, do not record
  held = 1,              // extended
  cancel_requested = 2,  // extended, and someone asked the job to stop (cancel)
};

// A queue's global rate limit: at most `max` jobs started in any window of
// `interval_ms`, across every worker. A job counts from its claim until
// `interval_ms` after it finishes, so completions, too, never exceed `max`
// in any such window.
//
// Per group (per_group = true): the same limit applies to each group key
// (JobOptions::group) separately, e.g. at most 5 jobs per second per
// tenant; jobs without a key share the "" group, limited like any other
// (a producer that forgets the key does not escape the limit). A claim skips
// the jobs of groups at their limit and takes those of the others, in claim
// order: one busy group never holds the others back. Switching a queue
// between the modes is exact: jobs running or finished within the window
// count in either mode.
struct RateLimit {
  std::int64_t max = 0;  // 0: no limit
  std::int64_t interval_ms = 1000;
  bool per_group = false;
};

// A repeatable: a job template fired on a schedule. Exactly one of `cron`
// (with `time_zone`) and `every_ms` is set.
struct Repeatable {
  std::string queue;
  std::string name;  // unique within the queue
  std::string task;
  std::string payload;  // encoded (codec: job id nil, Field::payload)
  JobOptions options;
  std::string cron;
  std::string time_zone = "UTC";
  std::int64_t every_ms = 0;
  bool catch_up = false;  // after downtime fire once per missed tick, not once
  bool paused = false;
  std::int64_t next_fire_ms = 0;
  std::int64_t last_fire_ms = 0;
  std::int64_t created_ms = 0;
};

// One log line appended by a handler (encoded: Field::log).
struct LogLine {
  std::int64_t time_ms = 0;
  std::string text;
};

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
    cancelled,  // stopped on request (cancel): state cancelled
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

// A job's log lines as Backend::scan read them: the first lines.size() of
// its log, oldest first (a line's index is its position here).
struct JobLogLines {
  JobId id;
  std::vector<LogLine> lines;
};

// A page of jobs in id (creation) order.
struct JobPage {
  std::vector<Job> jobs;
  std::optional<JobId> next;  // pass as `after` to get the next page; empty at the end
  // scan only (list leaves it empty): the log lines of the page's jobs that
  // have any, in id order; jobs without log lines have no entry, so a page
  // of such jobs costs nothing more.
  std::vector<JobLogLines> logs;
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
  std::string expected_progress;                                  // as read
  std::string progress;                                           // to store
  // The job's first expected_logs.size() log lines (text, as read) and what
  // they become, one for one; lines after them (appended since the read)
  // are neither compared nor changed. Both empty: log lines left alone.
  std::vector<std::string> expected_logs, logs;
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
  // state (waiting; delayed when run_at_ms is in the future;
  // waiting_children for a flow parent, with `children` and
  // `pending_children` set; a child's `parent` is in the same batch).
  // Idempotency: a job whose options.idempotency_key matches a job of the
  // same queue that exists (or finished less than its window ago), or an
  // earlier job of the batch, is not stored; its slot in the result holds
  // the existing job's id (and a `deduplicated` event is recorded). A flow
  // job (parent or child) is never deduplicated.
  // Returns, per input job, the id that now stands for it.
  // Durable on return. Concurrent enqueues may be grouped into one commit.
  // Throws Conflict (and stores nothing) if an id already exists.
  virtual boost::asio::awaitable<std::vector<JobId>> enqueue(std::vector<Job> jobs) = 0;

  // Moves up to `max` claimable jobs of `queue` to active under new leases
  // and returns them, in claim order: priority ascending, then LIFO jobs
  // newest first, then FIFO jobs oldest first. First promotes the queue's
  // delayed and failed jobs whose run_at_ms <= now_ms. Returns nothing while
  // the queue is paused, and no more than its rate limit allows (per group:
  // skipping the jobs of groups at their limit). A job never started whose
  // TTL has passed is moved to expired, not returned. Each returned job has
  // attempts_made incremented, started_ms = now_ms and a lease with a fresh
  // token that expires at now_ms + lease_ms. Atomic: two concurrent claims
  // never return the same job. Durable on return.
  virtual boost::asio::awaitable<std::vector<Job>> claim(const ClaimRequest& request) = 0;

  // Extends each lease to `expires_ms`. Returns, per item, whether it was
  // extended, and whether the job was asked to stop.
  virtual boost::asio::awaitable<std::vector<LeaseStatus>> heartbeat(
      std::vector<LeaseRef> leases, std::int64_t expires_ms) = 0;

  // Records outcomes. Returns, per item, whether it was applied (false: the
  // lease was lost; nothing was changed for that item). Applied items are
  // one transaction. Durable on return. A completed child counts down its
  // parent's pending_children (the parent becomes waiting at zero); a child
  // that ends dead or cancelled acts on its parent by its on_failure.
  virtual boost::asio::awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) = 0;

  // Promotes delayed and failed jobs of every queue whose run_at_ms <= now_ms
  // to waiting, with a `waiting` event each (time now_ms), in one
  // transaction. Returns how many moved.
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

  // Deletes the job, its log lines and, for a flow parent, its children that
  // have not finished (recursively). Throws NotFound, or Conflict while it
  // (or one of those children) is active (cancel it first).
  virtual boost::asio::awaitable<void> remove(const JobId& id) = 0;

  // Moves a failed or dead job back to waiting now, with attempts_made and
  // stalls reset to 0. Throws NotFound, or Conflict in any other state.
  virtual boost::asio::awaitable<void> retry(const JobId& id, std::int64_t now_ms) = 0;

  // A paused queue keeps accepting jobs but `claim` returns none.
  virtual boost::asio::awaitable<void> set_paused(std::string_view queue, bool paused) = 0;
  virtual boost::asio::awaitable<bool> is_paused(std::string_view queue) = 0;

  // ----- Scheduling and flow features (issue 4) -----

  // Moves jobs never started whose TTL passed (created_ms + ttl_ms <= now)
  // from waiting or delayed to expired. Returns their ids.
  virtual boost::asio::awaitable<std::vector<JobId>> expire_due(std::int64_t now_ms) = 0;

  // Cancels a job: waiting, delayed, failed or waiting_children ones become
  // cancelled at once (returns cancelled); an active one is flagged and its
  // worker learns it at the next heartbeat (returns active). Throws NotFound,
  // or Conflict for a job already completed, dead, expired or cancelled.
  virtual boost::asio::awaitable<JobState> cancel(const JobId& id, std::int64_t now_ms) = 0;

  // Stores a running job's progress (encoded: Field::progress) and records a
  // `progress` event without detail, in one transaction. False if the lease
  // was lost.
  virtual boost::asio::awaitable<bool> set_progress(LeaseRef lease, std::string progress,
                                                    std::int64_t now_ms) = 0;
  // Appends encoded log lines to a running job. False if the lease was lost.
  virtual boost::asio::awaitable<bool> append_logs(LeaseRef lease,
                                                   std::vector<LogLine> lines) = 0;
  // The job's log lines, oldest first (at most `limit`, 1..10000).
  virtual boost::asio::awaitable<std::vector<LogLine>> logs(const JobId& id,
                                                            std::size_t limit) = 0;

  // A flow parent's children (any state), in id order.
  virtual boost::asio::awaitable<std::vector<Job>> children(const JobId& parent) = 0;

  // Housekeeping; each call is one transaction.
  // Removes up to `limit` (1..10000) jobs of `state` (not active) that
  // finished (or, for unfinished states, were created) before `before_ms`,
  // oldest first. Returns their ids.
  virtual boost::asio::awaitable<std::vector<JobId>> clean(std::string_view queue, JobState state,
                                                           std::int64_t before_ms,
                                                           std::size_t limit) = 0;
  // Removes every waiting and delayed job of the queue (not active, finished
  // or flow jobs). Returns how many.
  virtual boost::asio::awaitable<std::size_t> drain(std::string_view queue) = 0;
  // Removes the queue and everything in it: jobs, logs, repeatables, its
  // rate limit, pause flag. Throws Conflict while a job is active unless
  // `force`. Returns how many jobs went.
  virtual boost::asio::awaitable<std::size_t> obliterate(std::string_view queue, bool force) = 0;

  // Global rate limit per queue (or per group within it, see RateLimit);
  // max = 0 removes it. Throws InvalidArgument for a max or interval out of
  // range, and changes nothing then.
  virtual boost::asio::awaitable<void> set_rate_limit(std::string_view queue, RateLimit limit) = 0;
  virtual boost::asio::awaitable<RateLimit> rate_limit(std::string_view queue) = 0;
  // When a claim on a limited queue may next succeed (ms), or 0 if it is
  // not held back by its limit now. Per group: 0 while some waiting job's
  // group is below its limit (or nothing waits), else the earliest time one
  // of the waiting jobs' groups frees a slot.
  virtual boost::asio::awaitable<std::int64_t> rate_limited_until(std::string_view queue,
                                                                 std::int64_t now_ms) = 0;

  // Repeatables. upsert replaces one of the same (queue, name).
  virtual boost::asio::awaitable<void> upsert_repeatable(Repeatable r) = 0;
  // Throws NotFound.
  virtual boost::asio::awaitable<void> remove_repeatable(std::string_view queue,
                                                         std::string_view name) = 0;
  // Pauses, or resumes with the given next fire time, in one write, so a
  // repeatable removed meanwhile is not brought back (`next_fire_ms` is
  // ignored when pausing). Throws NotFound.
  virtual boost::asio::awaitable<void> set_repeatable_paused(std::string_view queue,
                                                             std::string_view name, bool paused,
                                                             std::int64_t next_fire_ms) = 0;
  // All repeatables of `queue` (every queue if empty), by queue then name.
  virtual boost::asio::awaitable<std::vector<Repeatable>> repeatables(std::string_view queue) = 0;
  // Fires one tick, exactly once however many schedulers try: if the
  // repeatable still exists, is not paused and its next_fire_ms equals
  // `expected_fire_ms`, sets next_fire_ms = `next_fire_ms`, last_fire_ms =
  // `expected_fire_ms` and enqueues `job`, all in one transaction, and
  // returns true. Otherwise changes nothing and returns false.
  virtual boost::asio::awaitable<bool> fire_repeatable(std::string_view queue,
                                                       std::string_view name,
                                                       std::int64_t expected_fire_ms,
                                                       std::int64_t next_fire_ms, Job job) = 0;

  // Records events of transitions at times before `until_ms` (a lease for
  // the whole store: the latest `until_ms` any caller gave wins, so one
  // follower never shortens another's), and returns the seq to read on from
  // (read_events) for exactly the events recorded after this call: the
  // newest seq so far, 0 when there is none. A follower calls it before its
  // first read and again before `until_ms` passes.
  virtual boost::asio::awaitable<std::int64_t> follow_events(std::int64_t until_ms) = 0;

  // Events with seq > `after_seq`, oldest first, at most `limit` (1..10000).
  // `after_seq` < 0 asks for the newest `limit` events instead (oldest
  // first), so a subscriber can start at the head. Read on from last_seq.
  virtual boost::asio::awaitable<EventPage> read_events(std::int64_t after_seq,
                                                        std::size_t limit) = 0;

  // The URI this backend was opened with, passwords masked.
  virtual std::string describe() const = 0;

  // Data protection (issue 5) ------------------------------------------------
  // Used by key rotation (`asyncmq keys reseal|retire|list`) and erasure
  // (`asyncmq purge --subject`). Like everything else here they treat
  // payload, result, error, progress, log lines and subject as opaque bytes.

  // Every job of every queue, in any state, in id order, a page at a time
  // (pass `next` back as `after`), with each job's log lines (JobPage::logs:
  // all of them, however many; one more read per page, which finds nothing
  // when no job of the page has a line). Not a snapshot across pages: jobs
  // added or removed meanwhile may or may not be seen. Throws
  // InvalidArgument if limit is outside 1..1000.
  virtual boost::asio::awaitable<JobPage> scan(std::optional<JobId> after,
                                               std::size_t limit) = 0;

  // Compare-and-set of the sealed fields of jobs (re-sealing under a new
  // key while workers run). For each item: if the job exists and its stored
  // payload, result, error and progress are still exactly `expected_*`, they
  // become `payload`, `result`, `error` and `progress` (a caller that leaves
  // both progress fields empty changes nothing of a job without progress,
  // and is refused for one with it); nothing else of the job changes (state,
  // lease and token included, so an active job's worker is not disturbed).
  // Log lines likewise: the job's first expected_logs.size() lines must
  // still be exactly `expected_logs` (a job with fewer lines is refused),
  // and their texts become `logs` (times and order kept); lines appended
  // after those are not looked at, so a worker that logs meanwhile does not
  // make the item fail, and its new lines wait for the next pass. The item
  // is applied whole or not at all.
  // Returns, per item, whether it was applied (false: the job is gone or one
  // of its fields or compared log lines changed since it was read; read it
  // again). One transaction; durable on return.
  // Throws InvalidArgument (and changes nothing) if an item's `logs` and
  // `expected_logs` differ in length.
  virtual boost::asio::awaitable<std::vector<bool>> rewrite_sealed(
      std::vector<SealedRewrite> rewrites) = 0;

  // Erasure: deletes every job whose stored subject (JobOptions::subject as
  // stored, i.e. the blind index) equals `subject`, in every queue and
  // state (active ones too: their workers' writes are then refused), with
  // its payload, result, error, progress, log lines and dead letter, in one
  // transaction, and returns how many. Durable on return. A backend that
  // keeps old bytes around overwrites them before returning where it can
  // (SQLite: secure_delete for the deletion, then VACUUM and a WAL
  // checkpoint with TRUNCATE: a pass over the whole store).
  //
  // Throws InvalidArgument for an empty subject.
  virtual boost::asio::awaitable<PurgeResult> purge_subject(std::string subject) = 0;

  // Audit outbox (issue 6) ----------------------------------------------------
  // Called by the auditing decorator only; a program does not need them.

  // From now on, writes through this object also write audit entries into
  // the outbox in their transaction. `actor` names who acts in calls that
  // carry no worker id (enqueue, remove, retry, pause, cancel, reclaims, ...)
  // unless the auditing decorator names its own for the call
  // (src/core/audit_actor.hpp: several Clients may share one backend);
  // claims name "worker:<worker_id>" and finishes "worker:<lease owner>".
  // Calling it again changes nothing. Thread safety: safe; writes already
  // running may or may not see it.
  virtual void enable_audit_outbox(std::string actor) = 0;
  // Outbox rows with seq > after_seq, oldest first, at most `limit`
  // (1..10000): committed rows of every process sharing the store.
  virtual boost::asio::awaitable<std::vector<AuditOutboxRow>> read_audit_outbox(
      std::int64_t after_seq, std::size_t limit) = 0;
  // Says that every row with seq <= through_seq is in the chain, so it may
  // be deleted. A hint: it does not wait (memory deletes them at once,
  // SQLite in a later write transaction once a few dozen are relayed, and
  // the rest when the backend object closes); rows left over are relayed at
  // most once anyway, because the chain remembers what it relayed. A seq is
  // never reused, trimmed or not.
  virtual void trim_audit_outbox(std::int64_t through_seq) = 0;
  // Audit table (issue 6) ----------------------------------------------------
  // Called by the auditing decorator (append) and the verifier (read).

  // Appends chain lines (AuditChainLine: a record's seq and its exact JSON
  // line), in one transaction: all or none. Idempotent by seq: a line whose
  // seq is stored already with the same text is skipped; so a relay that
  // re-sends lines after a crash changes nothing.
  // Throws IntegrityError (and stores nothing of the batch) if a seq is
  // stored with different text (the table is append-only: a line is never
  // replaced), InvalidArgument for a seq < 1 or a text that is empty or
  // holds a newline. Durable on return.
  virtual boost::asio::awaitable<void> append_audit_chain(std::vector<AuditChainLine> lines) = 0;
  // Stored lines with seq > after_seq, in seq order, at most `limit`
  // (1..10000). Any after_seq: the verifier starts below 0, so that it sees
  // every row, also one planted under a seq the writer never uses. Throws
  // InvalidArgument for a bad limit.
  virtual boost::asio::awaitable<std::vector<AuditChainLine>> read_audit_chain(
      std::int64_t after_seq, std::size_t limit) = 0;
  // The highest seq stored, 0 when the table is empty (where the decorator
  // resumes copying).
  virtual boost::asio::awaitable<std::int64_t> audit_chain_head() = 0;

  // The store's identity, the same for every process that opens it: random,
  // made when the store is created (SQLite: kept in the file; memory: per
  // object). The chain names the outbox rows it relayed by it.
  virtual std::string store_id() const = 0;
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

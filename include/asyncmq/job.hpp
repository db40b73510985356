// The job model: ids, states, options and the job record itself.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace asyncmq {

class Env;

// A job's identity: a 128-bit UUIDv7 (RFC 9562).
//
// Layout: 48-bit Unix time in ms, version 7, a 12-bit per-process counter
// that keeps ids from one process strictly increasing even within one
// millisecond, the variant, then 62 random bits. Ids sort by creation time
// (byte order == time order) and are unique across processes and hosts
// without coordination: two ids collide only if two generators pick the same
// 62 random bits in the same millisecond with the same counter.
//
// Thread safety: a value type; `JobId::generate` is safe to call from any
// thread.
class JobId {
 public:
  JobId() = default;  // the nil id (all zero)
  explicit JobId(const std::array<std::uint8_t, 16>& bytes) : bytes_(bytes) {}

  // A new id, its timestamp taken from `env`'s clock and its random bits from
  // `env`'s randomness.
  static JobId generate(Env& env);

  // Parses the canonical 36-character form (8-4-4-4-12 hex, any case).
  // Throws InvalidArgument naming the input's problem.
  static JobId parse(std::string_view text);
  static std::optional<JobId> try_parse(std::string_view text) noexcept;

  std::string str() const;  // lowercase canonical form
  const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
  // Milliseconds since the Unix epoch at creation.
  std::int64_t timestamp_ms() const;
  // The first 64 bits as a non-negative integer: time and counter. Backends
  // use it as the FIFO ordering key.
  std::int64_t order_key() const;
  bool is_nil() const;

  auto operator<=>(const JobId&) const = default;

 private:
  std::array<std::uint8_t, 16> bytes_{};
};

// Where a job is in its life.
//
//   add ─► waiting ──claim──► active ──ok──► completed
//      ├─► delayed ─(due)─┘      │
//      └─► waiting-children      ├─error, attempts left─► failed ─(backoff due)─► waiting
//          (a flow parent: waits │
//          for its children)     └─error, attempts spent─► dead ──retry──► waiting
//   waiting/delayed, never started, past its TTL ─► expired
//   cancel: waiting/delayed/failed/waiting-children ─► cancelled at once;
//           active ─► asked to stop; a handler that stops ─► cancelled
//
// `failed` means "an attempt failed; the job waits for its backoff and will
// run again". `dead` is the dead-letter state: no more automatic attempts.
// The numeric values are stored by backends: never renumber.
enum class JobState : std::uint8_t {
  waiting = 0,
  delayed = 1,
  active = 2,
  completed = 3,
  failed = 4,
  dead = 5,
  expired = 6,
  cancelled = 7,
  waiting_children = 8,
};
inline constexpr int kJobStateCount = 9;

std::string_view to_string(JobState s);
// Throws InvalidArgument listing the valid names. Accepts "waiting-children"
// and "waiting_children".
JobState parse_job_state(std::string_view name);
// Completed, dead, expired and cancelled: the job will not run again unless
// retried by hand.
inline bool is_final(JobState s) {
  return s == JobState::completed || s == JobState::dead || s == JobState::expired ||
         s == JobState::cancelled;
}

// What a flow parent does when one of its children ends without completing
// (dead, expired or cancelled). Chosen per child.
enum class ChildFailure : std::uint8_t {
  fail_parent = 0,  // the parent goes to dead, naming the child
  ignore = 1,       // counted as done: the parent runs when the others complete
  wait = 2,         // the parent keeps waiting (until the child is retried and completes)
};

// How long to wait before the next attempt after a failure.
struct Backoff {
  enum class Kind : std::uint8_t { fixed = 0, exponential = 1 };
  Kind kind = Kind::exponential;
  // fixed: every wait is `delay_ms`. exponential: the n-th retry (n >= 1)
  // waits delay_ms * 2^(n-1), so it grows for every base value (unlike
  // base^n, which never grows for a base of 1).
  std::int64_t delay_ms = 1000;
  // Upper bound of any single wait.
  std::int64_t max_delay_ms = 3'600'000;
  // 0..1: the wait is drawn uniformly from [w*(1-jitter), w]. Jitter spreads
  // a burst of failures so that the retries do not all land at once.
  double jitter = 0.2;

  // The wait before retry number `retry` (1-based), using `env`'s randomness.
  std::int64_t delay_for(int retry, Env& env) const;
};

// Per-job options, given to Queue::add. Every field has a safe default.
struct JobOptions {
  // Not an aggregate on purpose: GCC 12 destroys an aggregate temporary twice
  // when it is created inside a co_await expression (`co_await q.add(t, p,
  // JobOptions{})`, or the default argument). A user-provided constructor
  // avoids that miscompilation.
  JobOptions() {}
  // Lower runs first, like Unix nice. Range [-1'000'000, 1'000'000].
  std::int32_t priority = 0;
  // Run no sooner than this many ms after add (state `delayed` until then).
  std::int64_t delay_ms = 0;
  // Total attempts including the first. 1 means "never retry". Range [1, 1000].
  std::int32_t attempts = 1;
  Backoff backoff;
  // Per-attempt time limit in ms; 0 means none. Past it a coroutine handler
  // is cancelled at its next suspension and a blocking one is asked to stop
  // (TaskContext::cancelled()); the attempt fails with "timed out after N ms"
  // and follows the retry policy.
  std::int64_t timeout_ms = 0;
  // Take this job before the other waiting jobs of the same priority.
  bool lifo = false;
  // Deduplication key (at most 256 bytes), per queue: while a job with this
  // key exists in the queue, adding another returns the existing job's id and
  // stores nothing. See `idempotency_window_ms`.
  std::string idempotency_key;
  // Keep deduplicating for this many ms after the job finished, even once it
  // has been removed or cleaned. 0: only while the job exists.
  std::int64_t idempotency_window_ms = 0;
  // Time to live in ms, counted from creation: a job not started by then is
  // never started; it becomes `expired`. 0 means none.
  std::int64_t ttl_ms = 0;
  // The data subject this job is about, for erasure. Stored as given by the
  // codec seam (the security layer turns it into a blind index).
  std::string subject;
  // Group key (at most 256 bytes), e.g. a tenant id. Empty: no group. A
  // queue whose rate limit is per group (RateLimit::per_group) limits each
  // key separately; jobs without a key share one bucket, the "" group.
  // Otherwise it has no effect. Stored and shown in the clear, like the
  // idempotency key: put no personal data in it (that is what `subject`
  // is for).
  std::string group;
};

// The lease a worker holds on an active job. `token` is the fencing token:
// every claim issues a new one, and a backend applies a completion, failure
// or heartbeat only if it carries the job's current token.
struct Lease {
  std::uint64_t token = 0;
  std::string owner;         // the worker's id
  std::int64_t expires_ms = 0;
};

// A job as stored. Between the Queue and the Backend `payload`, `result`,
// `error` and `progress` are opaque bytes (the codec's output); the Queue's
// read calls and a handler's TaskContext see them decoded (JSON text).
struct Job {
  JobId id;
  std::string queue;
  std::string task;
  JobState state = JobState::waiting;
  JobOptions options;
  std::string payload;
  std::string result;
  std::string error;          // the last attempt's error, if any
  std::int32_t attempts_made = 0;  // attempts started (claims)
  std::int32_t stalls = 0;          // times its lease expired and it was reclaimed
  std::int64_t created_ms = 0;
  std::int64_t run_at_ms = 0;       // when it becomes (or became) claimable
  std::int64_t started_ms = 0;      // last claim
  std::int64_t finished_ms = 0;     // completed or dead
  Lease lease;                      // meaningful while active
  // Flows. A child names its parent (nil: none) and what a failure of this
  // child does to it; a parent counts its children not yet done.
  JobId parent;
  ChildFailure on_failure = ChildFailure::fail_parent;
  std::int32_t children = 0;          // children it was created with
  std::int32_t pending_children = 0;  // of those, not yet done
  // Progress reported by the handler (a number 0-100, or any JSON value);
  // empty if none. Like `payload`, opaque bytes between the Queue and the
  // Backend (the codec's output, Field::progress: sealed when sealing is on)
  // and JSON text once decoded.
  std::string progress;
  bool cancel_requested = false;      // cancel asked while active
  // Set only by Client::decode, never stored: why the stored progress failed
  // to open (the IntegrityError's message, naming the job and field, never
  // the content); `progress` is then empty. Progress is informational, so a
  // reader shows this instead of failing the whole job.
  std::string progress_error;
};

}  // namespace asyncmq

template <>
struct std::hash<asyncmq::JobId> {
  std::size_t operator()(const asyncmq::JobId& id) const noexcept;
};

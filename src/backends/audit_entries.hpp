// The audit entries a backend writes into its outbox (see "Audit outbox" in
// include/asyncmq/backend.hpp), worded in one place for every backend: the
// actions and details are those of the table at the top of
// src/security/audit_backend.hpp, which the audit trail promises.
//
// An AuditEntries collects one transaction's entries; the backend stores
// them with the transition (SQLite: one outbox row per transaction, memory:
// under its mutex) and they are relayed into the chain after the commit.
// Constructed with a null actor it collects nothing (the outbox is off), so
// a store without audit pays one branch per transition.
//
// Thread safety: one per transaction, used by one thread.
#pragma once

#include <asyncmq/backend.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncmq::backends {

// The stored form of one transaction's entries (an outbox row's blob),
// written by AuditEntries and read back by decode_audit_entries:
//   0x02, then per entry: a flags byte (kSameActor: the previous entry's
//   actor; kSameQueue: its queue; kRawJob: the job as its 16 id bytes;
//   kRawSubject: the subject as the 32 bytes of its blind index), then the
//   action, the actor unless kSameActor, the job, the queue unless
//   kSameQueue, the subject and the detail, each string as varint length ||
//   bytes. Why not the six length-prefixed strings of the first format
//   (still read, for rows a store written before holds): the entries are
//   built on the SQLite writer's thread, the one every transition waits
//   for, and a 36-character id, a repeated "worker:<id>" actor and u32
//   lengths made an entry ~100 bytes and six allocations; this one is ~30
//   bytes and none.
inline constexpr char kAuditEntriesFormat = '\x02';

class AuditEntries {
 public:
  // `actor`: the backend object's actor (enable_audit_outbox), or null when
  // its outbox is off. It must outlive this object.
  explicit AuditEntries(const std::string* actor = nullptr) : actor_(actor) {}

  bool on() const { return actor_ != nullptr; }
  // Writes the entries into `buffer` (its contents dropped, its capacity
  // kept), before the first one.
  void reuse(std::string buffer) {
    if (count_ != 0) return;
    buffer.clear();
    blob_ = std::move(buffer);
  }

  // A job's transition, by the object's actor (or "worker:<worker>", if
  // `worker` is given).
  void job(std::string_view action, const JobId& id, std::string_view queue,
           std::string_view subject, std::string_view detail = {},
           std::optional<std::string_view> worker = std::nullopt) {
    if (!actor_) return;
    put(action, &id, {}, queue, subject, detail, worker);
  }
  // A queue's (or repeatable's) change, by the object's actor.
  void queue(std::string_view action, std::string_view queue, std::string_view detail = {}) {
    if (!actor_) return;
    put(action, nullptr, {}, queue, {}, detail, std::nullopt);
  }

  // ---- the wording of the table in audit_backend.hpp ----
  // `via`, if not empty, names what added it (a repeatable's tick).
  void added(const Job& j, bool delayed, std::string_view via = {}) {
    job("added", j.id, j.queue, j.options.subject,
        !via.empty() ? via : delayed ? std::string_view("delayed") : std::string_view());
  }
  // An add answered with the job that stands (its id), named as such.
  void deduplicated(const Job& refused, const JobId& standing) {
    job("deduplicated", standing, refused.queue, refused.options.subject);
  }
  void claimed(const Job& j, std::string_view worker_id) {
    if (!actor_) return;
    char buf[32] = "attempt=";
    job("claimed", j.id, j.queue, j.options.subject, with_number(buf, 8, j.attempts_made),
        worker_id);
  }
  // An applied Outcome, by the worker that held the lease.
  void finished(Outcome::Kind kind, const JobId& id, std::string_view queue,
                std::string_view subject, std::int64_t run_at_ms, std::string_view lease_owner) {
    if (!actor_) return;
    const char* action = kind == Outcome::Kind::completed   ? "completed"
                         : kind == Outcome::Kind::retry     ? "retried"
                         : kind == Outcome::Kind::cancelled ? "cancelled"
                                                            : "dead";
    char buf[40] = "run_at=";
    job(action, id, queue, subject,
        kind == Outcome::Kind::retry ? with_number(buf, 7, run_at_ms) : std::string_view(),
        lease_owner);
  }
  static std::string rate_limit_detail(const RateLimit& l) {
    return "max=" + std::to_string(l.max) + " interval_ms=" + std::to_string(l.interval_ms) +
           " per_group=" + (l.per_group ? "true" : "false");
  }

  bool empty() const { return count_ == 0; }
  // The stored form (above), and the entries are gone from here.
  std::string take_encoded() {
    count_ = 0;
    have_last_ = false;
    std::string out = std::move(blob_);
    blob_.clear();
    return out;
  }
  std::vector<AuditEvent> take();

 private:
  static std::string_view with_number(char* buf, std::size_t prefix, std::int64_t n);
  void put(std::string_view action, const JobId* id, std::string_view job_text,
           std::string_view queue, std::string_view subject, std::string_view detail,
           std::optional<std::string_view> worker);

  const std::string* actor_;
  std::string blob_;
  std::size_t count_ = 0;
  // The previous entry's actor and queue, for kSameActor and kSameQueue.
  bool have_last_ = false;
  bool last_by_worker_ = false;
  std::string last_worker_;
  std::string last_queue_;
};

// The entries of a stored blob (either format). Throws
// BackendError(corrupt_store) for a malformed one.
std::vector<AuditEvent> decode_audit_entries(std::string_view blob);

}  // namespace asyncmq::backends

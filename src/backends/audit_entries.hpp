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

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncmq::backends {

class AuditEntries {
 public:
  // `actor`: the backend object's actor (enable_audit_outbox), or null when
  // its outbox is off. It must outlive this object.
  explicit AuditEntries(const std::string* actor = nullptr) : actor_(actor) {}

  bool on() const { return actor_ != nullptr; }

  // A job's transition, by the object's actor (or `by`, if not empty).
  void job(std::string_view action, const JobId& id, std::string_view queue,
           std::string_view subject, std::string detail = {}, std::string by = {}) {
    if (!actor_) return;
    events_.emplace_back(std::string(action), by.empty() ? *actor_ : std::move(by), id.str(),
                         std::string(queue), std::string(subject), std::move(detail));
  }
  // A queue's (or repeatable's) change, by the object's actor.
  void queue(std::string_view action, std::string_view queue, std::string detail = {}) {
    if (!actor_) return;
    events_.emplace_back(std::string(action), *actor_, std::string(), std::string(queue),
                         std::string(), std::move(detail));
  }

  // ---- the wording of the table in audit_backend.hpp ----
  // `via`, if not empty, names what added it (a repeatable's tick).
  void added(const Job& j, bool delayed, std::string_view via = {}) {
    job("added", j.id, j.queue, j.options.subject,
        !via.empty() ? std::string(via) : delayed ? "delayed" : "");
  }
  // An add answered with the job that stands (its id), named as such.
  void deduplicated(const Job& refused, const JobId& standing) {
    job("deduplicated", standing, refused.queue, refused.options.subject);
  }
  void claimed(const Job& j, std::string_view worker_id) {
    job("claimed", j.id, j.queue, j.options.subject, "attempt=" + std::to_string(j.attempts_made),
        worker(worker_id));
  }
  // An applied Outcome, by the worker that held the lease.
  void finished(Outcome::Kind kind, const JobId& id, std::string_view queue,
                std::string_view subject, std::int64_t run_at_ms, std::string_view lease_owner) {
    const char* action = kind == Outcome::Kind::completed   ? "completed"
                         : kind == Outcome::Kind::retry     ? "retried"
                         : kind == Outcome::Kind::cancelled ? "cancelled"
                                                            : "dead";
    job(action, id, queue, subject,
        kind == Outcome::Kind::retry ? "run_at=" + std::to_string(run_at_ms) : std::string(),
        worker(lease_owner));
  }
  static std::string worker(std::string_view id) { return "worker:" + std::string(id); }
  static std::string rate_limit_detail(const RateLimit& l) {
    return "max=" + std::to_string(l.max) + " interval_ms=" + std::to_string(l.interval_ms) +
           " per_group=" + (l.per_group ? "true" : "false");
  }

  bool empty() const { return events_.empty(); }
  std::vector<AuditEvent> take() { return std::move(events_); }

 private:
  const std::string* actor_;
  std::vector<AuditEvent> events_;
};

}  // namespace asyncmq::backends

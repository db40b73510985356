// The auditing Backend decorator: after each successful call of the inner
// backend, appends one batch of audit records for the transitions it made.
//
//   enqueue          added (one per job; detail "delayed" for a delayed job)
//   claim            claimed (actor "worker:<worker id>", detail "attempt=N")
//   finish           completed / retried (detail "run_at=<ms>") / dead, per
//                    applied outcome; refused outcomes (lost leases) write
//                    nothing, they changed nothing
//   reclaim_expired  stalled (back to waiting) / dead (detail "stalled")
//   remove           removed;  retry: retried (detail "manual")
//   set_paused       paused / resumed
// Everything else forwards unaudited (reads, heartbeats, promotions).
//
// Finish outcomes carry only a job id: the queue, subject and worker are
// taken from the claim this decorator saw (kept in a map until the job is
// finished or reclaimed). remove, retry and reclaims of jobs claimed
// elsewhere read the job first (one `get` each) to name its queue.
//
// A call that throws writes nothing (nothing was applied). The records are
// appended after the inner call commits, so a crash in between loses them;
// see include/asyncmq/audit.hpp.
//
// Thread safety: as safe as the inner backend. Lifetime: holds the inner
// backend and the AuditLog (shared).
#pragma once

#include <asyncmq/audit.hpp>
#include <asyncmq/backend.hpp>
#include <asyncmq/identity.hpp>

#include <memory>
#include <string>

namespace asyncmq::security {

// `actor` names who acts through this backend for calls that carry no
// worker id (enqueue, remove, retry, pause, reclaim): a principal, "cli".
std::shared_ptr<Backend> make_auditing_backend(std::shared_ptr<Backend> inner,
                                               std::shared_ptr<AuditLog> log, std::string actor);

// Records every denial of `policy` in `log`: action "denied", actor the
// principal's id, the queue ("" for calls about no one queue), detail
// "action=<policy action>". Registers one observer per (policy, log) pair,
// however often it is called (each Client with both calls it). The
// observer holds the log weakly: it does not keep the log open.
void audit_denials(const std::shared_ptr<Policy>& policy, const std::shared_ptr<AuditLog>& log);

}  // namespace asyncmq::security

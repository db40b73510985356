// The auditing Backend decorator. Every transition below is recorded:
//
//   enqueue          added (one per job; detail "delayed" for a delayed job),
//                    deduplicated (naming the job that stands)
//   claim            claimed (actor "worker:<worker id>", detail "attempt=N");
//                    a job found past its TTL on the way: expired ("ttl")
//   finish           completed / retried (detail "run_at=<ms>") / cancelled /
//                    dead, per applied outcome, actor "worker:<lease owner>";
//                    refused outcomes (lost leases) write nothing, they
//                    changed nothing
//   reclaim_expired  stalled (back to waiting, "lease expired") / dead
//                    ("stalled")
//   remove           removed;  retry: retried (detail "manual")
//   set_paused       paused / resumed
//   expire_due       expired ("ttl");  cancel: cancelled ("requested" while
//                    active);  clean: cleaned ("state=<state>");  drain:
//                    drained ("removed=N");  obliterate: obliterated
//   set_rate_limit   rate-limited ("max=.. interval_ms=.. per_group=..")
//   repeatables      repeatable-set / -removed / -paused / -resumed
//                    ("name=.."), and a fired tick: added ("repeatable=..")
// Everything else forwards unaudited (reads, heartbeats, promotions,
// progress, logs). The actor of calls that carry no worker id is the one
// given here.
//
// How the records reach the chain: the transactional outbox. The
// decorator turns the inner backend's audit outbox on (Backend::
// enable_audit_outbox), so the BACKEND writes each of those entries in the
// same transaction as the transition it describes (backends/
// audit_entries.hpp words them). After the call returns, the decorator
// relays: it reads the outbox rows after its cursor, appends them with
// AuditLog::append_outbox (which, under the log's flock, skips whatever the
// chain already holds: each relayed record names its outbox row, and that
// name is covered by its MAC), then tells the backend it may trim the rows
// now in the chain. So, whatever is killed when:
//   - before the commit: neither the transition nor its records exist;
//   - between the commit and the chain append (the crash window of the old
//     decorator, which appended after the commit and lost the batch): the
//     rows wait in the outbox; the next relay of any process sharing the
//     store, or this one's on its next open, appends them;
//   - between the append and the trim: the rows are relayed again and
//     skipped, so nothing is written twice;
//   - inside the append (a short write): the cut partial line was never a
//     record, and the complete ones name their rows, so the relay resumes
//     after the last complete record.
// Each relay reads every committed row after the chain's cursor, so it
// also relays rows of other processes that committed before its own
// (commit order is seq order: the store serialises writers), and the
// cursor never passes a row that is not in the chain.
//
// Why an outbox, and what the alternatives would cost:
//   - relaying the existing event log instead: events lack the actor, the
//     subject blind index and the audit details, are compacted per type and
//     queue, cover no queue or repeatable acts, and are kept for the event
//     subscribers' needs (kEventRetention), not until relayed; making them
//     carry all that would change the event stream every subscriber reads.
//   - keeping the chain itself in a backend table, MACed inside the
//     transaction: the writer's forward-secure key state, its evolution
//     and the checkpoint signing would move into every backend (each
//     transaction would have to read the head, MAC under a key another
//     process may have just evolved, and sign checkpoints under the write
//     lock), and the file sink would still need a relay like this one.
//   The outbox costs one INSERT of one blob per write transaction of an
//   audited backend (not per job), an outbox read per relay, and a DELETE
//   that rides in a later group commit; the chain and its keys stay where
//   they were.
//
// The backend sink (AuditOptions::backend_sink): with it on, each relay
// round also copies the log's lines that the store's audit table lacks into
// it (Backend::append_audit_chain, idempotent by seq), after the log write
// and before the trim; opening the decorator catches the table up too. See
// copy_chain_to_backend in the .cpp.
//
// Relays run on the decorator's own relay thread, one round at a time: a
// round reads every committed row after the cursor, so under load one
// outbox read and one chain write cover many calls. A user's or an
// operator's call (enqueue, remove, retry, pause, clean, ...) returns once
// a round that began after it ended: its records are in the chain. A
// worker's calls (claim, finish, reclaim_expired, expire_due) only start a
// round and go on: their records are committed in the outbox already, and
// waiting would put the chain write on the worker's event loop. Destroying
// the decorator relays what is left. Claims that return no job and
// housekeeping calls that changed nothing do not relay; a claim's TTL
// expirations then ride with the next relay.
//
// CPU priority: the rounds nobody waits for render their records (HMACs,
// JSON lines) on a renderer thread at SCHED_IDLE that holds no lock
// (AuditLog::prepare_outbox, render, commit_outbox), so the chain only uses
// CPU time that the store's writer and the worker leave. A round that a
// caller waits for, the destructor's, and any round whose renderer did not
// get the CPU within 20 ms render on the relay thread instead, so a
// renderer that gets no CPU delays nobody. Any process may do this: a
// thread may always lower itself.
//
// Fault injection: ASYNCMQ_FAULT_KILL_BEFORE_AUDIT_RELAY=N in the
// environment kills the process (SIGKILL) at the N-th relay, after the
// inner backend committed and before anything reaches the chain: the exact
// crash point tests/fault/audit_crash_test.cpp needs.
//
// Thread safety: as safe as the inner backend. Lifetime: holds the inner
// backend and the AuditLog (shared), and owns the relay thread, joined by
// the destructor (so do not destroy it on that thread: no callback of its
// runs user code). Errors: a call's own errors, as the
// inner backend throws them; relay failures are logged and counted by the
// AuditLog, never thrown (the transition committed; its records wait).
#pragma once

#include <asyncmq/audit.hpp>
#include <asyncmq/backend.hpp>
#include <asyncmq/identity.hpp>

#include <functional>
#include <memory>
#include <string>

namespace asyncmq::security {

// `actor` names who acts through this backend for calls that carry no
// worker id (enqueue, remove, retry, pause, reclaim): a principal, "cli".
// Turns on `inner`'s audit outbox (InvalidArgument if it is on for another
// actor) and relays whatever an earlier process left in it, before
// returning (a blocking outbox read).
std::shared_ptr<Backend> make_auditing_backend(std::shared_ptr<Backend> inner,
                                               std::shared_ptr<AuditLog> log, std::string actor);

// For tests: `render_on` is given each render job instead of the renderer
// thread (which is then not started), so that a test can hold the jobs and
// stand for a renderer that gets no CPU, which no real scheduler produces
// on demand. A job may run on any thread while the backend exists, or be
// dropped.
using RenderExecutor = std::function<void(std::function<void()>)>;
std::shared_ptr<Backend> make_auditing_backend(std::shared_ptr<Backend> inner,
                                               std::shared_ptr<AuditLog> log, std::string actor,
                                               RenderExecutor render_on);

// Records every denial of `policy` in `log`: action "denied", actor the
// principal's id, the queue ("" for calls about no one queue), detail
// "action=<policy action>". Registers one observer per (policy, log) pair,
// however often it is called (each Client with both calls it). The
// observer holds the log weakly: it does not keep the log open.
void audit_denials(const std::shared_ptr<Policy>& policy, const std::shared_ptr<AuditLog>& log);

}  // namespace asyncmq::security

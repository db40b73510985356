// PolicyBackend: a Backend decorator that checks every call against a
// Policy for one principal, and redacts what a reader without admin rights
// would see. Client installs it when ClientOptions carries a principal and
// a policy (src/runtime/client.cpp).
//
// Which call needs what (on the job's or the request's queue):
//   enqueue                 add (each distinct queue of the batch)
//   claim                   claim
//   heartbeat               heartbeat
//   finish                  complete (completed) / fail (retry, dead)
//   get, list, counts       read; payload, result, error and progress
//                           replaced by kRedacted unless the principal is
//                           admin there
//   queues                  read; queues the principal may not read are left out
//   is_paused               read or claim
//   remove / retry          remove / retry (the job's queue is looked up first)
//   set_paused              pause / resume
//   promote_due,            claim on some queue: these maintenance calls span
//   reclaim_expired         queues and are what a worker runs
//   scan, rewrite_sealed    keys on every queue ("*"): key rotation
//   purge_subject           purge on every queue ("*"): erasure
//   read_audit_chain,       audit on "*" (the audit table holds every
//   audit_chain_head,       queue's records)
//   append_audit_chain
// Calls not listed (added to Backend later) are forwarded unchecked by
// core::ForwardingBackend until a check is added here.
//
// heartbeat and finish name jobs by id and lease token only; the decorator
// remembers the queue of each lease (id and token) it let a claim return,
// until that lease's finish, and looks up any other job's queue with get().
//
// Decisions that allowed are kept per (action, queue) for as long as the
// policy's generation() stays the same, so a reload reaches this decorator
// as soon as the policy has it; denials are never kept: each one is
// counted, logged and observed (audited) by Policy::deny.
//
// Thread safety: as the inner backend; the claimed-jobs table and the kept
// decisions have their own mutexes. Lifetime: holds the inner backend, the
// principal and the policy.
#pragma once

#include <asyncmq/backend.hpp>
#include <asyncmq/identity.hpp>

#include <memory>

namespace asyncmq::security {

std::shared_ptr<Backend> make_policy_backend(std::shared_ptr<Backend> inner,
                                             std::shared_ptr<const Principal> who,
                                             std::shared_ptr<Policy> policy);

// Replaces payload, result, error and progress of `job` by kRedacted (empty
// ones stay empty, so a reader still sees whether there is one).
void redact(Job& job);

}  // namespace asyncmq::security

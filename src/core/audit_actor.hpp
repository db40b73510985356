// Who acts in the audited backend call being initiated on this thread.
//
// A backend object's audit outbox names one default actor
// (Backend::enable_audit_outbox), but one backend object may serve several
// Clients acting for different principals, each with its own auditing
// decorator. So the decorator puts its actor here for the call it is about
// to initiate, and the backend reads it when the call is initiated: SQLite
// in the method itself (its methods are plain functions that submit the
// operation), memory at the start of its coroutine body, which runs
// synchronously inside the decorator's co_await. Nothing else runs on the
// thread between the two, so the value is never another call's. It is not
// a context that lasts across a suspension: after the call, the scope's
// end clears it (on whatever thread the decorator resumed; harmless, as no
// call is ever between setting and reading it then).
//
// Why not a parameter of every Backend method: one optional, internal
// string would widen fifteen signatures of the public contract, and every
// backend and decorator with them.
//
// Thread safety: thread-local. Lifetime: the actor string must outlive the
// call's initiation (the decorator's member does).
#pragma once

#include <string>

namespace asyncmq::core {

// The actor set for the call being initiated on this thread, or null.
const std::string* current_audit_actor();

class AuditActorScope {
 public:
  explicit AuditActorScope(const std::string& actor);
  ~AuditActorScope();  // clears it
  AuditActorScope(const AuditActorScope&) = delete;
  AuditActorScope& operator=(const AuditActorScope&) = delete;
};

}  // namespace asyncmq::core

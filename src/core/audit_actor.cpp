#include "core/audit_actor.hpp"

namespace asyncmq::core {
namespace {
thread_local const std::string* t_actor = nullptr;
}  // namespace

const std::string* current_audit_actor() { return t_actor; }

AuditActorScope::AuditActorScope(const std::string& actor) { t_actor = &actor; }
AuditActorScope::~AuditActorScope() { t_actor = nullptr; }

}  // namespace asyncmq::core

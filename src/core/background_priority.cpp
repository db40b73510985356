#include "core/background_priority.hpp"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>

namespace asyncmq::core {
namespace {

thread_local std::shared_ptr<BackgroundPriority> attached;

// SCHED_OTHER and SCHED_IDLE both take priority 0; pid 0 is the caller.
bool set_policy(pid_t tid, int policy) {
  sched_param p{};
  p.sched_priority = 0;
  return ::sched_setscheduler(tid, policy, &p) == 0;
}

// Tries the round trip on a thread of its own, which exits either way: a
// thread stuck at SCHED_IDLE (the way back refused) is never one of ours.
bool probe() {
  bool ok = false;
  std::thread t([&ok] { ok = set_policy(0, SCHED_IDLE) && set_policy(0, SCHED_OTHER); });
  t.join();
  return ok;
}

}  // namespace

bool BackgroundPriority::available() {
  static const bool ok = probe();
  return ok;
}

void BackgroundPriority::attach() {
  {
    std::lock_guard lock(mu_);
    tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
  }
  attached = shared_from_this();
}

std::shared_ptr<BackgroundPriority> BackgroundPriority::current() { return attached; }

void BackgroundPriority::lower() {
  if (lowered_.load(std::memory_order_acquire) || !available()) return;
  std::lock_guard lock(mu_);
  if (waiters_ == 0 && !lowered_.load(std::memory_order_relaxed) && set_policy(0, SCHED_IDLE))
    lowered_.store(true, std::memory_order_release);
}

void BackgroundPriority::raise() {
  if (!lowered_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(mu_);
  raise_locked();
}

void BackgroundPriority::begin_wait() {
  std::lock_guard lock(mu_);
  ++waiters_;
  raise_locked();
}

void BackgroundPriority::end_wait() {
  std::lock_guard lock(mu_);
  --waiters_;
}

void BackgroundPriority::raise_locked() {
  // available() promised the way back; if it is refused all the same (a
  // limit lowered since), the flag stays and the next caller tries again.
  if (lowered_.load(std::memory_order_relaxed) && set_policy(tid_, SCHED_OTHER))
    lowered_.store(false, std::memory_order_release);
}

}  // namespace asyncmq::core

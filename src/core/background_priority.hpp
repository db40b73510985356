// A thread that does background work at SCHED_IDLE, Linux's lowest CPU
// priority, and that any other thread raises back to normal priority as soon
// as somebody waits for it.
//
// Why: on a two-core machine the audit relay's CPU time (HMAC, JSON, write)
// competed with the SQLite writer and the worker's event loop even though
// the three together used about one core: whenever the relay ran, a waking
// writer or worker found its core busy and waited. A SCHED_IDLE thread
// never delays a normal one (the scheduler treats its core as idle), so the
// relay then only uses time nobody else wants.
//
// The risk of SCHED_IDLE is starvation: on a machine kept busy by normal
// threads, an idle-priority thread gets almost no CPU. So a thread is only
// ever lowered where it can be raised again, and whoever waits for it
// raises it (raise()). Returning from SCHED_IDLE to normal needs
// CAP_SYS_NICE or an RLIMIT_NICE of at least 20 (LimitNICE=20 in a systemd
// unit, `ulimit -e 20` in a shell); without either, available() is false,
// lower() does nothing and the thread simply stays at normal priority, as
// if this class did not exist. available() finds out once per process by
// trying it on a throwaway thread.
//
// Thread safety: lower() on the attached thread only; raise(), lowered()
// and available() from any thread. Lifetime: shared (a thread that attached
// keeps a reference until it exits; see current()).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>

namespace asyncmq::core {

class BackgroundPriority : public std::enable_shared_from_this<BackgroundPriority> {
 public:
  // Whether a thread of this process can go to SCHED_IDLE and come back.
  static bool available();

  // On the thread that does the background work, before lower(): it
  // becomes this object's thread, and current() on it returns this object.
  void attach();
  // This thread to SCHED_IDLE, if available(), nobody waits (begin_wait)
  // and it is not there already. REQUIRES: called on the attached thread.
  void lower();
  // The attached thread back to normal priority, if it was lowered. From
  // any thread; cheap (one atomic load) when it is not lowered.
  void raise();
  // Somebody waits for the thread's work: raise() it, and lower() leaves
  // it at normal priority until every begin_wait has had its end_wait.
  void begin_wait();
  void end_wait();
  bool lowered() const { return lowered_.load(std::memory_order_acquire); }

  // The object the calling thread attached to, or null.
  static std::shared_ptr<BackgroundPriority> current();

 private:
  void raise_locked();  // REQUIRES: mu_ held

  std::mutex mu_;      // orders lower() and raise(): the flag follows the policy
  pid_t tid_ = 0;      // GUARDED_BY(mu_)
  int waiters_ = 0;    // GUARDED_BY(mu_)
  std::atomic<bool> lowered_{false};
};

}  // namespace asyncmq::core

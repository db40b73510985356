// CPU scheduling policies of this process's threads, for the tests of
// threads that lower themselves to SCHED_IDLE (core/background_priority.hpp),
// and a gate that holds a thread inside a callback until it is opened.
#pragma once

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>

namespace asyncmq::testing {

inline pid_t this_thread_id() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

// How many threads of this process run at SCHED_IDLE now.
inline int idle_threads() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task"))
    if (::sched_getscheduler(static_cast<pid_t>(std::stoi(e.path().filename().string()))) == SCHED_IDLE)
      ++n;
  return n;
}

// True once `done()` holds, false if it did not within about ten seconds
// of real time: it waits for other threads, which no fake clock moves.
inline bool eventually(const std::function<bool()>& done) {
  std::mutex mu;
  std::condition_variable never;
  std::unique_lock lock(mu);
  for (int i = 0; i < 10'000; ++i) {
    if (done()) return true;
    never.wait_for(lock, std::chrono::milliseconds(1));
  }
  return done();
}

// Holds whoever calls pass() while closed; open() lets them all go.
class Gate {
 public:
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    held_ = 0;
  }
  void open() {
    {
      std::lock_guard lock(mu_);
      closed_ = false;
    }
    cv_.notify_all();
  }
  void pass() {
    std::unique_lock lock(mu_);
    if (closed_) ++held_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !closed_; });
  }
  // Whether a caller of pass() has been held since the last close().
  bool holds_one() {
    std::lock_guard lock(mu_);
    return held_ > 0;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  int held_ = 0;
};

}  // namespace asyncmq::testing

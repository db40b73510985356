// CPU scheduling policies of this process's threads, for the tests of the
// audit relay's renderer thread, which runs at SCHED_IDLE, and a bounded
// wait for what other threads do.
#pragma once

#include <sched.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>

namespace asyncmq::testing {

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

}  // namespace asyncmq::testing

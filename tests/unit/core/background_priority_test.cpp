// BackgroundPriority: a thread lowers itself to SCHED_IDLE, others raise it,
// and nobody lowers it while somebody waits for it. Needs a process that
// may return from SCHED_IDLE (CAP_SYS_NICE or RLIMIT_NICE >= 20); where it
// may not, the tests check that lower() does nothing instead.
#include "core/background_priority.hpp"
#include "support/thread_policy.hpp"

#include <gtest/gtest.h>

#include <future>
#include <thread>

namespace asyncmq::testing {
namespace {

using core::BackgroundPriority;

// A thread attached to `bg` that runs each posted job, at whatever policy
// it has; the tests read its policy by its id.
class Attached {
 public:
  explicit Attached(std::shared_ptr<BackgroundPriority> bg) : bg_(std::move(bg)) {
    std::promise<pid_t> tid;
    auto f = tid.get_future();
    thread_ = std::thread([this, &tid] {
      bg_->attach();
      tid.set_value(this_thread_id());
      std::unique_lock lock(mu_);
      for (;;) {
        cv_.wait(lock, [&] { return stop_ || job_; });
        if (job_) {
          job_();
          job_ = nullptr;
          cv_.notify_all();
        } else {
          return;
        }
      }
    });
    tid_ = f.get();
  }
  ~Attached() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void run(std::function<void()> job) {
    std::unique_lock lock(mu_);
    job_ = std::move(job);
    cv_.notify_all();
    cv_.wait(lock, [&] { return !job_; });
  }
  int policy() const { return ::sched_getscheduler(tid_); }

 private:
  std::shared_ptr<BackgroundPriority> bg_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool stop_ = false;
  pid_t tid_ = 0;
  std::thread thread_;
};

TEST(BackgroundPriority, LowerIdlesTheAttachedThreadAndRaiseFromAnotherBringsItBack) {
  auto bg = std::make_shared<BackgroundPriority>();
  Attached t(bg);
  std::shared_ptr<BackgroundPriority> seen;
  t.run([&] {
    seen = BackgroundPriority::current();
    bg->lower();
  });
  EXPECT_EQ(seen, bg);
  EXPECT_EQ(BackgroundPriority::current(), nullptr);  // this thread attached to none
  if (!BackgroundPriority::available()) {
    EXPECT_FALSE(bg->lowered());
    EXPECT_EQ(t.policy(), SCHED_OTHER);
    GTEST_SKIP() << "this process may not return from SCHED_IDLE: lower() does nothing";
  }
  EXPECT_TRUE(bg->lowered());
  EXPECT_EQ(t.policy(), SCHED_IDLE);
  bg->raise();  // from this thread
  EXPECT_FALSE(bg->lowered());
  EXPECT_EQ(t.policy(), SCHED_OTHER);
  t.run([&] { bg->lower(); });
  EXPECT_EQ(t.policy(), SCHED_IDLE);
  bg->raise();
}

TEST(BackgroundPriority, NotLoweredWhileSomebodyWaits) {
  if (!BackgroundPriority::available()) GTEST_SKIP() << "this process may not return from SCHED_IDLE";
  auto bg = std::make_shared<BackgroundPriority>();
  Attached t(bg);
  t.run([&] { bg->lower(); });
  ASSERT_EQ(t.policy(), SCHED_IDLE);
  bg->begin_wait();  // raises it
  EXPECT_EQ(t.policy(), SCHED_OTHER);
  bg->begin_wait();
  t.run([&] { bg->lower(); });
  bg->end_wait();
  t.run([&] { bg->lower(); });
  EXPECT_EQ(t.policy(), SCHED_OTHER);  // one waiter is left
  bg->end_wait();
  t.run([&] { bg->lower(); });
  EXPECT_EQ(t.policy(), SCHED_IDLE);
  bg->raise();
}

}  // namespace
}  // namespace asyncmq::testing

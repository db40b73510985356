// Tasks: the handlers a Worker runs, found by the job's task name.
#pragma once

#include <asyncmq/env.hpp>
#include <asyncmq/job.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace asyncmq {

// Where a TaskContext sends progress and log lines: the Worker implements
// it. Calls may come from any thread.
class TaskReporter {
 public:
  virtual ~TaskReporter() = default;
  virtual void progress(std::string json) = 0;
  virtual void log(std::string line) = 0;
};

// A flow child's outcome, as its parent's handler sees it.
struct ChildResult {
  JobId id;
  std::string queue;
  std::string task;
  JobState state = JobState::completed;
  boost::json::value result;  // null unless completed
};

// What a handler sees of its job.
// Thread safety: a TaskContext belongs to one attempt; `cancelled()`,
// `progress()` and `log()` may be called from any thread.
// Lifetime: valid until the handler returns (or its coroutine completes).
class TaskContext {
 public:
  TaskContext(const Job& job, boost::json::value payload, Env& env,
              TaskReporter* reporter = nullptr, std::vector<ChildResult> children = {})
      : job_(job),
        payload_(std::move(payload)),
        env_(env),
        reporter_(reporter),
        children_(std::move(children)) {}

  const Job& job() const { return job_; }
  const boost::json::value& payload() const { return payload_; }
  // 1 for the first attempt.
  int attempt() const { return job_.attempts_made; }
  Env& env() const { return env_; }
  // True once the worker asks the handler to stop: the lease was lost, the
  // worker is shutting down past its deadline, or the attempt timed out.
  // Long handlers should check it between steps.
  // It is also true once someone cancelled the job (`job cancel`); a handler
  // that then fails (throws) ends the job as cancelled instead of retrying.
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  void request_cancel() { cancelled_.store(true, std::memory_order_relaxed); }

  // Reports progress: a number 0-100, or any JSON value (at most 4 KiB of
  // text). Stored with the job (sealed like a log line, Field::progress) and
  // announced by a `progress` event that does not carry the value; the
  // latest value wins. Throws InvalidArgument for a number outside 0-100.
  // A value that cannot be sealed (no primary key, a purged subject) is
  // logged and dropped, never stored in the clear.
  void progress(const boost::json::value& value);
  // Appends a line to the job's log (sealed like the payload; stored before
  // the job's outcome is recorded). Lines over 8 KiB are cut.
  void log(std::string_view line);

  // For a flow parent: its children, in creation order, with their results.
  const std::vector<ChildResult>& children() const { return children_; }

 private:
  const Job& job_;
  boost::json::value payload_;
  Env& env_;
  TaskReporter* reporter_;
  std::vector<ChildResult> children_;
  std::atomic<bool> cancelled_{false};
};

// Thrown by a handler to fail its job for good: no retry, straight to dead.
class UnrecoverableError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using SyncHandler = std::function<boost::json::value(TaskContext&)>;
using AsyncHandler = std::function<boost::asio::awaitable<boost::json::value>(TaskContext&)>;

struct TaskOptions {
  // For plain-function handlers: run on the worker's blocking pool (true), so
  // CPU work and blocking calls never stall the I/O loop; or inline on the
  // I/O loop (false), for handlers that return at once. Coroutine handlers
  // always run on the I/O loop and must not block.
  bool blocking = true;
};

struct Task {
  std::string name;
  SyncHandler sync;    // exactly one of sync / async is set
  AsyncHandler async;
  TaskOptions options;
};

// Task name → handler.
// Thread safety: register everything before handing the registry to a
// Worker; after that it is read-only and safe to share.
class TaskRegistry {
 public:
  // Registers a plain function `boost::json::value(TaskContext&)` or a
  // coroutine `boost::asio::awaitable<boost::json::value>(TaskContext&)`.
  // Throws InvalidArgument for an invalid or duplicate name.
  template <class F>
  TaskRegistry& add(std::string name, F&& handler, TaskOptions options = {}) {
    using R = std::invoke_result_t<F&, TaskContext&>;
    if constexpr (std::is_same_v<R, boost::asio::awaitable<boost::json::value>>) {
      return add_task(Task{std::move(name), {}, AsyncHandler(std::forward<F>(handler)), options});
    } else {
      return add_task(Task{std::move(name), SyncHandler(std::forward<F>(handler)), {}, options});
    }
  }

  const Task* find(std::string_view name) const;
  std::vector<std::string> names() const;
  // Adds every task of `other` (duplicates refused).
  TaskRegistry& merge(const TaskRegistry& other);

 private:
  TaskRegistry& add_task(Task task);
  std::map<std::string, Task, std::less<>> tasks_;
};

}  // namespace asyncmq

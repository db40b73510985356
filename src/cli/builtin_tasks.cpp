// The built-in tasks every `asyncmq worker` runs: echo, sleep, fail, noop.
// They exist for trying the queue out, for smoke tests and for `bench`.
#include <asyncmq/cli.hpp>
#include <asyncmq/error.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <stdexcept>

namespace asyncmq {
namespace {

// Longest accepted sleep: a day. Longer values are surely a mistake.
constexpr std::int64_t kMaxSleepMs = 24LL * 3600 * 1000;
// A sleep wakes at least this often to check for cancellation.
constexpr std::int64_t kSleepSliceMs = 50;

boost::asio::awaitable<boost::json::value> sleep_task(TaskContext& ctx) {
  const auto* obj = ctx.payload().if_object();
  const boost::json::value* ms_v = obj ? obj->if_contains("ms") : nullptr;
  std::int64_t ms = -1;
  if (ms_v && ms_v->is_int64()) ms = ms_v->as_int64();
  if (ms_v && ms_v->is_uint64() && ms_v->as_uint64() <= static_cast<std::uint64_t>(kMaxSleepMs))
    ms = static_cast<std::int64_t>(ms_v->as_uint64());
  if (ms < 0 || ms > kMaxSleepMs) {
    // Retrying cannot fix the payload.
    throw UnrecoverableError("sleep: payload must be {\"ms\": N} with N an integer in [0, 86400000]");
  }
  // A log line and progress, so that `job logs` and `job show` have
  // something to show for the built-in tasks.
  ctx.log("sleeping " + std::to_string(ms) + " ms");
  std::int64_t left = ms;
  while (left > 0) {
    if (ctx.cancelled()) throw std::runtime_error("sleep: cancelled");
    std::int64_t slice = std::min(left, kSleepSliceMs);
    co_await ctx.env().sleep_for(slice);
    left -= slice;
  }
  if (ctx.cancelled()) throw std::runtime_error("sleep: cancelled");
  ctx.progress(100);
  co_return boost::json::value{{"slept_ms", ms}};
}

boost::json::value fail_task(TaskContext& ctx) {
  std::string message = "failed on purpose";
  if (const auto* obj = ctx.payload().if_object()) {
    if (const auto* m = obj->if_contains("message"); m && m->is_string())
      message = std::string(m->as_string());
  }
  throw std::runtime_error(message);
}

boost::asio::awaitable<boost::json::value> noop_task(TaskContext&) { co_return nullptr; }

}  // namespace

TaskRegistry builtin_tasks() {
  TaskRegistry r;
  TaskOptions inline_task;
  inline_task.blocking = false;  // returns at once: run on the I/O loop
  r.add("echo", [](TaskContext& ctx) { return ctx.payload(); }, inline_task);
  r.add("sleep", sleep_task);
  r.add("fail", fail_task, inline_task);
  r.add("noop", noop_task);
  return r;
}

}  // namespace asyncmq

// A fake Env for tests: time stands still until the test moves it.
//
// `sleep_for` parks the coroutine until `advance` (or `advance_to_next`)
// carries the clock past its deadline, so tests of retries, backoff, delays
// and leases run in milliseconds. Randomness is a seeded splitmix64.
//
// Thread safety: every method is safe from any thread.
#pragma once

#include <asyncmq/env.hpp>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace asyncmq::testing {

class FakeEnv final : public Env {
 public:
  explicit FakeEnv(std::int64_t start_ms = 1'700'000'000'000, std::uint64_t seed = 42)
      : now_(start_ms), rng_(seed) {}

  std::int64_t now_ms() override { return now_.load(); }
  std::int64_t monotonic_ns() override { return now_.load() * 1'000'000; }
  boost::asio::awaitable<void> sleep_for(std::int64_t ms) override;
  std::uint64_t random_u64() override;

  // Moves the clock forward and wakes every sleeper whose deadline passed.
  void advance(std::int64_t ms);
  // Jumps to the earliest pending sleep deadline (if any) and wakes it.
  // Returns false if nobody sleeps.
  bool advance_to_next();
  std::optional<std::int64_t> next_deadline();
  std::size_t sleepers();

 private:
  struct Sleeper;
  void wake_due();

  std::atomic<std::int64_t> now_;
  std::mutex mu_;
  std::uint64_t rng_;
  // Weak: a sleeper belongs to its coroutine's frame, which may be destroyed
  // with its io_context before this Env.
  std::vector<std::weak_ptr<Sleeper>> sleepers_;
};

// Runs `io` until `done()` holds, moving `env`'s clock to the next sleeper's
// deadline whenever nothing else is ready. Gives up (returns false) after
// `max_advances` jumps of the clock or `max_idle_rounds` rounds in which
// nothing at all happened. Handlers completed by other threads (a backend's
// writer thread) are waited for a short real time before the clock moves.
bool run_until(boost::asio::io_context& io, FakeEnv& env, const std::function<bool()>& done,
               int max_advances = 100000, int max_idle_rounds = 2000);

}  // namespace asyncmq::testing

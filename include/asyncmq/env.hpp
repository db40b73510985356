// The operating system as asyncmq sees it: the clock, timers and randomness.
//
// Everything in asyncmq that reads the time, waits, or draws a random number
// goes through an Env, so tests substitute a fake one (tests/support/
// fake_env.hpp) and drive retries, backoff, delays and leases by advancing a
// clock instead of sleeping.
//
// Thread safety: every method of every Env may be called from any thread.
// Lifetime: an Env must outlive every Queue, Worker and Backend that uses it.
// `Env::system()` lives for the whole program.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <span>

namespace asyncmq {

class Env {
 public:
  virtual ~Env() = default;

  // Wall-clock time in milliseconds since the Unix epoch. Stored in jobs and
  // compared across processes (leases, delays), so it is the system clock.
  virtual std::int64_t now_ms() = 0;

  // A monotonic clock in nanoseconds, for measuring durations.
  virtual std::int64_t monotonic_ns() = 0;

  // Completes after `ms` milliseconds of this Env's time, on the calling
  // coroutine's executor. Supports asio per-operation cancellation
  // (terminal): a cancelled sleep completes early without throwing, so a
  // caller that wants to stop early just cancels and re-checks its state.
  virtual boost::asio::awaitable<void> sleep_for(std::int64_t ms) = 0;

  // A uniformly distributed 64-bit value. Not for keys: keys come from the
  // security layer's CSPRNG (OpenSSL).
  virtual std::uint64_t random_u64() = 0;

  // The real system: system_clock, steady_clock, asio timers and a
  // per-thread generator seeded from the OS.
  static Env& system();
};

}  // namespace asyncmq

#include <asyncmq/env.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/random.h>

#include <chrono>
#include <random>

namespace asyncmq {
namespace {

class SystemEnv final : public Env {
 public:
  std::int64_t now_ms() override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
  std::int64_t monotonic_ns() override {
    using namespace std::chrono;
    return duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
  }
  boost::asio::awaitable<void> sleep_for(std::int64_t ms) override {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor,
                                    std::chrono::milliseconds(ms));
    // A cancelled wait completes with operation_aborted: not an error here.
    co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
  std::uint64_t random_u64() override {
    thread_local std::mt19937_64 gen = [] {
      std::uint64_t seed[2] = {0, 0};
      if (getrandom(seed, sizeof seed, 0) != sizeof seed) {
        seed[0] = static_cast<std::uint64_t>(
            std::chrono::steady_clock::now().time_since_epoch().count());
      }
      std::seed_seq seq{seed[0], seed[0] >> 32, seed[1], seed[1] >> 32};
      return std::mt19937_64(seq);
    }();
    return gen();
  }
};

}  // namespace

Env& Env::system() {
  static SystemEnv env;
  return env;
}

}  // namespace asyncmq

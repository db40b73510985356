#include "support/fake_env.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>

namespace asyncmq::testing {

struct FakeEnv::Sleeper {
  std::int64_t deadline;
  std::shared_ptr<boost::asio::steady_timer> timer;
};

boost::asio::awaitable<void> FakeEnv::sleep_for(std::int64_t ms) {
  auto ex = co_await boost::asio::this_coro::executor;
  if (ms <= 0) {
    co_await boost::asio::post(ex, boost::asio::use_awaitable);
    co_return;
  }
  auto timer = std::make_shared<boost::asio::steady_timer>(ex, boost::asio::steady_timer::time_point::max());
  auto sleeper = std::make_shared<Sleeper>(Sleeper{now_.load() + ms, timer});
  {
    std::lock_guard lock(mu_);
    sleepers_.push_back(sleeper);
  }
  co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  std::lock_guard lock(mu_);
  std::erase_if(sleepers_, [&](const std::weak_ptr<Sleeper>& w) { return w.lock() == sleeper; });
}

std::uint64_t FakeEnv::random_u64() {
  std::lock_guard lock(mu_);
  std::uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void FakeEnv::wake_due() {
  std::vector<std::shared_ptr<Sleeper>> due;
  {
    std::lock_guard lock(mu_);
    std::int64_t now = now_.load();
    for (auto it = sleepers_.begin(); it != sleepers_.end();) {
      auto s = it->lock();
      if (!s) {
        it = sleepers_.erase(it);
      } else if (s->deadline <= now) {
        due.push_back(std::move(s));
        it = sleepers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& s : due) {
    auto timer = s->timer;
    boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
  }
}

void FakeEnv::advance(std::int64_t ms) {
  now_ += ms;
  wake_due();
}

std::optional<std::int64_t> FakeEnv::next_deadline() {
  std::lock_guard lock(mu_);
  std::optional<std::int64_t> d;
  for (auto& w : sleepers_) {
    if (auto s = w.lock()) d = d ? std::min(*d, s->deadline) : s->deadline;
  }
  return d;
}

bool FakeEnv::advance_to_next() {
  auto d = next_deadline();
  if (!d) return false;
  if (*d > now_.load()) now_.store(*d);
  wake_due();
  return true;
}

std::size_t FakeEnv::sleepers() {
  std::lock_guard lock(mu_);
  return sleepers_.size();
}

bool run_until(boost::asio::io_context& io, FakeEnv& env, const std::function<bool()>& done,
               int max_advances, int max_idle_rounds) {
  int advances = 0, idle = 0;
  while (!done()) {
    if (io.stopped()) io.restart();
    if (io.poll() > 0) {
      idle = 0;
      continue;
    }
    // Nothing ready: give other threads (a backend's writer) a moment.
    if (io.run_one_for(std::chrono::milliseconds(2)) > 0) {
      idle = 0;
      continue;
    }
    if (done()) break;
    if (env.advance_to_next()) {
      if (++advances > max_advances) return false;
      continue;
    }
    if (++idle > max_idle_rounds) return false;
  }
  return true;
}

}  // namespace asyncmq::testing

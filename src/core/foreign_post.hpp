// Posting a completion to an executor from a thread that does not run it
// (a SQLite lane, the audit relay thread), such that the owner of the
// target io_context may destroy it as soon as the completion has run.
//
// Why not a plain post(): Asio's scheduler pushes the handler, unlocks its
// mutex and only then signals its condition variable. The target thread
// can run the handler in between, run() can return (the handler released
// the last work), and the owner destroys the io_context (sync_wait does at
// once) while this thread is still inside pthread_cond_signal on it. glibc
// requires a condition variable's destruction to come after the signal
// calls on it (pthread_cond_destroy.c), and TSan reports the pair:
// pthread_cond_destroy in ~posix_event vs pthread_cond_signal in
// posix_event::maybe_unlock_and_signal_one. So the posted function first
// waits (a few instructions: the rest of post()) until this thread is out
// of post(); after that this thread touches only the shared flag.
//
// The function must not need this thread for anything else. Thread safety:
// call from any thread but the one running `ex`'s context (it would wait
// for itself only if post() ran the function inline, which it never does).
#pragma once

#include <boost/asio/post.hpp>

#include <atomic>
#include <memory>
#include <utility>

namespace asyncmq::core {

template <class Executor, class Fn>
void post_from_foreign_thread(const Executor& ex, Fn fn) {
  auto out_of_post = std::make_shared<std::atomic<bool>>(false);
  boost::asio::post(ex, [fn = std::move(fn), out_of_post]() mutable {
    out_of_post->wait(false, std::memory_order_acquire);
    std::move(fn)();
  });
  out_of_post->store(true, std::memory_order_release);
  out_of_post->notify_one();
}

}  // namespace asyncmq::core

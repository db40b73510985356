// Running an asyncmq awaitable from plain, blocking code.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <exception>
#include <optional>
#include <utility>

namespace asyncmq {

// Runs `op` to completion on a private io_context in the calling thread and
// returns its value or rethrows its exception. For CLIs, tests and
// scripts; a program with an event loop co_awaits instead.
// REQUIRES: not called from inside a coroutine running on an io_context.
template <class T>
T sync_wait(boost::asio::awaitable<T> op) {
  boost::asio::io_context io;
  std::exception_ptr error;
  std::optional<T> value;
  boost::asio::co_spawn(io, std::move(op), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) value.emplace(std::move(v));
  });
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*value);
}

inline void sync_wait(boost::asio::awaitable<void> op) {
  boost::asio::io_context io;
  std::exception_ptr error;
  boost::asio::co_spawn(io, std::move(op), [&](std::exception_ptr e) { error = e; });
  io.run();
  if (error) std::rethrow_exception(error);
}

}  // namespace asyncmq

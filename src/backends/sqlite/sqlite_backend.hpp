// sqlite:///path.db — the embedded default: one durable file, no server.
#pragma once

#include <asyncmq/backend.hpp>

#include <memory>
#include <string>

namespace asyncmq::backends {

struct SqliteOptions {
  std::string path;
  // false: synchronous=NORMAL in WAL mode. A commit is in the WAL file (the
  //        OS page cache) before the call returns: it survives a kill -9 of
  //        any process, not a power loss.
  // true:  synchronous=FULL: the WAL is fsynced at every commit; survives a
  //        power loss too, at the cost of one fsync per commit (batched
  //        commits share it).
  bool sync_full = false;
  // How long a writer waits for another process's write lock.
  int busy_timeout_ms = 5000;
  std::string uri_for_display;  // password-free form for describe()
};

std::shared_ptr<Backend> make_sqlite_backend(const SqliteOptions& options, Env& env);

}  // namespace asyncmq::backends

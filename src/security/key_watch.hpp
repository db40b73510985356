// KeyWatch: reloading a keyring without a restart.
//
// Two triggers, both driven from the owner's event loop, never a thread of
// its own:
//   reload_now()   on SIGHUP (the CLI worker's asio::signal_set calls it);
//   poll()         a cheap stat(2) of the key file, at most once per
//                  `interval_ms` of the Env's time; a changed identity
//                  (device, inode), size, mtime or ctime triggers a reload.
//                  run() calls poll() every interval through Env::sleep_for,
//                  so tests drive it with a FakeEnv and no real waiting.
// A reload that fails (a malformed file, a mode open to others, a missing
// file) keeps the old keys and logs one line naming the file and the
// problem (never key bytes); the same failing file state is not logged
// again on every poll.
//
// Thread safety: poll, reload_now and run belong to one executor (the
// owner's); the Keyring itself is safe for concurrent use by the codec.
// Lifetime: holds the keyring (shared); the Env must outlive it.
#pragma once

#include <asyncmq/env.hpp>
#include <asyncmq/security.hpp>

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace asyncmq::security {

class KeyWatch {
 public:
  // REQUIRES: ring was loaded from a file (Keyring::source_file non-empty).
  KeyWatch(std::shared_ptr<Keyring> ring, Env& env, std::int64_t interval_ms = 1000);

  // Reloads if the file changed and at least interval_ms passed since the
  // last check. Returns true if it reloaded successfully.
  bool poll();
  // Reloads now. Returns whether it succeeded. `why` goes into the log line.
  bool reload_now(std::string_view why);
  // Calls poll() every interval_ms until `stop` is set (then returns at
  // the next tick, or at once if the sleep is cancelled).
  boost::asio::awaitable<void> run(std::shared_ptr<std::atomic<bool>> stop);

  std::uint64_t reloads() const { return reloads_; }
  std::uint64_t failures() const { return failures_; }

 private:
  struct Stamp {
    std::uint64_t dev = 0, ino = 0;
    std::int64_t size = -1, mtime_ns = 0, ctime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  Stamp stamp() const;

  std::shared_ptr<Keyring> ring_;
  Env& env_;
  std::int64_t interval_ms_;
  std::string path_;
  Stamp last_;              // the file state last loaded (or last failed)
  std::int64_t last_check_ms_;
  std::uint64_t reloads_ = 0, failures_ = 0;
};

}  // namespace asyncmq::security

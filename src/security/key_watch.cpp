#include "security/key_watch.hpp"

#include "core/log.hpp"

#include <asyncmq/error.hpp>

#include <sys/stat.h>

namespace asyncmq::security {

KeyWatch::KeyWatch(std::shared_ptr<Keyring> ring, Env& env, std::int64_t interval_ms)
    : ring_(std::move(ring)), env_(env), interval_ms_(interval_ms) {
  if (!ring_) throw InvalidArgument("KeyWatch needs a keyring");
  path_ = ring_->source_file().string();
  if (path_.empty()) throw InvalidArgument("KeyWatch: the keyring was not loaded from a file");
  if (interval_ms_ < 1) interval_ms_ = 1;
  last_ = stamp();
  last_check_ms_ = env_.now_ms();
}

KeyWatch::Stamp KeyWatch::stamp() const {
  Stamp s;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return s;  // missing: size -1
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  return s;
}

bool KeyWatch::poll() {
  const std::int64_t now = env_.now_ms();
  if (now - last_check_ms_ < interval_ms_) return false;
  last_check_ms_ = now;
  Stamp s = stamp();
  if (s == last_) return false;
  last_ = s;  // also on failure: the same broken state is reported once
  return reload_now("key file changed");
}

bool KeyWatch::reload_now(std::string_view why) {
  try {
    ring_->reload();
    ++reloads_;
    last_ = stamp();
    std::string primary = ring_->primary_id();
    core::log(core::LogLevel::info, "keyring",
              "reloaded key file " + path_ + " (" + std::string(why) + "): " +
                  std::to_string(ring_->list().size()) + " keys, primary " +
                  (primary.empty() ? std::string("none") : "'" + primary + "'"));
    return true;
  } catch (const std::exception& e) {
    // KeyFileError and the keyring's own errors name the file, line and
    // problem, never key bytes.
    ++failures_;
    core::log(core::LogLevel::error, "keyring",
              "reload of key file " + path_ + " (" + std::string(why) +
                  ") failed; keeping the keys already loaded: " + e.what());
    return false;
  }
}

boost::asio::awaitable<void> KeyWatch::run(std::shared_ptr<std::atomic<bool>> stop) {
  while (!stop->load()) {
    co_await env_.sleep_for(interval_ms_);
    if (stop->load()) break;
    poll();
  }
}

}  // namespace asyncmq::security

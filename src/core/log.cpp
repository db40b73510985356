#include "core/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace asyncmq::core {
namespace {

LogLevel threshold() {
  static const LogLevel level = [] {
    const char* v = std::getenv("ASYNCMQ_LOG_LEVEL");
    std::string s = v ? v : "warn";
    if (s == "debug") return LogLevel::debug;
    if (s == "info") return LogLevel::info;
    if (s == "error") return LogLevel::error;
    return LogLevel::warn;
  }();
  return level;
}

}  // namespace

void log(LogLevel level, std::string_view component, std::string_view message) {
  if (level < threshold()) return;
  static constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::fprintf(stderr, "asyncmq %s [%.*s] %.*s\n", kNames[static_cast<int>(level)],
               static_cast<int>(component.size()), component.data(),
               static_cast<int>(message.size()), message.data());
}

}  // namespace asyncmq::core

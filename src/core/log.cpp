#include "core/log.hpp"

#include <asyncmq/error.hpp>

#include "core/uri.hpp"

#include <boost/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

namespace asyncmq::core {
namespace {

spdlog::level::level_enum to_spdlog(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return spdlog::level::debug;
    case LogLevel::info: return spdlog::level::info;
    case LogLevel::warn: return spdlog::level::warn;
    case LogLevel::error: return spdlog::level::err;
    case LogLevel::off: return spdlog::level::off;
  }
  return spdlog::level::warn;
}

struct State {
  std::mutex mu;
  std::shared_ptr<spdlog::logger> logger;  // guarded by mu (the pointer)
  LogFilter filter;                        // guarded by mu
  std::atomic<LogLevel> level{LogLevel::warn};
  std::atomic<LogFormat> format{LogFormat::text};
};

std::unique_ptr<spdlog::logger> make_logger(const LogConfig& c) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!c.file.empty()) {
    // Create it private first: spdlog would create it with the umask's mode.
    int fd = ::open(c.file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      throw InvalidArgument("cannot open log file " + c.file + " for appending",
                            errc::invalid_config);
    }
    ::close(fd);
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(c.file, false));
    } catch (const spdlog::spdlog_ex&) {
      throw InvalidArgument("cannot open log file " + c.file + " for appending",
                            errc::invalid_config);
    }
  }
  auto logger = std::make_unique<spdlog::logger>("asyncmq", sinks.begin(), sinks.end());
  // The message is the whole line but its time (level, component and text
  // are put in by log(), already filtered and, for JSON, escaped; spdlog's
  // own level names say "warning" and "err").
  const char* pattern = c.format == LogFormat::json
                            ? "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",%v}"
                            : "%Y-%m-%dT%H:%M:%S.%eZ asyncmq %v";
  logger->set_formatter(std::make_unique<spdlog::pattern_formatter>(
      pattern, spdlog::pattern_time_type::utc, std::string("\n")));
  logger->set_level(to_spdlog(c.level));
  logger->flush_on(spdlog::level::trace);  // every line reaches the file at once
  return logger;
}

LogConfig config_from_env() {
  LogConfig c;
  if (const char* v = std::getenv("ASYNCMQ_LOG_LEVEL"); v && *v) {
    try {
      c.level = parse_log_level(v);
    } catch (const Error&) {
      // A bad value in the environment must not stop a library user's
      // program; the CLI's settings refuse it with a message.
    }
  }
  if (const char* v = std::getenv("ASYNCMQ_LOG_FORMAT"); v && *v) {
    try {
      c.format = parse_log_format(v);
    } catch (const Error&) {
    }
  }
  return c;
}

State& state() {
  static State* s = [] {
    auto* st = new State;  // never destroyed: logging may happen during exit
    LogConfig c = config_from_env();
    st->logger = make_logger(c);
    st->level = c.level;
    st->format = c.format;
    return st;
  }();
  return *s;
}

}  // namespace

LogLevel parse_log_level(std::string_view t) {
  if (t == "debug" || t == "trace") return LogLevel::debug;
  if (t == "info") return LogLevel::info;
  if (t == "warn" || t == "warning") return LogLevel::warn;
  if (t == "error") return LogLevel::error;
  if (t == "off" || t == "none") return LogLevel::off;
  throw InvalidArgument("unknown log level (expected debug, info, warn, error or off)",
                        errc::invalid_config);
}

LogFormat parse_log_format(std::string_view t) {
  if (t == "text") return LogFormat::text;
  if (t == "json") return LogFormat::json;
  throw InvalidArgument("unknown log format (expected text or json)", errc::invalid_config);
}

std::string_view to_string(LogLevel level) {
  static constexpr std::string_view kNames[] = {"debug", "info", "warn", "error", "off"};
  return kNames[static_cast<int>(level)];
}

std::string_view to_string(LogFormat format) {
  return format == LogFormat::json ? "json" : "text";
}

void configure_logging(const LogConfig& config) {
  std::shared_ptr<spdlog::logger> next = make_logger(config);
  State& s = state();
  std::lock_guard lock(s.mu);
  s.logger = std::move(next);
  s.level = config.level;
  s.format = config.format;
}

void set_log_filter(LogFilter filter) {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.filter = std::move(filter);
}

bool log_enabled(LogLevel level) {
  LogLevel threshold = state().level.load();
  return threshold != LogLevel::off && level >= threshold;
}

void log(LogLevel level, std::string_view component, std::string_view message) {
  if (level == LogLevel::off || !log_enabled(level)) return;
  State& s = state();
  std::shared_ptr<spdlog::logger> logger;
  LogFilter filter;
  {
    std::lock_guard lock(s.mu);
    logger = s.logger;
    filter = s.filter;
  }
  std::string comp = filter ? filter(component) : mask_uri(component);
  std::string msg = filter ? filter(message) : mask_uri(message);
  std::string line;
  if (s.format.load() == LogFormat::json) {
    line = "\"level\":\"" + std::string(to_string(level)) + "\",\"component\":" + boost::json::serialize(boost::json::string(comp)) +
           ",\"msg\":" + boost::json::serialize(boost::json::string(msg));
  } else {
    line = std::string(to_string(level)) + " [" + comp + "] " + msg;
  }
  logger->log(to_spdlog(level), spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace asyncmq::core

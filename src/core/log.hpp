// Diagnostics: one line per event, to stderr and optionally a file, through
// spdlog. Text lines look like
//   2026-11-25T14:41:30.123Z asyncmq warn [worker] claim failed: ...
// and JSON lines like
//   {"ts":"2026-11-25T14:41:30.123Z","level":"warn","component":"worker","msg":"..."}
//
// Redaction happens before formatting: every message (and component) passes
// through the filter set by set_log_filter before it reaches spdlog, so no
// sink ever sees the unfiltered text. The security layer installs a filter
// that masks secrets (security/redaction.hpp); until then, URI passwords are
// masked (core::mask_uri). Callers still must not pass payloads.
//
// The level comes from ASYNCMQ_LOG_LEVEL (debug, info, warn, error, off;
// default warn) until configure_logging is called (the CLI does so from its
// settings).
//
// Thread safety: every function is safe concurrently; lines are written
// whole (spdlog's _mt sinks).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace asyncmq::core {

enum class LogLevel { debug, info, warn, error, off };
enum class LogFormat { text, json };

struct LogConfig {
  LogLevel level = LogLevel::warn;
  LogFormat format = LogFormat::text;
  // Also append every line to this file (created 0600 if missing); empty:
  // stderr only.
  std::string file;
};

// Throws InvalidArgument (errc::invalid_config) naming the accepted values.
LogLevel parse_log_level(std::string_view text);
LogFormat parse_log_format(std::string_view text);
std::string_view to_string(LogLevel level);
std::string_view to_string(LogFormat format);

// Replaces the sinks, level and format. Throws InvalidArgument if the file
// cannot be opened.
void configure_logging(const LogConfig& config);

// Filters every message before formatting (redaction). Null: mask URI
// passwords only.
using LogFilter = std::function<std::string(std::string_view)>;
void set_log_filter(LogFilter filter);

bool log_enabled(LogLevel level);
void log(LogLevel level, std::string_view component, std::string_view message);

}  // namespace asyncmq::core

// Minimal diagnostics until the logging layer (spdlog with redaction) lands:
// one line to stderr. Callers pass messages that hold no payloads or secrets.
#pragma once

#include <string_view>

namespace asyncmq::core {

enum class LogLevel { debug, info, warn, error };
void log(LogLevel level, std::string_view component, std::string_view message);

}  // namespace asyncmq::core

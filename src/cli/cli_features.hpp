// Declarations the issue-4 commands share (flows, events, durations, input
// files). Kept apart from cli_common.hpp so that adding to them does not
// rebuild every command.
#pragma once

#include "cli/cli_common.hpp"

#include <asyncmq/job.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace asyncmq::cli {

void add_flow_commands(CLI::App& app, Context& ctx);    // commands_flow.cpp
void add_events_commands(CLI::App& app, Context& ctx);  // commands_events.cpp

// ---- input ----

// The job options that `job add` and `repeat add` share, as typed.
struct JobOptionFlags {
  JobOptions options;
  std::string backoff_kind = "exponential";
  std::string timeout;  // durations, for parse_cli_duration
  std::string ttl;
  // `options` with the durations and backoff kind filled in, validated
  // (InvalidArgument naming the option).
  JobOptions resolve() const;
};
// Registers --priority, --attempts, --backoff, --backoff-delay,
// --backoff-max, --jitter, --timeout, --ttl, --lifo, --subject and --group on
// `cmd`.
void add_job_option_flags(CLI::App* cmd, JobOptionFlags& flags);

// A duration given on the command line: a whole number followed by ms, s,
// m, h or d ("500ms", "30s", "5m", "1h", "2d"), or a bare number of
// milliseconds ("1500"); "0" is zero. At most ten years. Throws
// InvalidArgument naming `what` (the option) for anything else, including a
// negative value.
std::int64_t parse_cli_duration(std::string_view what, std::string_view text);

// Reads a whole file ("-": stdin) of at most `limit` bytes; a larger one is
// refused (errc::payload_too_large) without reading all of it. Throws
// InvalidArgument naming the file as `kind` ("payload file").
std::string read_input_file(std::string_view kind, const std::string& path, std::size_t limit);

}  // namespace asyncmq::cli

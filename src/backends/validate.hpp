// Argument checks every backend applies the same way.
#pragma once

#include <asyncmq/backend.hpp>
#include <asyncmq/error.hpp>

#include <string>
#include <vector>

namespace asyncmq::backends {

inline void validate_limit(const RateLimit& limit) {
  if (limit.max < 0 || limit.max > 1'000'000'000)
    throw InvalidArgument("rate limit max " + std::to_string(limit.max) +
                          " is outside [0, 1000000000]");
  if (limit.interval_ms < 1 || limit.interval_ms > 86'400'000)
    throw InvalidArgument("rate limit interval " + std::to_string(limit.interval_ms) +
                          " ms is outside [1, 86400000]");
}

// rewrite_sealed's log lines are replaced one for one: a rewrite with more
// or fewer new lines than compared ones is a caller's mistake, refused
// before anything is written.
inline void validate_log_rewrites(const std::vector<SealedRewrite>& rewrites) {
  for (const SealedRewrite& w : rewrites)
    if (w.logs.size() != w.expected_logs.size())
      throw InvalidArgument("rewrite_sealed of job " + w.id.str() + ": " +
                            std::to_string(w.logs.size()) + " new log lines for " +
                            std::to_string(w.expected_logs.size()) + " compared ones");
}

// Backend::append_audit_chain's argument checks (before anything is stored).
inline void validate_audit_chain(const std::vector<AuditChainLine>& lines) {
  for (const AuditChainLine& l : lines) {
    if (l.seq < 1)
      throw InvalidArgument("audit table: seq " + std::to_string(l.seq) + " is below 1");
    if (l.text.empty() || l.text.find('\n') != std::string::npos)
      throw InvalidArgument("audit table: the line of seq " + std::to_string(l.seq) +
                            " is empty or holds a newline");
  }
}

// What append_audit_chain throws when `seq` is stored with other text. No
// line text in it: the message may be logged.
inline IntegrityError audit_chain_conflict(std::int64_t seq) {
  return IntegrityError("audit table: seq " + std::to_string(seq) +
                        " is stored already with a different line; the table is append-only "
                        "(is a second chain writing into this store, or was the log replaced?)");
}

}  // namespace asyncmq::backends

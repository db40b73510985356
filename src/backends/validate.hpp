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

}  // namespace asyncmq::backends

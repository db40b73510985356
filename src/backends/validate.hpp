// Argument checks every backend applies the same way.
#pragma once

#include <asyncmq/backend.hpp>
#include <asyncmq/error.hpp>

#include <string>

namespace asyncmq::backends {

inline void validate_limit(const RateLimit& limit) {
  if (limit.max < 0 || limit.max > 1'000'000'000)
    throw InvalidArgument("rate limit max " + std::to_string(limit.max) +
                          " is outside [0, 1000000000]");
  if (limit.interval_ms < 1 || limit.interval_ms > 86'400'000)
    throw InvalidArgument("rate limit interval " + std::to_string(limit.interval_ms) +
                          " ms is outside [1, 86400000]");
}

}  // namespace asyncmq::backends

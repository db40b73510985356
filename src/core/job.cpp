#include <asyncmq/env.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/job.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>

namespace asyncmq {
namespace {

constexpr std::string_view kStateNames[kJobStateCount] = {
    "waiting", "delayed", "active",  "completed",       "failed",
    "dead",    "expired", "cancelled", "waiting-children"};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The generator's state: the last timestamp used and the counter within it.
// One per process; ids are strictly increasing within a process.
struct IdClock {
  std::mutex mu;
  std::int64_t last_ms = 0;
  std::uint32_t counter = 0;
};
IdClock& id_clock() {
  static IdClock clock;
  return clock;
}

}  // namespace

std::string_view to_string(JobState s) {
  auto i = static_cast<std::size_t>(s);
  return i < kJobStateCount ? kStateNames[i] : std::string_view("unknown");
}

JobState parse_job_state(std::string_view name) {
  for (int i = 0; i < kJobStateCount; ++i)
    if (kStateNames[i] == name) return static_cast<JobState>(i);
  if (name == "waiting_children") return JobState::waiting_children;
  std::string valid;
  for (int i = 0; i < kJobStateCount; ++i) valid += (i ? ", " : "") + std::string(kStateNames[i]);
  throw InvalidArgument("unknown job state '" + std::string(name.substr(0, 32)) +
                        "' (expected one of: " + valid + ")");
}

JobId JobId::generate(Env& env) {
  std::int64_t ms = env.now_ms();
  std::uint32_t counter;
  {
    auto& clock = id_clock();
    std::lock_guard lock(clock.mu);
    // Never go backwards (clock steps) and never reuse (ts, counter): when
    // the 12-bit counter is spent within one millisecond, borrow the next one.
    if (ms > clock.last_ms) {
      clock.last_ms = ms;
      clock.counter = 0;
    } else if (++clock.counter > 0xfff) {
      clock.last_ms += 1;
      clock.counter = 0;
    }
    ms = clock.last_ms;
    counter = clock.counter;
  }
  std::uint64_t rnd = env.random_u64();
  std::array<std::uint8_t, 16> b{};
  auto ts = static_cast<std::uint64_t>(ms);
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(ts >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | ((counter >> 8) & 0x0f));
  b[7] = static_cast<std::uint8_t>(counter & 0xff);
  b[8] = static_cast<std::uint8_t>(0x80 | ((rnd >> 56) & 0x3f));
  for (int i = 9; i < 16; ++i) b[i] = static_cast<std::uint8_t>(rnd >> (8 * (15 - i)));
  return JobId(b);
}

std::optional<JobId> JobId::try_parse(std::string_view text) noexcept {
  if (text.size() != 36) return std::nullopt;
  std::array<std::uint8_t, 16> b{};
  std::size_t j = 0;
  for (std::size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    b[j++] = static_cast<std::uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return JobId(b);
}

JobId JobId::parse(std::string_view text) {
  if (auto id = try_parse(text)) return *id;
  throw InvalidArgument("invalid job id: expected 36 characters like "
                        "'0190b2a4-7c1e-7abc-8def-0123456789ab'");
}

std::string JobId::str() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(kHex[bytes_[i] >> 4]);
    s.push_back(kHex[bytes_[i] & 0xf]);
  }
  return s;
}

std::int64_t JobId::timestamp_ms() const {
  std::uint64_t ts = 0;
  for (int i = 0; i < 6; ++i) ts = ts << 8 | bytes_[i];
  return static_cast<std::int64_t>(ts);
}

std::int64_t JobId::order_key() const {
  std::uint64_t k = 0;
  for (int i = 0; i < 8; ++i) k = k << 8 | bytes_[i];
  // Keep it non-negative by clearing the top bit, which is the top of the
  // 48-bit millisecond timestamp and zero until the year 6429. (Shifting
  // right instead would drop the counter's low bit, making two ids of one
  // millisecond tie and LIFO order among them wrong.)
  return static_cast<std::int64_t>(k & 0x7fffffffffffffffULL);
}

bool JobId::is_nil() const {
  return std::all_of(bytes_.begin(), bytes_.end(), [](std::uint8_t v) { return v == 0; });
}

std::int64_t Backoff::delay_for(int retry, Env& env) const {
  if (retry < 1) retry = 1;
  double wait = static_cast<double>(delay_ms);
  if (kind == Kind::exponential) wait *= std::ldexp(1.0, std::min(retry - 1, 62));
  wait = std::min(wait, static_cast<double>(max_delay_ms));
  double j = std::clamp(jitter, 0.0, 1.0);
  if (j > 0) {
    double u = static_cast<double>(env.random_u64() >> 11) * 0x1.0p-53;  // [0,1)
    wait = wait * (1.0 - j * u);
  }
  return static_cast<std::int64_t>(std::max(0.0, wait));
}

}  // namespace asyncmq

std::size_t std::hash<asyncmq::JobId>::operator()(const asyncmq::JobId& id) const noexcept {
  const auto& b = id.bytes();
  std::uint64_t lo = 0;
  for (int i = 8; i < 16; ++i) lo = lo << 8 | b[i];
  std::uint64_t hi = static_cast<std::uint64_t>(id.order_key());
  return static_cast<std::size_t>(lo ^ (hi * 0x9e3779b97f4a7c15ULL));
}

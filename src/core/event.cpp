#include <asyncmq/backend.hpp>
#include <asyncmq/error.hpp>

namespace asyncmq {
namespace {
constexpr std::string_view kEventNames[kEventTypeCount] = {
    "waiting", "delayed",   "active",  "progress",     "completed", "failed",          "dead",
    "expired", "cancelled", "stalled", "deduplicated", "removed",   "waiting-children"};
}  // namespace

std::string_view to_string(EventType t) {
  auto i = static_cast<std::size_t>(t);
  return i < kEventTypeCount ? kEventNames[i] : std::string_view("unknown");
}

EventType parse_event_type(std::string_view name) {
  for (int i = 0; i < kEventTypeCount; ++i)
    if (kEventNames[i] == name) return static_cast<EventType>(i);
  std::string valid;
  for (int i = 0; i < kEventTypeCount; ++i) valid += (i ? ", " : "") + std::string(kEventNames[i]);
  throw InvalidArgument("unknown event type '" + std::string(name.substr(0, 32)) +
                        "' (expected one of: " + valid + ")");
}

}  // namespace asyncmq

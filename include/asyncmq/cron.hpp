// Cron schedules: a cron expression and an IANA time zone, parsed once, then
// asked "when do you next fire after this instant?".
//
// Syntax
//   Five fields              minute hour day-of-month month day-of-week
//   or six fields     second minute hour day-of-month month day-of-week
//   field ranges      second 0-59, minute 0-59, hour 0-23, day-of-month 1-31,
//                     month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT
//                     (0 and 7 are both Sunday; names are case-insensitive
//                     and allowed only in the month and day-of-week fields)
//   each field is a comma-separated list of items, each item one of
//     *        every value of the field
//     a        one value
//     a-b      a through b (a must not be after b)
//     */n      every n-th value from the field's first one (n >= 1)
//     a-b/n    every n-th value from a through b
//     a/n      every n-th value from a through the field's last value
//   In the day-of-week field `*` and `a/n` run through 6 (Saturday); 7 is
//   only ever an explicit value or the end of a range such as 5-7.
//   A step may not exceed the number of values of its field (60, 24, 31, 12, 7).
//   Macros: @yearly and @annually (0 0 1 1 *), @monthly (0 0 1 * *),
//   @weekly (0 0 * * 0), @daily and @midnight (0 0 * * *), @hourly (0 * * * *).
//   A five-field schedule fires at second 0 of its minutes.
//
// Days, as Vixie cron: when both the day-of-month and the day-of-week field
// are restricted (neither begins with `*`), a day matches when EITHER field
// matches it ("0 0 13 * FRI" fires on every 13th and on every Friday);
// otherwise a day must match both. "*/2" begins with `*`, so it counts as
// unrestricted for this rule, exactly as in Vixie cron.
//
// Time zones and daylight saving, as Vixie/ISC cron behaves
// Fields are matched against the local wall-clock time of the schedule's
// zone. A schedule is FIXED-TIME when none of its second (six-field form),
// minute and hour fields begins with `*` ("30 2 * * *", "0 9-17 * * 1-5");
// otherwise it is a WILDCARD schedule ("*/15 * * * *", "0 * * * *",
// "*/10 2 * * *"). Then, at every change of the zone's UTC offset:
//   - Gap (clocks jump forward, local times in [before, after) do not exist):
//     a fixed-time schedule that matches at least one local time of the gap
//     fires ONCE, at the instant of the change (the first instant after the
//     gap, e.g. 03:00 local for a 02:30 job on a US spring-forward day). A
//     wildcard schedule does not fire for the skipped local times.
//   - Overlap (clocks fall back, local times in [after, before) happen twice):
//     a fixed-time schedule fires only during the first pass (its 01:30 job
//     runs at 01:30 EDT, not again at 01:30 EST); a wildcard schedule fires
//     during both passes (an hourly job runs at 01:00 EDT and at 01:00 EST).
// These rules apply to every offset change, whatever its size (Lord Howe
// Island's 30-minute change, or a whole skipped day), unlike Vixie cron,
// which treats a jump of three hours or more as a clock reset.
// The zone rules come from the system tzdata through Howard Hinnant's date/tz
// library, which does not extend a zone's rules past its last listed
// transition (2037 for most zones with Debian's tzdata): after that, zones
// stay on the offset of their last transition (standard time).
//
// Errors: parse() throws asyncmq::InvalidArgument (errc::invalid_argument)
// whose message names the field by number and name and quotes it, e.g.
//   cron: field 2 (hour) '25': value 25 out of range 0-23
// for a wrong field count, out-of-range values, reversed ranges, zero,
// negative or oversized steps, unknown names or macros, empty list items,
// stray characters, an expression that can never fire (such as "0 0 30 2 *":
// it finds no match in a full 400-year Gregorian cycle), and an unknown time
// zone.
//
// Thread safety: a CronSchedule is immutable; every method may be called
// concurrently from any thread.
// Lifetime: copies share the parsed state (one reference count), so a copy is
// cheap and a CronSchedule may outlive the strings it was parsed from.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>

namespace asyncmq {

class CronSchedule {
 public:
  // What next_after returns when the schedule has no fire time before the
  // year 10000.
  static constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

  // Parses `expr` for the IANA zone `time_zone` ("UTC", "Europe/Berlin").
  // Leading and trailing blanks are ignored; fields are separated by spaces
  // or tabs; expressions longer than 256 characters are refused.
  // Errors: InvalidArgument, as described at the top of this file.
  static CronSchedule parse(std::string_view expr, std::string_view time_zone = "UTC");

  // The first instant, in Unix milliseconds, strictly after `unix_ms` at
  // which the schedule fires under the rules above; always a whole second.
  // Instants before the year 1 are treated as the start of the year 1.
  // Returns kNever if there is no such instant before the year 10000.
  // Cost: jumps from field value to field value (bitsets), never minute by
  // minute; a handful of time-zone lookups per daylight-saving change crossed.
  std::int64_t next_after(std::int64_t unix_ms) const;

  // The expression as given to parse() (without surrounding blanks).
  std::string_view expression() const;
  // The zone name as given to parse().
  std::string_view time_zone() const;
  // True for a six-field expression (with seconds).
  bool has_seconds() const;
  // True for a fixed-time schedule (see the daylight-saving rules above).
  bool fixed_time() const;

 private:
  struct Rep;
  explicit CronSchedule(std::shared_ptr<const Rep> rep) : rep_(std::move(rep)) {}
  std::shared_ptr<const Rep> rep_;  // never null
};

}  // namespace asyncmq

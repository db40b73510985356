// Cron schedules: syntax, refusals, known fire times, daylight-saving days,
// and a property test against a brute-force walker.
//
// The walker is deliberately naive and independent of src/core/cron.cpp: it
// knows each field's values from the generator (not from a parser), steps
// through UTC instants one minute (one second for six fields) at a time,
// converts each with date::zoned_time and applies the header's daylight-saving
// rules literally.
#include <asyncmq/cron.hpp>
#include <asyncmq/error.hpp>

#include <date/tz.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace asyncmq::testing {
namespace {

using Seconds = std::chrono::seconds;
using Millis = std::chrono::milliseconds;

std::int64_t utc_ms(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  const date::sys_days day{date::year{y} / mo / d};
  return (std::chrono::duration_cast<Seconds>(day.time_since_epoch()).count() + h * 3600 + mi * 60 + s) * 1000;
}

// The UTC instant of a local wall-clock time (the earlier one if it repeats).
std::int64_t local_ms(const char* zone, int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  const date::local_seconds local{date::local_days{date::year{y} / mo / d}.time_since_epoch() +
                                  Seconds{h * 3600 + mi * 60 + s}};
  const auto sys = date::locate_zone(zone)->to_sys(local, date::choose::earliest);
  return std::chrono::duration_cast<Millis>(sys.time_since_epoch()).count();
}

std::string local_text(const char* zone, std::int64_t ms) {
  if (ms == CronSchedule::kNever) return "never";
  const date::sys_seconds sys{Seconds{ms / 1000}};
  return date::format("%F %T %z", date::zoned_time<Seconds>{zone, sys});
}

// The first `n` fire times after `start_ms`, as local text.
std::vector<std::string> fires(const char* expr, const char* zone, std::int64_t start_ms, int n) {
  const CronSchedule c = CronSchedule::parse(expr, zone);
  std::vector<std::string> out;
  std::int64_t t = start_ms;
  for (int i = 0; i < n; ++i) {
    t = c.next_after(t);
    out.push_back(local_text(zone, t));
    if (t == CronSchedule::kNever) break;
  }
  return out;
}

std::vector<std::string> fires_utc(const char* expr, std::int64_t start_ms, int n) {
  return fires(expr, "UTC", start_ms, n);
}

std::string refusal(std::string_view expr, std::string_view zone = "UTC") {
  try {
    CronSchedule::parse(expr, zone);
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.kind(), errc::invalid_argument);
    return e.what();
  }
  return "<accepted>";
}

#define EXPECT_CONTAINS(haystack, needle)                                        \
  do {                                                                           \
    const std::string h_ = (haystack);                                           \
    EXPECT_NE(h_.find(needle), std::string::npos) << "'" << h_ << "' lacks '" << (needle) << "'"; \
  } while (0)

using V = std::vector<std::string>;

// ------------------------------------------------------------- syntax --

TEST(CronSyntax, EveryMinuteAndStrictlyAfter) {
  const std::int64_t t = utc_ms(2024, 1, 1, 0, 0, 30) + 250;
  EXPECT_EQ(fires_utc("* * * * *", t, 2), (V{"2024-01-01 00:01:00 +0000", "2024-01-01 00:02:00 +0000"}));
  const CronSchedule c = CronSchedule::parse("* * * * *");
  const std::int64_t on_the_minute = utc_ms(2024, 1, 1, 0, 1);
  EXPECT_EQ(c.next_after(on_the_minute), on_the_minute + 60'000);
  EXPECT_EQ(c.next_after(on_the_minute - 1), on_the_minute);
}

TEST(CronSyntax, ValuesRangesStepsAndLists) {
  const std::int64_t t = utc_ms(2024, 1, 1);
  EXPECT_EQ(fires_utc("30 14 * * *", t, 2), (V{"2024-01-01 14:30:00 +0000", "2024-01-02 14:30:00 +0000"}));
  EXPECT_EQ(fires_utc("10-12 3 * * *", t, 4),
            (V{"2024-01-01 03:10:00 +0000", "2024-01-01 03:11:00 +0000", "2024-01-01 03:12:00 +0000",
               "2024-01-02 03:10:00 +0000"}));
  EXPECT_EQ(fires_utc("*/20 * * * *", t, 4),
            (V{"2024-01-01 00:20:00 +0000", "2024-01-01 00:40:00 +0000", "2024-01-01 01:00:00 +0000",
               "2024-01-01 01:20:00 +0000"}));
  EXPECT_EQ(fires_utc("5-50/15 0 * * *", t, 4),
            (V{"2024-01-01 00:05:00 +0000", "2024-01-01 00:20:00 +0000", "2024-01-01 00:35:00 +0000",
               "2024-01-01 00:50:00 +0000"}));
  EXPECT_EQ(fires_utc("50/5 0 * * *", t, 3),
            (V{"2024-01-01 00:50:00 +0000", "2024-01-01 00:55:00 +0000", "2024-01-02 00:50:00 +0000"}));
  EXPECT_EQ(fires_utc("1,5-6,*/30 0 * * *", t, 6),
            (V{"2024-01-01 00:01:00 +0000", "2024-01-01 00:05:00 +0000", "2024-01-01 00:06:00 +0000",
               "2024-01-01 00:30:00 +0000", "2024-01-02 00:00:00 +0000", "2024-01-02 00:01:00 +0000"}));
  EXPECT_EQ(fires_utc("0 0 1 */4 *", t, 3),
            (V{"2024-05-01 00:00:00 +0000", "2024-09-01 00:00:00 +0000", "2025-01-01 00:00:00 +0000"}));
}

TEST(CronSyntax, SixFieldsHaveSeconds) {
  const std::int64_t t = utc_ms(2024, 1, 1, 0, 0, 50);
  EXPECT_EQ(fires_utc("*/15 * * * * *", t, 3),
            (V{"2024-01-01 00:01:00 +0000", "2024-01-01 00:01:15 +0000", "2024-01-01 00:01:30 +0000"}));
  EXPECT_EQ(fires_utc("5 30 14 * * *", t, 1), (V{"2024-01-01 14:30:05 +0000"}));
  EXPECT_TRUE(CronSchedule::parse("0 * * * * *").has_seconds());
  EXPECT_FALSE(CronSchedule::parse("* * * * *").has_seconds());
}

TEST(CronSyntax, MonthAndDayNamesAnyCase) {
  const std::int64_t t = utc_ms(2024, 1, 10);  // a Wednesday
  EXPECT_EQ(fires_utc("0 0 1 jan,Mar-MAY *", t, 3),
            (V{"2024-03-01 00:00:00 +0000", "2024-04-01 00:00:00 +0000", "2024-05-01 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("0 9 * * mon-Fri", t, 3),
            (V{"2024-01-10 09:00:00 +0000", "2024-01-11 09:00:00 +0000", "2024-01-12 09:00:00 +0000"}));
  EXPECT_EQ(fires_utc("0 9 * * SAT,sun", t, 2), (V{"2024-01-13 09:00:00 +0000", "2024-01-14 09:00:00 +0000"}));
  // 7 is Sunday, like 0, including as the end of a range.
  EXPECT_EQ(fires_utc("0 9 * * 7", t, 1), (V{"2024-01-14 09:00:00 +0000"}));
  EXPECT_EQ(fires_utc("0 9 * * 6-7", t, 2), (V{"2024-01-13 09:00:00 +0000", "2024-01-14 09:00:00 +0000"}));
}

TEST(CronSyntax, DayFieldsFollowVixieCron) {
  const std::int64_t t = utc_ms(2024, 9, 1);
  // Both restricted: the 13th OR a Friday.
  EXPECT_EQ(fires_utc("0 0 13 * FRI", t, 3),
            (V{"2024-09-06 00:00:00 +0000", "2024-09-13 00:00:00 +0000", "2024-09-20 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("0 0 12 * FRI", t, 3),
            (V{"2024-09-06 00:00:00 +0000", "2024-09-12 00:00:00 +0000", "2024-09-13 00:00:00 +0000"}));
  // Day-of-month begins with `*`: both must match (odd days that are Mondays).
  EXPECT_EQ(fires_utc("0 0 */2 * MON", t, 3),
            (V{"2024-09-09 00:00:00 +0000", "2024-09-23 00:00:00 +0000", "2024-10-07 00:00:00 +0000"}));
  // Day-of-week begins with `*`: only the day of month counts.
  EXPECT_EQ(fires_utc("0 0 15 * *", t, 1), (V{"2024-09-15 00:00:00 +0000"}));
  // Leap days.
  EXPECT_EQ(fires_utc("0 0 29 2 *", utc_ms(2025, 1, 1), 2),
            (V{"2028-02-29 00:00:00 +0000", "2032-02-29 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("0 0 29 2 *", utc_ms(2096, 3, 1), 1), (V{"2104-02-29 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("0 0 31 * *", utc_ms(2024, 2, 1), 2),
            (V{"2024-03-31 00:00:00 +0000", "2024-05-31 00:00:00 +0000"}));
}

TEST(CronSyntax, Macros) {
  const std::int64_t t = utc_ms(2024, 5, 15, 10, 30);  // a Wednesday
  EXPECT_EQ(fires_utc("@yearly", t, 1), (V{"2025-01-01 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("@annually", t, 1), (V{"2025-01-01 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("@monthly", t, 1), (V{"2024-06-01 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("@weekly", t, 1), (V{"2024-05-19 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("@daily", t, 1), (V{"2024-05-16 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("@midnight", t, 1), (V{"2024-05-16 00:00:00 +0000"}));
  EXPECT_EQ(fires_utc("  @HOURLY ", t, 1), (V{"2024-05-15 11:00:00 +0000"}));
  EXPECT_FALSE(CronSchedule::parse("@hourly").fixed_time());
  EXPECT_TRUE(CronSchedule::parse("@daily").fixed_time());
}

TEST(CronSyntax, AccessorsAndCopies) {
  const CronSchedule c = CronSchedule::parse("  0 9 * * 1-5\t", "Europe/Berlin");
  const CronSchedule copy = c;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(copy.expression(), "0 9 * * 1-5");
  EXPECT_EQ(copy.time_zone(), "Europe/Berlin");
  EXPECT_EQ(copy.next_after(utc_ms(2024, 1, 1)), c.next_after(utc_ms(2024, 1, 1)));
  EXPECT_TRUE(c.fixed_time());
  EXPECT_FALSE(CronSchedule::parse("*/5 9 * * *").fixed_time());
  EXPECT_FALSE(CronSchedule::parse("0 */2 * * *").fixed_time());
  EXPECT_TRUE(CronSchedule::parse("0 0-23/2 * * *").fixed_time());
  EXPECT_FALSE(CronSchedule::parse("*/10 0 9 * * *").fixed_time());
}

TEST(CronSyntax, EdgesOfTheSupportedRange) {
  const CronSchedule c = CronSchedule::parse("0 0 1 1 *");
  EXPECT_EQ(c.next_after(utc_ms(9999, 6, 1)), CronSchedule::kNever);
  EXPECT_EQ(c.next_after(std::numeric_limits<std::int64_t>::max()), CronSchedule::kNever);
  EXPECT_EQ(c.next_after(std::numeric_limits<std::int64_t>::min()), utc_ms(1, 1, 1));
  EXPECT_EQ(c.next_after(-1), utc_ms(1970, 1, 1));
}

// ------------------------------------------------------------ refusals --

TEST(CronRefusal, FieldCountAndEmpty) {
  EXPECT_CONTAINS(refusal(""), "empty");
  EXPECT_CONTAINS(refusal("   "), "empty");
  EXPECT_CONTAINS(refusal("* * * *"), "got 4");
  EXPECT_CONTAINS(refusal("* * * * * * *"), "got 7");
  EXPECT_CONTAINS(refusal(std::string(300, '*')), "at most 256");
  EXPECT_CONTAINS(refusal("@reboot"), "unknown macro '@reboot'");
  EXPECT_CONTAINS(refusal("@daily *"), "unknown macro");
}

// Each malformed expression, and what its refusal must say (the field by
// number and name, the quoted text, the reason).
struct Refusal {
  const char* expression;
  const char* message_part;
};

constexpr Refusal kRefusals[] = {
    // values out of range
    {"0 25 * * *", "cron: field 2 (hour) '25': value 25 out of range 0-23"},
    {"60 * * * *", "field 1 (minute) '60': value 60 out of range 0-59"},
    {"0 0 0 * *", "field 3 (day-of-month) '0': value 0 out of range 1-31"},
    {"0 0 32 * *", "field 3 (day-of-month)"},
    {"0 0 * 13 *", "field 4 (month) '13': value 13 out of range 1-12"},
    {"0 0 * * 8", "field 5 (day-of-week) '8': value 8 out of range 0-7"},
    {"60 0 0 * * *", "field 1 (second) '60'"},
    {"0 60 0 * * *", "field 2 (minute) '60'"},
    {"0 0 1,2,99999999999 * *", "field 3 (day-of-month) '1,2,99999999999': value 999999..."},
    // ranges and steps
    {"30-10 * * * *", "field 1 (minute) '30-10': range '30-10' is reversed"},
    {"0 0 * * FRI-MON", "field 5 (day-of-week)"},
    {"*/0 * * * *", "field 1 (minute) '*/0': step in '*/0' is zero"},
    {"0 */-2 * * *", "field 2 (hour) '*/-2': step in '*/-2' is negative"},
    {"*/61 * * * *", "out of range 1-60"},
    {"0 0 * * */8", "field 5 (day-of-week) '*/8': step in '*/8' out of range 1-7"},
    {"*/ * * * *", "missing step"},
    {"5- * * * *", "field 1 (minute) '5-': missing value"},
    {"-5 * * * *", "field 1 (minute) '-5': unexpected character '-'"},
    {"1-2-3 * * * *", "unexpected character '-'"},
    {"*/2/3 * * * *", "unexpected character '/'"},
    // names, list items and stray characters
    {"0 0 * FOO *", "field 4 (month) 'FOO': unknown month name 'FOO'"},
    {"0 0 * JANUARY *", "unknown month name 'JANUARY'"},
    {"0 0 * * FUNDAY", "field 5 (day-of-week) 'FUNDAY': unknown day-of-week name"},
    {"0 0 MON * *", "field 3 (day-of-month) 'MON': 'MON' is not a number"},
    {"0 0 * JAN FEB", "field 5 (day-of-week) 'FEB': unknown day-of-week name"},
    {"1,,2 * * * *", "field 1 (minute) '1,,2': empty list item"},
    {"0 1, * * *", "field 2 (hour) '1,': empty list item"},
    {"0 ,1 * * *", "field 2 (hour) ',1': empty list item"},
    {"1x * * * *", "field 1 (minute) '1x': unexpected character 'x'"},
    {"0 0 ? * *", "field 3 (day-of-month) '?': unexpected character '?'"},
    {"0 0 * * 1#2", "unexpected character '#'"},
    {"0 0 L * *", "'L' is not a number"},
    {"0 0\x01 * * *", "unexpected character '?'"},  // control characters are not echoed
};

TEST(CronRefusal, EachMalformedFieldIsNamed) {
  for (const Refusal& r : kRefusals) {
    SCOPED_TRACE(r.expression);
    EXPECT_CONTAINS(refusal(r.expression), r.message_part);
  }
}

TEST(CronRefusal, NeverFiring) {
  EXPECT_CONTAINS(refusal("0 0 30 2 *"), "'0 0 30 2 *' can never fire");
  EXPECT_CONTAINS(refusal("0 0 31 4,6,9,11 *"), "can never fire");
  EXPECT_CONTAINS(refusal("0 0 0 31 FEB *"), "can never fire");
  EXPECT_CONTAINS(refusal("0 0 30-31 2 */2"), "can never fire");  // day-of-week begins with *: AND
  // Restricted day-of-week with OR: fires on Sundays in February.
  EXPECT_EQ(fires_utc("0 0 30 2 0", utc_ms(2024, 1, 1), 1), (V{"2024-02-04 00:00:00 +0000"}));
}

TEST(CronRefusal, UnknownTimeZone) {
  EXPECT_CONTAINS(refusal("* * * * *", "Mars/Olympus"), "cron: unknown time zone 'Mars/Olympus'");
  EXPECT_CONTAINS(refusal("* * * * *", ""), "unknown time zone ''");
  EXPECT_CONTAINS(refusal("* * * * *", "../../etc/passwd"), "unknown time zone");
  EXPECT_NO_THROW(CronSchedule::parse("* * * * *", "Etc/GMT+5"));
}

// ---------------------------------------------------- daylight saving --

constexpr const char* kNewYork = "America/New_York";
constexpr const char* kBerlin = "Europe/Berlin";
constexpr const char* kLordHowe = "Australia/Lord_Howe";

TEST(CronDst, NewYorkSpringForward) {  // 2024-03-10 02:00 EST -> 03:00 EDT
  const std::int64_t t = local_ms(kNewYork, 2024, 3, 10, 0, 0);
  EXPECT_EQ(fires("30 2 * * *", kNewYork, t, 2),
            (V{"2024-03-10 03:00:00 -0400", "2024-03-11 02:30:00 -0400"}));
  EXPECT_EQ(fires("0 2 * * *", kNewYork, t, 1), (V{"2024-03-10 03:00:00 -0400"}));
  EXPECT_EQ(fires("0,15,59 2 * * *", kNewYork, t, 2),  // several times in the gap: once
            (V{"2024-03-10 03:00:00 -0400", "2024-03-11 02:00:00 -0400"}));
  EXPECT_EQ(fires("15 3 * * *", kNewYork, t, 1), (V{"2024-03-10 03:15:00 -0400"}));
  EXPECT_EQ(fires("0 30 2 * * *", kNewYork, t, 1), (V{"2024-03-10 03:00:00 -0400"}));
  EXPECT_EQ(fires("30 2 10 3 *", kNewYork, t, 2),  // only that day: still fires once
            (V{"2024-03-10 03:00:00 -0400", "2025-03-10 02:30:00 -0400"}));
  // Wildcard schedules have no minutes in the gap.
  EXPECT_EQ(fires("*/30 * * * *", kNewYork, local_ms(kNewYork, 2024, 3, 10, 1, 0), 3),
            (V{"2024-03-10 01:30:00 -0500", "2024-03-10 03:00:00 -0400", "2024-03-10 03:30:00 -0400"}));
  EXPECT_EQ(fires("0 * * * *", kNewYork, local_ms(kNewYork, 2024, 3, 10, 0, 30), 3),
            (V{"2024-03-10 01:00:00 -0500", "2024-03-10 03:00:00 -0400", "2024-03-10 04:00:00 -0400"}));
  EXPECT_EQ(fires("*/20 2 * * *", kNewYork, t, 1), (V{"2024-03-11 02:00:00 -0400"}));
  // Starting exactly at the change, or just before it.
  const std::int64_t change = utc_ms(2024, 3, 10, 7, 0);
  EXPECT_EQ(CronSchedule::parse("30 2 * * *", kNewYork).next_after(change - 1), change);
  EXPECT_EQ(fires("30 2 * * *", kNewYork, change, 1), (V{"2024-03-11 02:30:00 -0400"}));
}

TEST(CronDst, NewYorkFallBack) {  // 2024-11-03 02:00 EDT -> 01:00 EST
  const std::int64_t t = local_ms(kNewYork, 2024, 11, 3, 0, 0);
  EXPECT_EQ(fires("30 1 * * *", kNewYork, t, 2),
            (V{"2024-11-03 01:30:00 -0400", "2024-11-04 01:30:00 -0500"}));
  EXPECT_EQ(fires("0 * * * *", kNewYork, t, 4),
            (V{"2024-11-03 01:00:00 -0400", "2024-11-03 01:00:00 -0500", "2024-11-03 02:00:00 -0500",
               "2024-11-03 03:00:00 -0500"}));
  EXPECT_EQ(fires("*/30 1 * * *", kNewYork, t, 5),
            (V{"2024-11-03 01:00:00 -0400", "2024-11-03 01:30:00 -0400", "2024-11-03 01:00:00 -0500",
               "2024-11-03 01:30:00 -0500", "2024-11-04 01:00:00 -0500"}));
  // From inside the second pass, a fixed-time 01:30 job waits for tomorrow.
  EXPECT_EQ(fires("30 1 * * *", kNewYork, utc_ms(2024, 11, 3, 6, 10), 1), (V{"2024-11-04 01:30:00 -0500"}));
  // From inside the first pass it fires in the first pass.
  EXPECT_EQ(fires("30 1 * * *", kNewYork, utc_ms(2024, 11, 3, 5, 10), 1), (V{"2024-11-03 01:30:00 -0400"}));
  EXPECT_EQ(fires("0 30 1 * * *", kNewYork, t, 2),
            (V{"2024-11-03 01:30:00 -0400", "2024-11-04 01:30:00 -0500"}));
}

TEST(CronDst, BerlinBothChanges) {
  // 2024-03-31 02:00 CET -> 03:00 CEST.
  const std::int64_t spring = local_ms(kBerlin, 2024, 3, 31, 0, 0);
  EXPECT_EQ(fires("30 2 * * *", kBerlin, spring, 2), (V{"2024-03-31 03:00:00 +0200", "2024-04-01 02:30:00 +0200"}));
  EXPECT_EQ(fires("0 * * * *", kBerlin, spring, 3),
            (V{"2024-03-31 01:00:00 +0100", "2024-03-31 03:00:00 +0200", "2024-03-31 04:00:00 +0200"}));
  EXPECT_EQ(fires("0 9 * * SUN", kBerlin, spring, 1), (V{"2024-03-31 09:00:00 +0200"}));
  // 2024-10-27 03:00 CEST -> 02:00 CET.
  const std::int64_t fall = local_ms(kBerlin, 2024, 10, 27, 0, 0);
  EXPECT_EQ(fires("30 2 * * *", kBerlin, fall, 2), (V{"2024-10-27 02:30:00 +0200", "2024-10-28 02:30:00 +0100"}));
  EXPECT_EQ(fires("*/30 * * * *", kBerlin, local_ms(kBerlin, 2024, 10, 27, 1, 45), 6),
            (V{"2024-10-27 02:00:00 +0200", "2024-10-27 02:30:00 +0200", "2024-10-27 02:00:00 +0100",
               "2024-10-27 02:30:00 +0100", "2024-10-27 03:00:00 +0100", "2024-10-27 03:30:00 +0100"}));
  EXPECT_EQ(fires("0 2-3 * * *", kBerlin, fall, 3),  // fixed-time: first pass only
            (V{"2024-10-27 02:00:00 +0200", "2024-10-27 03:00:00 +0100", "2024-10-28 02:00:00 +0100"}));
}

TEST(CronDst, LordHoweHalfHourChanges) {
  // 2024-10-06 02:00 +1030 -> 02:30 +1100.
  const std::int64_t spring = local_ms(kLordHowe, 2024, 10, 6, 1, 0);
  EXPECT_EQ(fires("15 2 * * *", kLordHowe, spring, 2), (V{"2024-10-06 02:30:00 +1100", "2024-10-07 02:15:00 +1100"}));
  EXPECT_EQ(fires("*/15 * * * *", kLordHowe, local_ms(kLordHowe, 2024, 10, 6, 1, 40), 3),
            (V{"2024-10-06 01:45:00 +1030", "2024-10-06 02:30:00 +1100", "2024-10-06 02:45:00 +1100"}));
  // 2024-04-07 02:00 +1100 -> 01:30 +1030.
  const std::int64_t fall = local_ms(kLordHowe, 2024, 4, 7, 0, 0);
  EXPECT_EQ(fires("45 1 * * *", kLordHowe, fall, 2), (V{"2024-04-07 01:45:00 +1100", "2024-04-08 01:45:00 +1030"}));
  EXPECT_EQ(fires("*/15 1 * * *", kLordHowe, fall, 7),
            (V{"2024-04-07 01:00:00 +1100", "2024-04-07 01:15:00 +1100", "2024-04-07 01:30:00 +1100",
               "2024-04-07 01:45:00 +1100", "2024-04-07 01:30:00 +1030", "2024-04-07 01:45:00 +1030",
               "2024-04-08 01:00:00 +1030"}));
}

// ------------------------------------------------------ property test --

// One field as the generator wrote it, and the values it means.
struct GenField {
  std::string text;
  std::uint64_t values = 0;
};

struct Spec {
  int lo, hi, star_hi;
};
// second, minute, hour, day-of-month, month, day-of-week
constexpr std::array<Spec, 6> kSpecs = {{{0, 59, 59}, {0, 59, 59}, {0, 23, 23}, {1, 31, 31}, {1, 12, 12}, {0, 7, 6}}};
const char* const kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
const char* const kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

class Generator {
 public:
  explicit Generator(std::uint64_t seed) : rng_(seed) {}

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  std::int64_t uniform64(std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_);
  }

  // `hint`: values worth including often (the hours and days around the start).
  GenField field(int index, const std::vector<int>& hint, double star_probability) {
    const Spec s = kSpecs[static_cast<std::size_t>(index)];
    if (chance(star_probability)) return chance(0.8) ? GenField{"*", star_form(index, 1).values} : star_form(index);
    GenField f;
    const int items = chance(0.6) ? 1 : uniform(2, 3);
    for (int i = 0; i < items; ++i) {
      GenField item;
      if (!hint.empty() && chance(0.7)) {
        const int v = hint[static_cast<std::size_t>(uniform(0, static_cast<int>(hint.size()) - 1))];
        item = chance(0.5) ? single(index, v) : range_around(index, v);
      } else {
        switch (uniform(0, 4)) {
          case 0: item = star_form(index); break;
          case 1: item = single(index, uniform(s.lo, s.hi)); break;
          case 2: item = range_around(index, uniform(s.lo, s.star_hi)); break;
          case 3: {  // a/n
            const int a = uniform(s.lo, s.star_hi);
            const int n = uniform(1, s.star_hi - s.lo + 1);
            item.text = name_or_number(index, a) + "/" + std::to_string(n);
            for (int v = a; v <= s.star_hi; v += n) item.values |= bit(index, v);
            break;
          }
          default: item = single(index, uniform(s.lo, s.hi)); break;
        }
      }
      f.text += (i ? "," : "") + item.text;
      f.values |= item.values;
    }
    return f;
  }

 private:
  static std::uint64_t bit(int index, int v) {
    if (index == 5 && v == 7) v = 0;  // Sunday
    return std::uint64_t{1} << v;
  }
  std::string name_or_number(int index, int v) {
    if (index == 4 && chance(0.3)) return cased(kMonthNames[v - 1]);
    if (index == 5 && v <= 6 && chance(0.3)) return cased(kDayNames[v]);
    return std::to_string(v);
  }
  std::string cased(const char* name) {
    std::string out = name;
    for (char& c : out)
      if (chance(0.5)) c = static_cast<char>(c - 'a' + 'A');
    return out;
  }
  GenField star_form(int index, int step = 0) {
    const Spec s = kSpecs[static_cast<std::size_t>(index)];
    GenField f;
    const int n = step > 0 ? step : chance(0.5) ? 1 : uniform(1, s.star_hi - s.lo + 1);
    f.text = n == 1 && chance(0.7) ? "*" : "*/" + std::to_string(n);
    for (int v = s.lo; v <= s.star_hi; v += n) f.values |= bit(index, v);
    return f;
  }
  GenField single(int index, int v) {
    GenField f;
    if (index == 5 && v == 0 && chance(0.3)) v = 7;
    f.text = name_or_number(index, v);
    f.values = bit(index, v);
    return f;
  }
  // a-b or a-b/n with a <= v <= b (v is not always hit by the step).
  GenField range_around(int index, int v) {
    const Spec s = kSpecs[static_cast<std::size_t>(index)];
    const int a = uniform(s.lo, v);
    const int b = uniform(v, s.hi);
    const int n = chance(0.6) ? 1 : uniform(1, s.star_hi - s.lo + 1);
    GenField f;
    f.text = name_or_number(index, a) + "-" + name_or_number(index, b) + (n > 1 ? "/" + std::to_string(n) : "");
    for (int x = a; x <= b; x += n) f.values |= bit(index, x);
    return f;
  }

  std::mt19937_64 rng_;
};

// The brute-force walker's view of a schedule.
struct Truth {
  std::array<GenField, 6> fields;
  bool has_seconds = false;
  std::string expression;

  bool starts_with_star(int index) const { return fields[static_cast<std::size_t>(index)].text[0] == '*'; }
  bool fixed_time() const {
    return !starts_with_star(1) && !starts_with_star(2) && !(has_seconds && starts_with_star(0));
  }
  bool has(int index, unsigned v) const { return (fields[static_cast<std::size_t>(index)].values >> v) & 1; }

  bool matches(date::local_seconds local) const {
    const date::local_days day = date::floor<date::days>(local);
    const date::year_month_day ymd{day};
    const date::hh_mm_ss<Seconds> tod{local - day};
    const unsigned wd = date::weekday{day}.c_encoding();
    const bool dom = has(3, static_cast<unsigned>(ymd.day()));
    const bool dow = has(5, wd);
    const bool day_ok = (!starts_with_star(3) && !starts_with_star(5)) ? (dom || dow) : (dom && dow);
    return day_ok && has(4, static_cast<unsigned>(ymd.month())) && has(2, static_cast<unsigned>(tod.hours().count())) &&
           has(1, static_cast<unsigned>(tod.minutes().count())) && has(0, static_cast<unsigned>(tod.seconds().count()));
  }

  // True when no (month, day) pair the day fields allow exists (then the
  // parser must refuse the expression).
  bool never_fires() const {
    if (!starts_with_star(3) && !starts_with_star(5)) return false;  // either field: some weekday matches
    static constexpr unsigned kLongest[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    for (unsigned m = 1; m <= 12; ++m)
      for (unsigned d = 1; d <= kLongest[m - 1]; ++d)
        if (has(4, m) && has(3, d)) return false;
    return true;
  }
};

// Every fire time in (start, end], stepping through UTC one unit at a time.
std::vector<std::int64_t> walk(const Truth& truth, const date::time_zone* zone, std::int64_t start_ms,
                               std::int64_t end_ms) {
  const std::int64_t step = truth.has_seconds ? 1 : 60;
  const Seconds unit{step};
  std::vector<std::int64_t> out;
  const auto floor_div = [](std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && (a < 0)); };
  std::int64_t t = floor_div(floor_div(start_ms, 1000), step) * step + step;  // the first step > start
  const auto local_of = [&](std::int64_t s) {
    return date::zoned_time<Seconds>{zone, date::sys_seconds{Seconds{s}}}.get_local_time();
  };
  date::local_seconds previous = local_of(t - step);
  for (; t * 1000 <= end_ms; t += step) {
    const date::local_seconds local = local_of(t);
    bool fire = false;
    if (truth.matches(local)) {
      // A fixed-time schedule fires only at the first occurrence of a local time.
      fire = !truth.fixed_time() ||
             zone->to_sys(local, date::choose::earliest) == date::sys_seconds{Seconds{t}};
    }
    if (!fire && truth.fixed_time() && local > previous + unit) {
      // Local times (previous, local) were skipped: a fixed-time match among them fires now.
      for (date::local_seconds g = previous + unit; g < local && !fire; g += unit) fire = truth.matches(g);
    }
    if (fire) out.push_back(t * 1000);
    previous = local;
  }
  return out;
}

std::uint64_t property_seed() {
  if (const char* env = std::getenv("ASYNCMQ_CRON_SEED")) return std::strtoull(env, nullptr, 10);
  return 20261125;
}

// The UTC instants, in [2000, 2037), at which each zone's offset changes.
std::vector<std::int64_t> transitions(const date::time_zone* zone) {
  std::vector<std::int64_t> out;
  date::sys_seconds t{Seconds{utc_ms(2000, 1, 1) / 1000}};
  const date::sys_seconds end{Seconds{utc_ms(2037, 1, 1) / 1000}};
  while (t < end) {
    const date::sys_info info = zone->get_info(t);
    if (info.end >= end) break;
    out.push_back(std::chrono::duration_cast<Millis>(info.end.time_since_epoch()).count());
    t = info.end;
  }
  return out;
}

TEST(CronProperty, MatchesABruteForceWalkerAcrossDaylightSaving) {
  const std::uint64_t seed = property_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with ASYNCMQ_CRON_SEED=" + std::to_string(seed) + ")");
  Generator gen(seed);
  const std::vector<const char*> zones = {kNewYork, kBerlin, kLordHowe, "America/Santiago", "UTC", "Asia/Kolkata"};
  std::vector<std::vector<std::int64_t>> changes;
  for (const char* z : zones) changes.push_back(transitions(date::locate_zone(z)));

  constexpr int kCases = 5000;
  int compared_fires = 0;
  int cases_with_fires = 0;
  int queries = 0;
  int refused_never = 0;
  int dst_cases = 0;
  int dst_cases_with_fires = 0;
  const std::int64_t year_2000 = utc_ms(2000, 1, 1);
  const std::int64_t year_2037 = utc_ms(2036, 12, 1);
  for (int i = 0; i < kCases; ++i) {
    const std::size_t zi = static_cast<std::size_t>(gen.uniform(0, static_cast<int>(zones.size()) - 1));
    const char* zone_name = zones[zi];
    const date::time_zone* zone = date::locate_zone(zone_name);
    const bool six = gen.chance(0.2);
    const std::int64_t horizon = six ? 1'800'000 : 12 * 3'600'000;  // bounds the walker's cost (ASan)
    std::int64_t start = 0;
    std::int64_t focus = 0;  // hours near this instant are favoured
    const bool near_change = !changes[zi].empty() && gen.chance(0.6);
    if (near_change) {
      // Shortly before a transition, so the horizon covers it.
      const auto& c = changes[zi];
      focus = c[static_cast<std::size_t>(gen.uniform(0, static_cast<int>(c.size()) - 1))];
      start = focus - gen.uniform64(0, horizon - 60'000) - gen.uniform64(0, 999);
      ++dst_cases;
    } else {
      start = gen.uniform64(year_2000, year_2037);
      if (gen.chance(0.5)) start -= start % 60'000;  // on a minute, sometimes
      focus = start + gen.uniform64(0, horizon);
    }
    // Hints: the local hours (and minutes) around the focus; the days, months
    // and weekdays the horizon spans.
    std::vector<int> minutes;
    std::vector<int> hours;
    std::vector<int> doms;
    std::vector<int> months;
    std::vector<int> dows;
    const auto local_at = [&](std::int64_t t) {
      return date::zoned_time<Seconds>{zone, date::sys_seconds{Seconds{t / 1000}}}.get_local_time();
    };
    for (std::int64_t t = focus - 7'200'000; t <= focus + 7'200'000; t += 900'000) {
      const auto local = local_at(t);
      const date::hh_mm_ss<Seconds> tod{local - date::floor<date::days>(local)};
      hours.push_back(static_cast<int>(tod.hours().count()));
      if (six) minutes.push_back(static_cast<int>(tod.minutes().count()));
    }
    for (std::int64_t t = start; t <= start + horizon; t += 3'600'000) {
      const date::local_days day = date::floor<date::days>(local_at(t));
      const date::year_month_day ymd{day};
      doms.push_back(static_cast<int>(static_cast<unsigned>(ymd.day())));
      months.push_back(static_cast<int>(static_cast<unsigned>(ymd.month())));
      dows.push_back(static_cast<int>(date::weekday{day}.c_encoding()));
    }
    Truth truth;
    truth.has_seconds = six;
    truth.fields[0] = six ? gen.field(0, {}, 0.3) : GenField{"0", 1};
    truth.fields[1] = gen.field(1, minutes, six ? 0.4 : 0.3);
    truth.fields[2] = gen.field(2, hours, 0.3);
    truth.fields[3] = gen.field(3, doms, 0.6);
    truth.fields[4] = gen.field(4, months, 0.7);
    truth.fields[5] = gen.field(5, dows, 0.6);
    for (int f = six ? 0 : 1; f < 6; ++f)
      truth.expression += (truth.expression.empty() ? "" : " ") + truth.fields[static_cast<std::size_t>(f)].text;

    SCOPED_TRACE("case " + std::to_string(i) + ": '" + truth.expression + "' in " + zone_name + " after " +
                 local_text(zone_name, start) + " (" + std::to_string(start) + " ms)");
    std::optional<CronSchedule> schedule;
    try {
      schedule = CronSchedule::parse(truth.expression, zone_name);
    } catch (const InvalidArgument& e) {
      ASSERT_TRUE(truth.never_fires()) << e.what();
      ++refused_never;
      continue;
    }
    ASSERT_FALSE(truth.never_fires()) << "accepted an expression that can never fire";
    ASSERT_EQ(schedule->fixed_time(), truth.fixed_time());

    const std::vector<std::int64_t> expected = walk(truth, zone, start, start + horizon);
    std::vector<std::int64_t> got;
    for (std::int64_t t = schedule->next_after(start); t <= start + horizon && got.size() <= expected.size();) {
      got.push_back(t);
      const std::int64_t next = schedule->next_after(t);
      ASSERT_GT(next, t);
      t = next;
    }
    if (got != expected) {
      // Show where the two lists part, not thousands of equal times.
      std::size_t k = 0;
      while (k < got.size() && k < expected.size() && got[k] == expected[k]) ++k;
      const auto show = [&](const std::vector<std::int64_t>& v) {
        std::string s;
        for (std::size_t j = k > 2 ? k - 2 : 0; j < v.size() && j < k + 3; ++j) s += " " + local_text(zone_name, v[j]);
        return s.empty() ? std::string(" (nothing)") : s;
      };
      FAIL() << "fire times differ at #" << k << " of " << expected.size() << "\n  engine:" << show(got)
             << "\n  walker:" << show(expected);
    }
    compared_fires += static_cast<int>(expected.size());
    cases_with_fires += expected.empty() ? 0 : 1;
    dst_cases_with_fires += (near_change && !expected.empty()) ? 1 : 0;
    // From arbitrary instants inside the horizon (not only from fire times).
    for (int q = 0; q < 4; ++q) {
      const std::int64_t from = start + gen.uniform64(0, horizon);
      const auto it = std::upper_bound(expected.begin(), expected.end(), from);
      const std::int64_t next = schedule->next_after(from);
      if (it != expected.end())
        ASSERT_EQ(next, *it) << "from " << local_text(zone_name, from);
      else
        ASSERT_GT(next, start + horizon) << "from " << local_text(zone_name, from);
      ++queries;
    }
  }
  std::cout << "[ cron property ] seed " << seed << ": " << kCases << " cases (" << dst_cases
            << " around an offset change, " << dst_cases_with_fires << " of them with fires, " << refused_never << " refused as never firing), " << cases_with_fires
            << " with fires in the horizon, " << compared_fires << " fire times and " << queries
            << " extra queries matched the walker\n";
  EXPECT_GT(cases_with_fires, kCases / 2);  // the generator must produce fires, or the test proves little
}

}  // namespace
}  // namespace asyncmq::testing

// The cron engine: a parser into one bitset per field, and a search that jumps
// from field value to field value.
//
// Design. The search works in "local seconds": seconds since 1970-01-01 00:00
// of the zone's wall clock, with civil dates from Howard Hinnant's
// days_from_civil algorithms (no table, no locale, no allocation). civil_next
// finds the first matching local second at or after a given one: month by
// month through the month bitset, then the first matching day through a
// precomputed 31-bit day mask (one per weekday of the month's first day, so
// the Vixie "either day field" rule costs one OR), then hour, minute and
// second through their bitsets. A year is at most twelve months of work;
// walking minute by minute would be 525,600 steps.
//
// Time zones are handled one UTC-offset period (a date::sys_info) at a time:
// inside a period local = utc + offset exactly, so the answer is the first
// civil match whose local time lies inside the period, translated back. The
// daylight-saving rules of the header are applied only at the edges of a
// period: at its start (gap fire for fixed-time schedules, skipping the
// overlap's second pass for them) and by moving to the next period when the
// match lies beyond its end. Zones with a single period (UTC, fixed offsets)
// skip the zone lookups entirely.
//
// Never-firing expressions are found at parse time by a bounded search: the
// Gregorian calendar, weekdays included, repeats every 400 years, so a
// schedule with no match in [2000, 2400) has no match at all.
#include <asyncmq/cron.hpp>
#include <asyncmq/error.hpp>

#include <date/tz.h>

#include <array>
#include <bit>
#include <chrono>
#include <string>

namespace asyncmq {

namespace {

constexpr std::int64_t kSecondsPerDay = 86400;
constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t kMaxExpressionLength = 256;

// Howard Hinnant's days_from_civil / civil_from_days (public domain).
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct Civil {
  std::int64_t y;
  unsigned m;
  unsigned d;
};

constexpr Civil civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

// 0 = Sunday.
constexpr unsigned weekday_from_days(std::int64_t z) {
  return static_cast<unsigned>(z >= -4 ? (z + 4) % 7 : (z + 5) % 7 + 6);
}

constexpr unsigned days_in_month(std::int64_t y, unsigned m) {
  if (m != 2) return (m == 4 || m == 6 || m == 9 || m == 11) ? 30 : 31;
  const bool leap = (y % 4 == 0) && (y % 100 != 0 || y % 400 == 0);
  return leap ? 29 : 28;
}

constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

constexpr std::int64_t kMinYear = 1;
constexpr std::int64_t kMaxYear = 9999;
constexpr std::int64_t kMinSeconds = days_from_civil(kMinYear, 1, 1) * kSecondsPerDay;
constexpr std::int64_t kEndSeconds = days_from_civil(kMaxYear + 1, 1, 1) * kSecondsPerDay;

// The first set bit at or after `from`, or -1.
inline int next_bit(std::uint64_t bits, int from) {
  if (from >= 64) return -1;
  const std::uint64_t rest = bits & (~std::uint64_t{0} << from);
  return rest ? std::countr_zero(rest) : -1;
}

// ---------------------------------------------------------------- parsing --

enum FieldIndex { kSecond, kMinute, kHour, kDayOfMonth, kMonth, kDayOfWeek };

struct FieldSpec {
  const char* name;
  int lo;
  int hi;       // largest value written
  int star_hi;  // where `*` and `a/n` end (6 for day-of-week: Sunday once)
  const std::array<const char*, 12>* names;  // nullptr: numbers only
  int names_base;
  int name_count;
};

constexpr std::array<const char*, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<const char*, 12> kDayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI",
                                                   "SAT", "",    "",    "",    "",    ""};

const FieldSpec kFields[6] = {
    {"second", 0, 59, 59, nullptr, 0, 0},
    {"minute", 0, 59, 59, nullptr, 0, 0},
    {"hour", 0, 23, 23, nullptr, 0, 0},
    {"day-of-month", 1, 31, 31, nullptr, 0, 0},
    {"month", 1, 12, 12, &kMonthNames, 1, 12},
    {"day-of-week", 0, 7, 6, &kDayNames, 0, 7},
};

// User text quoted for a message: bounded, control characters replaced.
std::string quoted(std::string_view text) {
  std::string out = "'";
  const std::size_t n = std::min<std::size_t>(text.size(), 64);
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (text.size() > n) out += "...";
  return out + "'";
}

[[noreturn]] void refuse(std::string message) { throw InvalidArgument("cron: " + message); }

// Parses one field into a bitset. Refusals name the field by its position in
// the expression as written (`number`) and by name.
class FieldParser {
 public:
  FieldParser(int number, FieldIndex index, std::string_view text)
      : number_(number), spec_(kFields[index]), text_(text) {}

  std::uint64_t parse() {
    std::uint64_t bits = 0;
    std::size_t start = 0;
    while (true) {
      const std::size_t comma = text_.find(',', start);
      const std::string_view item =
          text_.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      if (item.empty()) fail("empty list item");
      bits |= parse_item(item);
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return bits;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    refuse("field " + std::to_string(number_) + " (" + spec_.name + ") " + quoted(text_) + ": " + why);
  }

  std::string range_text() const { return std::to_string(spec_.lo) + "-" + std::to_string(spec_.hi); }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
  static char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

  [[noreturn]] void unexpected(std::string_view item, std::size_t pos) const {
    if (pos >= item.size()) fail("missing value at the end of " + quoted(item));
    fail("unexpected character " + quoted(item.substr(pos, 1)) + " in " + quoted(item));
  }

  // A number or a name at item[pos], checked against the field's range.
  int parse_value(std::string_view item, std::size_t& pos) const {
    if (pos < item.size() && is_digit(item[pos])) {
      std::size_t end = pos;
      while (end < item.size() && is_digit(item[end])) ++end;
      const std::string_view digits = item.substr(pos, end - pos);
      int value = 0;
      for (char c : digits) value = value > 1000 ? value : value * 10 + (c - '0');
      if (value < spec_.lo || value > spec_.hi)
        fail("value " + std::string(digits.size() > 6 ? digits.substr(0, 6) : digits) +
             (digits.size() > 6 ? "..." : "") + " out of range " + range_text());
      pos = end;
      return value;
    }
    if (pos < item.size() && is_alpha(item[pos])) {
      std::size_t end = pos;
      while (end < item.size() && is_alpha(item[end])) ++end;
      const std::string_view word = item.substr(pos, end - pos);
      if (spec_.names == nullptr) fail(quoted(word) + " is not a number (names are allowed only in month and day-of-week)");
      for (int i = 0; i < spec_.name_count; ++i) {
        const char* name = (*spec_.names)[static_cast<std::size_t>(i)];
        if (word.size() == 3 && upper(word[0]) == name[0] && upper(word[1]) == name[1] &&
            upper(word[2]) == name[2]) {
          pos = end;
          return spec_.names_base + i;
        }
      }
      fail("unknown " + std::string(spec_.name) + " name " + quoted(word));
    }
    unexpected(item, pos);
  }

  std::uint64_t parse_item(std::string_view item) const {
    std::size_t pos = 0;
    int lo = 0;
    int hi = 0;
    bool single = false;
    if (item[0] == '*') {
      lo = spec_.lo;
      hi = spec_.star_hi;
      pos = 1;
    } else {
      lo = parse_value(item, pos);
      if (pos < item.size() && item[pos] == '-') {
        ++pos;
        hi = parse_value(item, pos);
        if (lo > hi)
          fail("range " + quoted(item) + " is reversed: its start " + std::to_string(lo) + " is after its end " +
               std::to_string(hi));
      } else {
        hi = lo;
        single = true;
      }
    }
    int step = 1;
    if (pos < item.size() && item[pos] == '/') {
      ++pos;
      step = parse_step(item, pos);
      if (single) hi = std::max(lo, spec_.star_hi);  // a/n runs to the field's end
    }
    if (pos != item.size()) unexpected(item, pos);
    std::uint64_t bits = 0;
    for (int v = lo; v <= hi; v += step) bits |= std::uint64_t{1} << v;
    return bits;
  }

  int parse_step(std::string_view item, std::size_t& pos) const {
    const int span = spec_.star_hi - spec_.lo + 1;
    if (pos < item.size() && item[pos] == '-') fail("step in " + quoted(item) + " is negative; it must be at least 1");
    if (pos >= item.size() || !is_digit(item[pos])) {
      if (pos >= item.size()) fail("missing step after '/' in " + quoted(item));
      unexpected(item, pos);
    }
    int step = 0;
    while (pos < item.size() && is_digit(item[pos])) {
      step = step > 1000 ? step : step * 10 + (item[pos] - '0');
      ++pos;
    }
    if (step == 0) fail("step in " + quoted(item) + " is zero; it must be at least 1");
    if (step > span) fail("step in " + quoted(item) + " out of range 1-" + std::to_string(span));
    return step;
  }

  int number_;
  const FieldSpec& spec_;
  std::string_view text_;
};

std::string_view trim(std::string_view s) {
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view expand_macro(std::string_view expr) {
  struct Macro {
    std::string_view name;
    std::string_view fields;
  };
  static constexpr Macro kMacros[] = {
      {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"},
  };
  for (const Macro& m : kMacros) {
    if (m.name.size() != expr.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < expr.size() && same; ++i)
      same = (expr[i] >= 'A' && expr[i] <= 'Z' ? static_cast<char>(expr[i] - 'A' + 'a') : expr[i]) == m.name[i];
    if (same) return m.fields;
  }
  refuse("unknown macro " + quoted(expr) +
         " (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)");
}

}  // namespace

// ------------------------------------------------------------------ Rep --

struct CronSchedule::Rep {
  std::uint64_t seconds = 0;  // bits 0-59
  std::uint64_t minutes = 0;  // bits 0-59
  std::uint64_t hours = 0;    // bits 0-23
  std::uint64_t months = 0;   // bits 1-12
  // Days (bits 1-31) that match the day fields in a month whose first day
  // falls on weekday w (0 = Sunday), before removing days past the month's end.
  std::array<std::uint32_t, 7> day_mask_by_first_weekday{};
  bool has_seconds = false;
  bool fixed_time = false;
  // Time zone: either one offset forever (UTC, Etc/GMT+5), or a zone to ask.
  const date::time_zone* zone = nullptr;
  bool constant_offset = false;
  std::int64_t offset = 0;
  std::string expression;
  std::string zone_name;

  // The first local second >= `local` that matches every field, or kNone if
  // there is none before the year `max_year` + 1.
  std::int64_t civil_next(std::int64_t local, std::int64_t max_year) const;
  std::int64_t zoned_next(std::int64_t s) const;
};

std::int64_t CronSchedule::Rep::civil_next(std::int64_t local, std::int64_t max_year) const {
  const std::int64_t day_number = floor_div(local, kSecondsPerDay);
  const std::int64_t second_of_day = local - day_number * kSecondsPerDay;
  const Civil civil = civil_from_days(day_number);
  std::int64_t y = civil.y;
  int m = static_cast<int>(civil.m);
  int d = static_cast<int>(civil.d);
  int hh = static_cast<int>(second_of_day / 3600);
  int mm = static_cast<int>(second_of_day / 60 % 60);
  int ss = static_cast<int>(second_of_day % 60);
  while (y <= max_year) {
    const int month = next_bit(months, m);
    if (month < 0) {  // no month left this year
      ++y;
      m = 1;
      d = 1;
      hh = mm = ss = 0;
      continue;
    }
    if (month != m) {
      m = month;
      d = 1;
      hh = mm = ss = 0;
    }
    const unsigned dim = days_in_month(y, static_cast<unsigned>(m));
    const std::int64_t first = days_from_civil(y, static_cast<unsigned>(m), 1);
    std::uint32_t days = day_mask_by_first_weekday[weekday_from_days(first)];
    days &= (std::uint32_t{2} << dim) - 2;  // days 1..dim
    days &= ~std::uint32_t{0} << d;         // from day d on
    while (days != 0) {
      const int day = std::countr_zero(days);
      if (day != d) {
        d = day;
        hh = mm = ss = 0;
      }
      // The first matching time of day at or after hh:mm:ss.
      for (int h = next_bit(hours, hh); h >= 0; h = next_bit(hours, h + 1)) {
        for (int mi = next_bit(minutes, h == hh ? mm : 0); mi >= 0; mi = next_bit(minutes, mi + 1)) {
          const int s = next_bit(seconds, (h == hh && mi == mm) ? ss : 0);
          if (s >= 0) return (first + d - 1) * kSecondsPerDay + h * 3600 + mi * 60 + s;
        }
      }
      days &= days - 1;
      hh = mm = ss = 0;
    }
    // Next month.
    ++m;
    d = 1;
    hh = mm = ss = 0;
    if (m > 12) {
      m = 1;
      ++y;
    }
  }
  return kNone;
}

// `s` is the first UTC second that may fire. See the file comment: one offset
// period at a time, the daylight-saving rules applied at period edges.
std::int64_t CronSchedule::Rep::zoned_next(std::int64_t s) const {
  using date::sys_seconds;
  using std::chrono::seconds;
  const auto offset_before = [this](std::int64_t begin) {
    return zone->get_info(sys_seconds{seconds{begin - 1}}).offset.count();
  };
  while (s < kEndSeconds) {
    const date::sys_info info = zone->get_info(sys_seconds{seconds{s}});
    const std::int64_t off = info.offset.count();
    const std::int64_t begin = info.begin.time_since_epoch().count();
    std::int64_t end = info.end.time_since_epoch().count();
    if (end <= s || end > kEndSeconds) end = kEndSeconds;  // defensive: always move forward
    std::int64_t from = s + off;  // first local second to consider
    if (fixed_time && begin > kMinSeconds && s - begin < 7 * kSecondsPerDay) {
      const std::int64_t prev = offset_before(begin);
      if (prev < off && s == begin) {
        // Gap [begin + prev, begin + off): a fixed-time match inside it fires
        // once, now.
        const std::int64_t m = civil_next(begin + prev, kMaxYear);
        if (m < begin + off) return begin;
      }
      // Overlap [begin + off, begin + prev): its first pass is over.
      if (prev > off) from = std::max(from, begin + prev);
    }
    const std::int64_t m = civil_next(from, kMaxYear);
    if (m == kNone) return kNone;
    if (m - off < end) return m - off;
    s = end;
  }
  return kNone;
}

// ---------------------------------------------------------- CronSchedule --

CronSchedule CronSchedule::parse(std::string_view expr_in, std::string_view time_zone) {
  const std::string_view expr = trim(expr_in);
  if (expr.empty()) refuse("the expression is empty");
  if (expr.size() > kMaxExpressionLength)
    refuse("the expression is " + std::to_string(expr.size()) + " characters long; at most " +
           std::to_string(kMaxExpressionLength) + " are allowed");

  auto rep = std::make_shared<Rep>();
  rep->expression = std::string(expr);
  rep->zone_name = std::string(time_zone);

  const std::string_view fields_text = expr[0] == '@' ? expand_macro(expr) : expr;
  std::array<std::string_view, 7> fields{};
  std::size_t count = 0;
  for (std::size_t pos = 0; pos < fields_text.size();) {
    const std::size_t start = fields_text.find_first_not_of(" \t", pos);
    if (start == std::string_view::npos) break;
    std::size_t end = fields_text.find_first_of(" \t", start);
    if (end == std::string_view::npos) end = fields_text.size();
    if (count < fields.size()) fields[count] = fields_text.substr(start, end - start);
    ++count;
    pos = end;
  }
  if (count != 5 && count != 6)
    refuse("expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with a leading second), got " +
           std::to_string(count) + " in " + quoted(expr));
  rep->has_seconds = count == 6;
  const int first_index = rep->has_seconds ? kSecond : kMinute;

  std::array<std::uint64_t, 6> bits{};
  std::array<bool, 6> starred{};
  bits[kSecond] = 1;  // five fields: second 0
  for (std::size_t i = 0; i < count; ++i) {
    const auto index = static_cast<FieldIndex>(first_index + static_cast<int>(i));
    bits[index] = FieldParser(static_cast<int>(i) + 1, index, fields[i]).parse();
    starred[index] = fields[i][0] == '*';
  }
  // 7 is Sunday too.
  if (bits[kDayOfWeek] & (std::uint64_t{1} << 7)) bits[kDayOfWeek] = (bits[kDayOfWeek] | 1) & 0x7f;

  rep->seconds = bits[kSecond];
  rep->minutes = bits[kMinute];
  rep->hours = bits[kHour];
  rep->months = bits[kMonth];
  rep->fixed_time = !starred[kMinute] && !starred[kHour] && !(rep->has_seconds && starred[kSecond]);
  // Vixie cron: both day fields restricted -> either matches; else both must.
  const bool either = !starred[kDayOfMonth] && !starred[kDayOfWeek];
  const auto dom = static_cast<std::uint32_t>(bits[kDayOfMonth]);
  for (unsigned w = 0; w < 7; ++w) {
    std::uint32_t by_weekday = 0;
    for (unsigned d = 1; d <= 31; ++d)
      if (bits[kDayOfWeek] & (std::uint64_t{1} << ((w + d - 1) % 7))) by_weekday |= std::uint32_t{1} << d;
    rep->day_mask_by_first_weekday[w] = either ? (dom | by_weekday) : (dom & by_weekday);
  }

  // Bounded search: the calendar repeats every 400 years.
  const std::int64_t y2000 = days_from_civil(2000, 1, 1) * kSecondsPerDay;
  if (rep->civil_next(y2000, 2399) == kNone)
    refuse("expression " + quoted(expr) +
           " can never fire: no date in a whole 400-year calendar cycle matches its day-of-month, month and "
           "day-of-week fields");

  try {
    rep->zone = date::locate_zone(time_zone);
  } catch (const std::exception&) {
    refuse("unknown time zone " + quoted(time_zone));
  }
  const date::sys_info first = rep->zone->get_info(date::sys_seconds{std::chrono::seconds{kMinSeconds}});
  if (first.end.time_since_epoch().count() >= kEndSeconds) {
    rep->constant_offset = true;
    rep->offset = first.offset.count();
  }
  return CronSchedule(std::move(rep));
}

std::int64_t CronSchedule::next_after(std::int64_t unix_ms) const {
  const Rep& r = *rep_;
  std::int64_t s = floor_div(unix_ms, 1000) + 1;  // whole seconds, strictly after
  if (s < kMinSeconds) s = kMinSeconds;
  if (s >= kEndSeconds) return kNever;
  std::int64_t fire = kNone;
  if (r.constant_offset) {
    const std::int64_t m = r.civil_next(s + r.offset, kMaxYear);
    if (m != kNone) fire = m - r.offset;
  } else {
    fire = r.zoned_next(s);
  }
  if (fire == kNone || fire >= kEndSeconds) return kNever;
  return fire * 1000;
}

std::string_view CronSchedule::expression() const { return rep_->expression; }
std::string_view CronSchedule::time_zone() const { return rep_->zone_name; }
bool CronSchedule::has_seconds() const { return rep_->has_seconds; }
bool CronSchedule::fixed_time() const { return rep_->fixed_time; }

}  // namespace asyncmq

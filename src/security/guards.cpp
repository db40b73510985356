#include "security/guards.hpp"

#include "security/policy_internal.hpp"  // glob_match, shared with the access policy

#include <asyncmq/security.hpp>

#include <cctype>
#include <cstdint>
#include <string>

namespace asyncmq {
namespace security {
namespace {

inline bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
inline bool is_sep(char c) noexcept { return c == ' ' || c == '-'; }
// ASCII only, inline: std::isalnum and std::isxdigit went through the PLT
// and the locale once per character scanned, ~5 % of a sealed memory://
// bench's samples.
inline bool is_xdigit(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline bool is_alnum(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Luhn over the digits of t[b, e), skipping separators.
bool luhn_span(std::string_view t, std::size_t b, std::size_t e) noexcept {
  int sum = 0;
  bool dbl = false;
  for (std::size_t i = e; i > b; --i) {
    char c = t[i - 1];
    if (!is_digit(c)) continue;
    int d = c - '0';
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 == 0;
}

// Whether a Luhn candidate of `digits` digits starting with `prefix` (its
// first four digits) is shaped like a payment card number: an issuer
// range that exists and a length that range uses (ISO/IEC 7812 issuer
// identification numbers, as the card schemes publish them). Without this,
// one 13-digit millisecond timestamp in ten (they start with 1) would be
// taken for a card.
bool plausible_pan(const char* prefix, std::size_t digits) noexcept {
  int two = (prefix[0] - '0') * 10 + (prefix[1] - '0');
  int four = two * 100 + (prefix[2] - '0') * 10 + (prefix[3] - '0');
  switch (prefix[0]) {
    case '4':  // Visa
      return digits == 13 || digits == 16 || digits == 19;
    case '5':  // Mastercard 51-55, Maestro 50 and 56-58
      return digits >= 16;
    case '2':  // Mastercard 2221-2720, Mir 2200-2204
      return digits >= 16 && ((four >= 2221 && four <= 2720) || (four >= 2200 && four <= 2204));
    case '3':
      if (two == 34 || two == 37) return digits == 15;  // American Express
      if (two == 35) return digits >= 16;               // JCB
      if (two == 30 || two == 36 || two == 38 || two == 39) return digits >= 14;  // Diners
      return false;
    case '6':  // Discover, UnionPay, Maestro, RuPay
      return digits >= 16;
    default:  // 0, 1 (airlines), 7, 8, 9: not payment cards
      return false;
  }
}

// 8-4-4-4-12 hex digits with dashes: job ids and other UUIDs, whose
// all-digit groups would otherwise now and then pass for a card number.
bool is_uuid(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_xdigit(s[i])) return false;
  }
  return true;
}

// Calls f(begin, end) for each card number in t; stops early when f returns
// true. Returns whether it stopped early.
template <class F>
bool for_each_card(std::string_view t, F&& f) {
  const std::size_t n = t.size();
  auto group_end = [&](std::size_t p) {
    while (p < n && is_digit(t[p])) ++p;
    return p;
  };
  auto next_group = [&](std::size_t q) -> std::size_t {  // 0: none
    return (q + 1 < n && is_sep(t[q]) && is_digit(t[q + 1])) ? q + 1 : 0;
  };
  // No card without 13 digits: most texts are done in this one pass.
  std::size_t digits_in_text = 0;
  for (char c : t) digits_in_text += is_digit(c);
  if (digits_in_text < 13) return false;
  auto alnum = [&](std::size_t p) { return is_alnum(t[p]); };
  std::size_t i = 0;
  while (i < n) {
    if (!is_xdigit(t[i])) {  // neither a digit nor a UUID starts here
      ++i;
      continue;
    }
    if (i + 36 <= n && (i == 0 || !alnum(i - 1)) && is_uuid(t.substr(i, 36)) &&
        (i + 36 == n || !alnum(i + 36))) {
      i += 36;  // a job id or other UUID: hex groups, not a card
      continue;
    }
    if (!is_digit(t[i])) {
      ++i;
      continue;
    }
    std::size_t g = i;  // the first group of the windows tried
    for (;;) {
      std::size_t digits = 0, p = g, found_end = 0;
      char prefix[4] = {'0', '0', '0', '0'};  // the window's first four digits
      for (;;) {
        std::size_t q = group_end(p);
        for (std::size_t k = p; k < q && digits + (k - p) < 4; ++k) prefix[digits + (k - p)] = t[k];
        digits += q - p;
        if (digits > 19) break;
        if (digits >= 13 && (g == 0 || !alnum(g - 1)) && (q == n || !alnum(q)) &&
            plausible_pan(prefix, digits) && luhn_span(t, g, q)) {
          found_end = q;
          break;
        }
        p = next_group(q);
        if (p == 0) break;
      }
      std::size_t from = found_end ? found_end : group_end(g);
      if (found_end && f(g, found_end)) return true;
      std::size_t next = next_group(from);
      if (next == 0) {
        i = from;
        break;
      }
      g = next;
    }
  }
  return false;
}

}  // namespace

bool luhn_valid(std::string_view digits) noexcept {
  for (char c : digits)
    if (!is_digit(c)) return false;
  return !digits.empty() && luhn_span(digits, 0, digits.size());
}

std::vector<std::pair<std::size_t, std::size_t>> find_card_numbers(std::string_view text) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for_each_card(text, [&](std::size_t b, std::size_t e) {
    out.emplace_back(b, e);
    return false;
  });
  return out;
}

bool contains_card_number(std::string_view text) noexcept {
  return for_each_card(text, [](std::size_t, std::size_t) { return true; });
}

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of "\uXXXX" at raw[i] (the backslash), or -1.
long u_escape(std::string_view raw, std::size_t i) noexcept {
  if (i + 6 > raw.size() || raw[i] != '\\' || raw[i + 1] != 'u') return -1;
  long v = 0;
  for (std::size_t k = i + 2; k < i + 6; ++k) {
    int h = hex_value(raw[k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

void put_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

std::string decode_json_string(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size();) {
    char c = raw[i];
    if (c != '\\' || i + 1 >= raw.size()) {
      out += c;
      ++i;
      continue;
    }
    char e = raw[i + 1];
    switch (e) {
      case 'b': out += '\b'; i += 2; continue;
      case 'f': out += '\f'; i += 2; continue;
      case 'n': out += '\n'; i += 2; continue;
      case 'r': out += '\r'; i += 2; continue;
      case 't': out += '\t'; i += 2; continue;
      case '"': case '\\': case '/': out += e; i += 2; continue;
      default: break;
    }
    long u = u_escape(raw, i);
    if (u < 0) {
      out += c;
      ++i;
      continue;
    }
    i += 6;
    unsigned long cp = static_cast<unsigned long>(u);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      long lo = u_escape(raw, i);
      if (lo >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (static_cast<unsigned long>(lo) - 0xDC00);
        i += 6;
      } else {
        cp = 0xFFFD;
      }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      cp = 0xFFFD;
    }
    put_utf8(out, cp);
  }
  return out;
}

namespace {

// ---- the single-pass JSON checker ----------------------------------------

class Scanner {
 public:
  Scanner(const GuardLimits& limits, std::string_view queue, std::string_view text)
      : lim_(limits), queue_(queue), t_(text), n_(text.size()) {}

  void run() {
    if (lim_.max_payload_bytes != 0 && n_ > lim_.max_payload_bytes) {
      refuse("max_payload_bytes", "$",
             "is " + std::to_string(n_) + " bytes, over the limit of " +
                 std::to_string(lim_.max_payload_bytes));
    }
    ws();
    value();
    for (;;) {
      ws();
      if (stack_.empty()) break;
      Frame& top = stack_.back();
      if (pos_ >= n_) malformed();
      char c = t_[pos_];
      if (c == ',') {
        ++pos_;
        ws();
        if (top.object) {
          member();
        } else {
          ++top.index;
        }
        value();
      } else if (c == (top.object ? '}' : ']')) {
        ++pos_;
        stack_.pop_back();
      } else {
        malformed();
      }
    }
    if (pos_ != n_) malformed();
  }

 private:
  struct Frame {
    bool object;
    std::size_t index = 0;       // arrays: the current element
    std::size_t keys = 0;        // objects: members so far
    std::string_view key;        // objects: the current key, raw (escapes kept)
    bool key_escaped = false;
  };
  static Frame make_frame(bool object) {
    Frame f;
    f.object = object;
    return f;
  }

  // Parses one value at pos_; a container is opened (pushed) and its first
  // member or element parsed, the rest is run()'s loop.
  void value() {
    for (;;) {
      if (pos_ >= n_) malformed();
      char c = t_[pos_];
      if (c == '{' || c == '[') {
        if (lim_.max_depth != 0 && stack_.size() + 1 > lim_.max_depth) {
          refuse("max_depth", path(), "nests deeper than " + std::to_string(lim_.max_depth) +
                                          " levels");
        }
        ++pos_;
        stack_.push_back(make_frame(c == '{'));
        ws();
        if (pos_ < n_ && t_[pos_] == (c == '{' ? '}' : ']')) {
          ++pos_;
          stack_.pop_back();
          return;
        }
        if (c == '{') member();
        continue;  // the first element or member value
      }
      if (c == '"') {
        std::size_t b = pos_;
        bool escaped = string();
        check_text(t_.substr(b + 1, pos_ - b - 2), escaped, false);
        return;
      }
      if (c == '-' || is_digit(c)) {
        number();
        return;
      }
      if (literal("true") || literal("false") || literal("null")) return;
      malformed();
    }
  }

  // A member's key and colon; leaves pos_ at its value.
  void member() {
    Frame& top = stack_.back();
    if (pos_ >= n_ || t_[pos_] != '"') malformed();
    std::size_t b = pos_;
    bool escaped = string();
    ++top.keys;
    ++total_keys_;
    top.key = {};  // the path of the object itself, for the checks below
    if (lim_.max_keys_per_object != 0 && top.keys > lim_.max_keys_per_object) {
      refuse("max_keys_per_object", path(),
             "has more than " + std::to_string(lim_.max_keys_per_object) + " members");
    }
    if (lim_.max_keys_total != 0 && total_keys_ > lim_.max_keys_total) {
      refuse("max_keys_total", path(),
             "brings the payload over " + std::to_string(lim_.max_keys_total) + " members");
    }
    check_text(t_.substr(b + 1, pos_ - b - 2), escaped, true);
    top.key = t_.substr(b + 1, pos_ - b - 2);
    top.key_escaped = escaped;
    ws();
    if (pos_ >= n_ || t_[pos_] != ':') malformed();
    ++pos_;
    ws();
  }

  // Skips a string at pos_ (on the opening quote); returns whether it holds
  // escapes. Leaves pos_ after the closing quote.
  bool string() {
    ++pos_;
    bool escaped = false;
    while (pos_ < n_) {
      unsigned char c = static_cast<unsigned char>(t_[pos_]);
      if (c == '"') {
        ++pos_;
        return escaped;
      }
      if (c < 0x20) malformed();
      if (c == '\\') {
        escaped = true;
        if (pos_ + 1 >= n_) malformed();
        char e = t_[pos_ + 1];
        if (e == 'u') {
          if (pos_ + 6 > n_) malformed();
          for (std::size_t k = pos_ + 2; k < pos_ + 6; ++k)
            if (!std::isxdigit(static_cast<unsigned char>(t_[k]))) malformed();
          pos_ += 6;
          continue;
        }
        if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) malformed();
        pos_ += 2;
        continue;
      }
      ++pos_;
    }
    malformed();
  }

  void number() {
    std::size_t b = pos_;
    if (t_[pos_] == '-') ++pos_;
    if (pos_ >= n_ || !is_digit(t_[pos_])) malformed();
    if (t_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < n_ && is_digit(t_[pos_])) ++pos_;
    }
    if (pos_ < n_ && t_[pos_] == '.') {
      ++pos_;
      if (pos_ >= n_ || !is_digit(t_[pos_])) malformed();
      while (pos_ < n_ && is_digit(t_[pos_])) ++pos_;
    }
    if (pos_ < n_ && (t_[pos_] == 'e' || t_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < n_ && (t_[pos_] == '+' || t_[pos_] == '-')) ++pos_;
      if (pos_ >= n_ || !is_digit(t_[pos_])) malformed();
      while (pos_ < n_ && is_digit(t_[pos_])) ++pos_;
    }
    // A sign is not a separator, so "-4111..." still holds the PAN.
    check_text(t_.substr(b, pos_ - b), false, false);
  }

  bool literal(std::string_view word) {
    if (t_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  void ws() {
    while (pos_ < n_ && (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r'))
      ++pos_;
  }

  void check_text(std::string_view raw, bool escaped, bool is_key) {
    if (lim_.allow_pan) return;
    bool hit;
    if (escaped) {
      // "\u0034111..." must not slip past: check the decoded text.
      hit = contains_card_number(decode_json_string(raw));
    } else {
      hit = contains_card_number(raw);
    }
    if (!hit) return;
    refuse("card_number", path(),
           std::string(is_key ? "has a member name that holds" : "holds") +
               " a card number (PAN), which this queue does not allow; see guard option allow_pan");
  }

  // "$" then ".name" or "['odd name']" per object level and "[i]" per array
  // level. Keys longer than 64 characters or with characters other than
  // [A-Za-z0-9_-] and printable ASCII are shown as <member N>.
  std::string path() const {
    std::string p = "$";
    for (const Frame& f : stack_) {
      if (!f.object) {
        p += "[" + std::to_string(f.index) + "]";
        continue;
      }
      if (f.key.data() == nullptr) break;  // the object itself (no member yet)
      std::string key = f.key_escaped ? decode_json_string(f.key) : std::string(f.key);
      bool ident = !key.empty() && key.size() <= 64;
      bool printable = key.size() <= 64;
      for (char c : key) {
        unsigned char u = static_cast<unsigned char>(c);
        if (!(std::isalnum(u) || c == '_' || c == '-')) ident = false;
        if (u < 0x20 || u >= 0x7f || c == '\'' || c == '\\') printable = false;
      }
      if (ident) {
        p += "." + key;
      } else if (printable) {
        p += "['" + key + "']";
      } else {
        p += "[<member " + std::to_string(f.keys) + ">]";
      }
    }
    return p;
  }

  [[noreturn]] void malformed() {
    refuse("json", "$", "is not valid JSON (at byte " + std::to_string(pos_) + ")");
  }

  [[noreturn]] void refuse(const char* rule, std::string where, const std::string& what) {
    // No ':' or '=' after the rule or the path: redaction would take the
    // next word for the value of a field named like them ("card_number").
    std::string msg = "payload for queue '" + std::string(queue_.substr(0, 128)) +
                      "' refused by guard " + rule + " at " + where + " (" +
                      (where == "$" ? "the payload " : "the value ") + what + ")";
    throw GuardRefused(rule, std::move(where), msg);
  }

  const GuardLimits& lim_;
  std::string_view queue_;
  std::string_view t_;
  std::size_t n_;
  std::size_t pos_ = 0;
  std::size_t total_keys_ = 0;
  std::vector<Frame> stack_;
};

std::size_t literal_count(std::string_view pattern) {
  std::size_t n = 0;
  for (char c : pattern)
    if (c != '*' && c != '?') ++n;
  return n;
}

class GuardedCodec final : public Codec {
 public:
  GuardedCodec(std::shared_ptr<Codec> inner, GuardOptions options)
      : inner_(std::move(inner)), options_(std::move(options)) {}

  std::string encode(const CodecContext& ctx, std::string_view plain) override {
    if (ctx.field == Field::payload) {
      check_payload(options_.limits_for(ctx.queue), ctx.queue, plain);
    } else if (ctx.field == Field::error || ctx.field == Field::log) {
      // Both are free text a handler wrote (an exception's message, a log
      // line), shown by job show/job logs: a secret in them is masked before
      // it is sealed, so no reader with the key ever sees it.
      return inner_->encode(ctx, redact_text(plain));
    }
    return inner_->encode(ctx, plain);
  }
  std::string decode(const CodecContext& ctx, std::string_view stored) override {
    return inner_->decode(ctx, stored);
  }
  std::string encode_subject(std::string_view subject) override {
    return inner_->encode_subject(subject);
  }

 private:
  std::shared_ptr<Codec> inner_;
  const GuardOptions options_;
};

}  // namespace

}  // namespace security

const GuardLimits& GuardOptions::limits_for(std::string_view queue) const {
  const GuardRule* best = nullptr;
  std::size_t best_literals = 0;
  for (const GuardRule& r : rules) {
    if (!security::glob_match(r.queue_pattern, queue)) continue;
    std::size_t lit = security::literal_count(r.queue_pattern);
    if (!best || lit > best_literals) {
      best = &r;
      best_literals = lit;
    }
  }
  return best ? best->limits : defaults;
}

void check_payload(const GuardLimits& limits, std::string_view queue, std::string_view json) {
  security::Scanner(limits, queue, json).run();
}

std::shared_ptr<Codec> make_guarded_codec(std::shared_ptr<Codec> inner, GuardOptions options) {
  if (!inner) throw InvalidArgument("make_guarded_codec needs an inner codec");
  return std::make_shared<security::GuardedCodec>(std::move(inner), std::move(options));
}

}  // namespace asyncmq

#include "security/redaction.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/settings.hpp>

#include "core/log.hpp"
#include "core/uri.hpp"
#include "security/guards.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace asyncmq {
namespace security {
namespace {

bool is_name_char(char c) noexcept {
  unsigned char u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || c == '-' || c == '.';
}

char lower(char c) noexcept { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string normalise(std::string_view name) {
  std::string s(name);
  for (char& c : s) c = c == '-' ? '_' : lower(c);
  return s;
}

bool starts_with_ci(std::string_view text, std::size_t at, std::string_view word) {
  if (at + word.size() > text.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i)
    if (lower(text[at + i]) != word[i]) return false;
  return true;
}

// 1. PEM private key blocks.
std::string mask_pem(std::string_view t) {
  std::string out;
  std::size_t i = 0;
  for (;;) {
    std::size_t b = t.find("-----BEGIN ", i);
    if (b == std::string_view::npos) break;
    std::size_t head_end = t.find("-----", b + 11);
    if (head_end == std::string_view::npos) break;
    std::string_view label = t.substr(b + 11, head_end - b - 11);
    if (label.find("PRIVATE KEY") == std::string_view::npos) {
      out.append(t.substr(i, head_end + 5 - i));
      i = head_end + 5;
      continue;
    }
    out.append(t.substr(i, head_end + 5 - i));
    out += ' ';
    out += kMask;
    std::size_t e = t.find("-----END ", head_end + 5);
    if (e == std::string_view::npos) return out;  // unterminated: mask the rest
    out += ' ';
    i = e;
  }
  out.append(t.substr(std::min(i, t.size())));
  return out;
}

// 2. URI passwords, every occurrence.
std::string mask_uris(std::string_view t) {
  if (t.find("://") == std::string_view::npos) return std::string(t);
  std::string out;
  std::size_t i = 0;
  while (i < t.size()) {
    std::size_t sep = t.find("://", i);
    if (sep == std::string_view::npos) break;
    std::size_t b = sep;
    while (b > i && (std::isalnum(static_cast<unsigned char>(t[b - 1])) || t[b - 1] == '+' ||
                     t[b - 1] == '.' || t[b - 1] == '-'))
      --b;
    std::size_t e = sep + 3;
    while (e < t.size() && !std::isspace(static_cast<unsigned char>(t[e])) && t[e] != '"' &&
           t[e] != '\'' && t[e] != '>' && t[e] != '<' && t[e] != '\\')
      ++e;
    out.append(t.substr(i, b - i));
    out += core::mask_uri(t.substr(b, e - b));
    i = e;
  }
  out.append(t.substr(std::min(i, t.size())));
  return out;
}

bool is_token_char(char c) noexcept {
  unsigned char u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' ||
         c == '/' || c == '=';
}

// 4. "Bearer <token>" / "Basic <token>" anywhere (case-insensitive).
std::string mask_bearer(std::string_view t) {
  std::string out;
  std::size_t i = 0, copied = 0;
  while (i < t.size()) {
    bool word_start = i == 0 || !std::isalnum(static_cast<unsigned char>(t[i - 1]));
    std::size_t len = 0;
    if (word_start && starts_with_ci(t, i, "bearer ")) len = 7;
    if (word_start && starts_with_ci(t, i, "basic ")) len = 6;
    if (len == 0) {
      ++i;
      continue;
    }
    std::size_t b = i + len;
    while (b < t.size() && t[b] == ' ') ++b;
    std::size_t e = b;
    while (e < t.size() && is_token_char(t[e])) ++e;
    if (e - b >= 8) {
      out.append(t.substr(copied, b - copied));
      out += kMask;
      copied = e;
    }
    i = std::max(e, i + 1);
  }
  out.append(t.substr(copied));
  return out;
}

bool is_b64url(char c) noexcept {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

// 5. JWTs: eyJ<b64url>.<b64url>.<b64url>
std::string mask_jwts(std::string_view t) {
  std::string out;
  std::size_t i = 0, copied = 0;
  while ((i = t.find("eyJ", i)) != std::string_view::npos) {
    std::size_t e = i;
    int dots = 0;
    while (e < t.size() && (is_b64url(t[e]) || (t[e] == '.' && dots < 2))) {
      if (t[e] == '.') ++dots;
      ++e;
    }
    if (dots == 2 && e - i >= 20) {
      out.append(t.substr(copied, i - copied));
      out += kMask;
      copied = e;
    }
    i = std::max(e, i + 3);
  }
  out.append(t.substr(copied));
  return out;
}

// 6. Card numbers.
std::string mask_cards(std::string_view t) {
  auto spans = find_card_numbers(t);
  if (spans.empty()) return std::string(t);
  std::string out;
  std::size_t copied = 0;
  for (auto [b, e] : spans) {
    out.append(t.substr(copied, b - copied));
    // A bare JSON number ({"n":4111...} or [4111...]) becomes a JSON string,
    // so that redacted JSON output still parses.
    std::size_t p = b, q = e;
    while (p > 0 && t[p - 1] == ' ') --p;
    while (q < t.size() && t[q] == ' ') ++q;
    bool bare_json = p > 0 && (t[p - 1] == ':' || t[p - 1] == '[') && q < t.size() &&
                     (t[q] == ',' || t[q] == ']' || t[q] == '}');
    if (bare_json) {
      out += '"';
      out += kMask;
      out += '"';
    } else {
      out += kMask;
    }
    copied = e;
  }
  out.append(t.substr(copied));
  return out;
}

std::mutex g_mu;
std::shared_ptr<const Redactor> g_current;  // guarded by g_mu
bool g_log_installed = false;              // guarded by g_mu

}  // namespace

Redactor::Redactor(const RedactionOptions& options) {
  for (const auto& f : options.fields) {
    if (f.empty()) continue;
    fields_.push_back(normalise(f));
  }
  for (std::size_t i = 0; i < options.patterns.size(); ++i) {
    const std::string& p = options.patterns[i];
    if (p.rfind("literal:", 0) == 0) {
      if (p.size() > 8) literals_.push_back(p.substr(8));
      continue;
    }
    try {
      regexes_.emplace_back(p, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      throw InvalidArgument("redaction pattern #" + std::to_string(i + 1) +
                                " is not a valid regular expression (" + e.what() + ")",
                            errc::invalid_config);
    }
  }
}

bool Redactor::sensitive_field(std::string_view name) const {
  if (name.empty() || name.size() > 256) return false;
  std::string n = normalise(name);
  for (const std::string& f : fields_) {
    if (n.size() < f.size()) continue;
    std::size_t at = n.size() - f.size();
    if (n.compare(at, f.size(), f) != 0) continue;
    if (at == 0 || f.size() >= 5) return true;
    char before = name[at - 1];
    if (before == '_' || before == '-' || before == '.') return true;
    if (std::islower(static_cast<unsigned char>(before)) &&
        std::isupper(static_cast<unsigned char>(name[at])))
      return true;
  }
  return false;
}

// 3. Values of sensitive fields.
std::string Redactor::mask_fields(std::string_view t) const {
  std::string out;
  std::size_t i = 0, copied = 0;
  const std::size_t n = t.size();
  while (i < n) {
    if (!is_name_char(t[i]) || (i > 0 && is_name_char(t[i - 1]))) {
      ++i;
      continue;
    }
    std::size_t e = i;
    while (e < n && is_name_char(t[e])) ++e;
    std::string_view name = t.substr(i, e - i);
    i = e;
    if (!sensitive_field(name)) continue;
    std::size_t p = e;
    bool json_name = false;  // "name": a bare value is masked as a JSON string
    if (p + 1 < n && t[p] == '\\' && t[p + 1] == '"') {
      p += 2;  // \"name\": inside JSON text
    } else if (p < n && (t[p] == '"' || t[p] == '\'')) {
      json_name = t[p] == '"';
      ++p;
    }
    bool quoted = p != e;
    while (p < n && t[p] == ' ') ++p;
    if (p >= n || (t[p] != ':' && t[p] != '=')) continue;
    // An unquoted name glued to ':' and a word ("apikey:k1f2", "mtls:cn")
    // is a namespace or a principal id, not a field; "name: v", "name=v"
    // and "\"name\":v" are fields.
    if (t[p] == ':' && !quoted && p == e && p + 1 < n && t[p + 1] != ' ' && t[p + 1] != '"' &&
        t[p + 1] != '\'')
      continue;
    ++p;
    while (p < n && t[p] == ' ') ++p;
    if (p >= n) continue;
    std::size_t vb, ve;
    if (p + 1 < n && t[p] == '\\' && t[p + 1] == '"') {  // \"value\"
      vb = p + 2;
      ve = t.find("\\\"", vb);
      if (ve == std::string_view::npos) ve = n;
    } else if (t[p] == '"' || t[p] == '\'') {
      char q = t[p];
      vb = p + 1;
      ve = vb;
      while (ve < n && t[ve] != q) ve += (t[ve] == '\\' && ve + 1 < n) ? 2 : 1;
      ve = std::min(ve, n);
    } else if (t[p] == '{' || t[p] == '[') {
      // A JSON object or array ("guards.allow_pan": {...} in `config show
      // --json`): masking its first character would break the JSON; its
      // members are scanned on their own as the walk goes on.
      continue;
    } else {
      vb = p;
      ve = vb;
      while (ve < n && !std::isspace(static_cast<unsigned char>(t[ve])) &&
             std::string_view(",;&)]}\"'").find(t[ve]) == std::string_view::npos)
        ++ve;
      // "Authorization: Bearer X": the scheme word, then the credential.
      std::string_view word = t.substr(vb, ve - vb);
      if ((starts_with_ci(word, 0, "bearer") && word.size() == 6) ||
          (starts_with_ci(word, 0, "basic") && word.size() == 5)) {
        std::size_t c = ve;
        while (c < n && t[c] == ' ') ++c;
        std::size_t ce = c;
        while (ce < n && is_token_char(t[ce])) ++ce;
        if (ce > c) {
          vb = c;
          ve = ce;
        }
      }
    }
    if (ve <= vb) continue;
    out.append(t.substr(copied, vb - copied));
    bool quote = json_name && vb > 0 && t[vb - 1] != '"' && t[vb - 1] != '\'';
    if (quote) out += '"';
    out += kMask;
    if (quote) out += '"';
    copied = ve;
    i = ve;
  }
  out.append(t.substr(std::min(copied, n)));
  return out;
}

std::string Redactor::redact(std::string_view text) const {
  std::string s = mask_pem(text);
  s = mask_uris(s);
  s = mask_fields(s);
  s = mask_bearer(s);
  s = mask_jwts(s);
  s = mask_cards(s);
  for (const std::string& lit : literals_) {
    std::size_t at = 0;
    while ((at = s.find(lit, at)) != std::string::npos) {
      s.replace(at, lit.size(), kMask);
      at += kMask.size();
    }
  }
  if (!regexes_.empty() && s.size() <= kMaxRegexInput) {
    for (const std::regex& re : regexes_) s = std::regex_replace(s, re, std::string(kMask));
  }
  return s;
}

void Redactor::redact_json(boost::json::value& v) const {
  switch (v.kind()) {
    case boost::json::kind::object:
      for (auto& member : v.get_object()) {
        if (sensitive_field(member.key())) {
          member.value() = std::string(kMask);
        } else {
          redact_json(member.value());
        }
      }
      break;
    case boost::json::kind::array:
      for (auto& e : v.get_array()) redact_json(e);
      break;
    case boost::json::kind::string: {
      std::string_view s = v.get_string();
      std::string r = redact(s);
      if (r != s) v = r;
      break;
    }
    case boost::json::kind::int64:
    case boost::json::kind::uint64: {
      std::string digits = boost::json::serialize(v);
      if (contains_card_number(digits)) v = std::string(kMask);
      break;
    }
    default:
      break;
  }
}

std::shared_ptr<const Redactor> current_redactor() {
  std::lock_guard lock(g_mu);
  if (!g_current) g_current = std::make_shared<const Redactor>(RedactionOptions{});
  return g_current;
}

void install_log_redaction() {
  {
    std::lock_guard lock(g_mu);
    if (g_log_installed) return;
    g_log_installed = true;
  }
  core::set_log_filter([](std::string_view line) { return redact_text(line); });
}

}  // namespace security

std::vector<std::string> default_redacted_fields() {
  return {"password",      "passwd",        "pwd",          "passphrase",   "secret",
          "client_secret", "token",         "access_token", "refresh_token", "api_key",
          "apikey",        "authorization", "auth",         "cookie",       "session_id",
          "sessionid",     "credential",    "credentials",  "card",         "card_number",
          "cardnumber",    "pan",           "cvv",          "cvc",          "pin",
          "ssn",           "iban",          "account_number", "private_key", "privatekey",
          "secret_key",    "signing_key",   "encryption_key", "otp"};
}

RedactionOptions Settings::redaction() const {
  RedactionOptions o;
  o.fields.insert(o.fields.end(), redact_fields.begin(), redact_fields.end());
  o.patterns = redact_patterns;
  return o;
}

void configure_redaction(const RedactionOptions& options) {
  auto next = std::make_shared<const security::Redactor>(options);
  {
    std::lock_guard lock(security::g_mu);
    security::g_current = std::move(next);
  }
  security::install_log_redaction();
}

std::string redact_text(std::string_view text) {
  return security::current_redactor()->redact(text);
}

}  // namespace asyncmq

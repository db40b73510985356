// Redaction: masking secrets in text before it leaves the process.
//
// What is masked (each by "****"), in this order:
//   1. PEM private key blocks ("-----BEGIN ... PRIVATE KEY-----" to the
//      matching END line).
//   2. URI passwords: scheme://user:PASSWORD@host (core::mask_uri), every
//      occurrence, not only the first.
//   3. Values of sensitive fields: a field name (see sensitive_field) then
//      optional closing quote, optional spaces, ':' or '=', optional spaces,
//      then the value: a quoted string ("...", '...', or \"...\" inside an
//      escaped JSON text) or a bare token up to a space or one of ,;&)]}.
//      A JSON object or array as the value is left whole (text stays
//      JSON); the fields inside it are masked by these same rules.
//      `Authorization: Bearer X` masks X too. An unquoted name glued to a
//      colon and a word ("apikey:k1f2", a principal id; "host:port") is not
//      taken for a field: write "name: value" or "name=value".
//   4. Bearer and Basic credentials ("Bearer <token>"), anywhere.
//   5. JWTs (three base64url parts starting "eyJ").
//   6. Card numbers (security/guards.hpp rules: 13..19 digits, Luhn-valid).
//   7. Configured patterns: literals, then regular expressions.
//
// Why hand-written scanners and not std::regex for the built-in rules:
// libstdc++'s regex recurses per character and overflows the stack on long
// inputs; a log line or an error message can be long. Configured patterns
// do use std::regex (the operator chose them), and are applied only to text
// up to kMaxRegexInput bytes; longer text gets the built-in rules only
// and every configured literal.
//
// Thread safety: a Redactor is immutable after construction and safe to use
// concurrently. The process-wide rules (current_redactor) are swapped
// atomically under a mutex.
#pragma once

#include <asyncmq/security.hpp>

#include <boost/json/value.hpp>

#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace asyncmq::security {

inline constexpr std::string_view kMask = "****";
inline constexpr std::size_t kMaxRegexInput = 64 * 1024;

class Redactor {
 public:
  // Throws InvalidArgument (errc::invalid_config) naming a malformed pattern
  // by its index, never its text.
  explicit Redactor(const RedactionOptions& options);

  std::string redact(std::string_view text) const;

  // For JSON shown to people (CLI output): members whose name is sensitive
  // get the value "****" whatever it was; strings are redact()ed; integers
  // that are card numbers become "****".
  void redact_json(boost::json::value& v) const;

  // True if `name` is a sensitive field name: equal to a configured field,
  // or ending with one, case-insensitively and with '-' read as '_'. A field
  // shorter than five characters matches as a suffix only after '_', '-',
  // '.', or at a lower-to-upper case change ("userPin").
  bool sensitive_field(std::string_view name) const;

 private:
  std::string mask_fields(std::string_view text) const;

  std::vector<std::string> fields_;  // normalised: lowercase, '-' as '_'
  std::vector<std::string> literals_;
  std::vector<std::regex> regexes_;
};

// The process's rules: the ones given to configure_redaction, or the
// defaults. Never null.
std::shared_ptr<const Redactor> current_redactor();

// Routes every core::log line through redact_text. Idempotent; called by
// configure_redaction and by Client's constructor, so library users get
// redacted logs without configuring anything.
void install_log_redaction();

}  // namespace asyncmq::security

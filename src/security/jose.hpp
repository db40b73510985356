// JOSE pieces shared by the API keys and the JWT verifier: SHA-256 and
// strict base64url (RFC 4648 section 5, no padding).
//
// Thread safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace asyncmq::security {

// Raw 32-byte SHA-256 of `data` (EVP).
std::string sha256(std::string_view data);

std::string base64url_encode(std::string_view bytes);
// Strict: only [A-Za-z0-9_-], no padding, no length of 1 mod 4, and the
// unused low bits of the last character must be zero (one encoding per
// byte string). nullopt on any violation.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace asyncmq::security

// Thin wrappers over OpenSSL's EVP interface: the only cryptography asyncmq
// does. Nothing here is hand-rolled; each function is one EVP call sequence
// with its lengths checked and its errors translated.
//
//   aes256_gcm_seal / aes256_gcm_open   AES-256-GCM, 96-bit nonce, 128-bit tag
//   hmac_sha256                         HMAC-SHA-256 (any key length)
//   constant_time_equal                 CRYPTO_memcmp
//   secure_wipe                         OPENSSL_cleanse
//   random_bytes                        RAND_bytes (the CSPRNG)
//
// Byte strings are passed as std::string_view / std::string (any bytes,
// NULs included), which is what the codec seam carries.
//
// Why only 96-bit nonces and 128-bit tags: other nonce lengths go through
// GHASH (the "LongIv"/"CounterWrap" class of bugs) and shorter tags weaken
// authentication; asyncmq never needs either, so the API refuses them.
//
// Why nonces come from RAND_bytes and not from Env: Env's randomness is
// seeded and replayable in tests (job ids, jitter); a repeated GCM nonce
// under one key loses both confidentiality and authenticity. Key material
// and nonces must come from the operating system's CSPRNG, always.
//
// Thread safety: every function is safe to call concurrently.
// Errors: InvalidArgument for wrong key, nonce or tag lengths (a caller bug);
// Error(errc::backend_failure) if OpenSSL itself fails (allocation, RNG),
// with OpenSSL's error code in the message. A failed GCM authentication is
// not an exception here: aes256_gcm_open returns nullopt and the caller
// decides what it means (the sealing codec throws IntegrityError).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace asyncmq::security {

inline constexpr std::size_t kAes256KeyBytes = 32;
inline constexpr std::size_t kGcmNonceBytes = 12;
inline constexpr std::size_t kGcmTagBytes = 16;
inline constexpr std::size_t kHmacSha256Bytes = 32;

struct GcmSealed {
  std::string ciphertext;  // as long as the plaintext
  std::string tag;         // kGcmTagBytes
};

// Encrypts and authenticates `plain`, authenticating `aad` too.
// REQUIRES: key.size() == kAes256KeyBytes, nonce.size() == kGcmNonceBytes,
// and the nonce never used before with this key (use random_gcm_nonce()).
GcmSealed aes256_gcm_seal(std::string_view key, std::string_view nonce, std::string_view aad,
                          std::string_view plain);

// Verifies and decrypts. Returns nullopt if the tag does not authenticate
// (ciphertext, tag, nonce, aad or key differ from sealing); no unverified
// plaintext is ever returned (partial output is wiped).
// REQUIRES: key.size() == kAes256KeyBytes, nonce.size() == kGcmNonceBytes,
// tag.size() == kGcmTagBytes.
std::optional<std::string> aes256_gcm_open(std::string_view key, std::string_view nonce,
                                           std::string_view aad, std::string_view ciphertext,
                                           std::string_view tag);

// HMAC-SHA-256 of `message` under `key` (any length, per RFC 2104).
// Returns kHmacSha256Bytes raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view message);

// True if `a` and `b` are equal. The time taken depends on the length only,
// never on where they differ (lengths are not treated as secret).
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// Overwrites `size` bytes at `data` with zeros in a way the compiler may not
// elide.
void secure_wipe(void* data, std::size_t size) noexcept;
inline void secure_wipe(std::string& s) noexcept { secure_wipe(s.data(), s.size()); }

// `n` bytes from OpenSSL's CSPRNG.
std::string random_bytes(std::size_t n);
inline std::string random_gcm_nonce() { return random_bytes(kGcmNonceBytes); }

// Lowercase hex of `bytes`, and its inverse (InvalidArgument on bad input).
std::string to_hex(std::string_view bytes);
std::string from_hex(std::string_view hex);

// Standard base64 (RFC 4648, with padding), via EVP. decode throws
// InvalidArgument on malformed input; the message never contains the input.
std::string base64_encode(std::string_view bytes);
std::string base64_decode(std::string_view text);

}  // namespace asyncmq::security

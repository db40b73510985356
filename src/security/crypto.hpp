// Thin wrappers over OpenSSL's EVP interface: the only cryptography asyncmq
// does. Nothing here is hand-rolled; each function is one EVP call sequence
// with its lengths checked and its errors translated.
//
//   aes256_gcm_seal / aes256_gcm_open   AES-256-GCM, 96-bit nonce, 128-bit tag
//   GcmKey                              the same, keyed once for many messages
//   hmac_sha256                         HMAC-SHA-256 (any key length)
//   HmacSha256                          the same, keyed once for many messages
//   constant_time_equal                 CRYPTO_memcmp
//   secure_wipe                         OPENSSL_cleanse
//   random_bytes                        RAND_bytes (the CSPRNG)
//   random_gcm_nonce                    12 bytes of it, drawn in blocks
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
// Why the keyed classes: a fresh EVP context per message re-fetches
// nothing (the cipher and MAC are fetched once) but still allocates a
// context, expands the AES key and rebuilds the GHASH table, or absorbs the
// HMAC key, every time. For the small fields the sealing codec and the audit
// writer handle, that was most of the cost (bench/security_bench.cpp).
//
// Thread safety: every function is safe to call concurrently; the classes
// say what they allow.
// Errors: InvalidArgument for wrong key, nonce or tag lengths (a caller bug);
// Error(errc::backend_failure) if OpenSSL itself fails (allocation, RNG),
// with OpenSSL's error code in the message. A failed GCM authentication is
// not an exception here: aes256_gcm_open returns nullopt and the caller
// decides what it means (the sealing codec throws IntegrityError).
#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// An AES-256-GCM key prepared once for many messages: the key schedule and
// GHASH table are computed at construction in a keyed OpenSSL context, and
// each thread that uses the key gets a copy of it of its own, made on its
// first call and reused by every later call of that thread (so a message
// costs setting its nonce, not re-keying, and takes no lock). Same
// algorithm, lengths and results as aes256_gcm_seal/open.
//
// Why per thread and not a locked pool: the pool's lock was taken twice per
// message, by the producer and the worker threads alike, and was their most
// contended lock. A thread finds its context through a small thread_local
// table keyed by the GcmKey's serial number, which is never reused, so an
// entry left behind by a destroyed GcmKey never matches again and is never
// followed.
//
// Key material: the raw key bytes are not kept; the contexts (the keyed one
// and every thread's copy) are owned by the GcmKey and hold the expanded key
// until the GcmKey is destroyed, when they are freed and OpenSSL wipes them
// (OPENSSL_clear_free), whichever threads made them and whether or not
// those threads still run. Own a GcmKey next to the Secret it was made from,
// with the same lifetime. A thread's context that saw a failed open is keyed
// again from the keyed context before it is reused, and one that saw an
// OpenSSL error is never used again.
//
// At most kMaxThreadContexts threads get a context of their own per key (a
// thread that ended keeps its context until the key goes); further threads
// copy the keyed context per message, as slow as a fresh context but
// correct.
//
// Thread safety: seal and open are safe concurrently. Lifetime: a GcmKey
// must outlive every call on it. Errors: as the functions above.
class GcmKey {
 public:
  static constexpr std::size_t kMaxThreadContexts = 64;

  // REQUIRES: key.size() == kAes256KeyBytes.
  explicit GcmKey(std::string_view key);
  ~GcmKey();
  GcmKey(const GcmKey&) = delete;
  GcmKey& operator=(const GcmKey&) = delete;

  // Appends ciphertext || tag (plain.size() + kGcmTagBytes bytes) to `out`.
  // REQUIRES: nonce.size() == kGcmNonceBytes, never used before with this key.
  void seal(std::string_view nonce, std::string_view aad, std::string_view plain,
            std::string& out) const;
  // Writes ciphertext || tag (plain.size() + kGcmTagBytes bytes) at `out`,
  // which may not overlap `plain` or `aad`. On an exception the bytes at
  // `out` are unspecified.
  // REQUIRES: as seal() above.
  void seal_to(std::string_view nonce, std::string_view aad, std::string_view plain,
               char* out) const;
  // Verifies and decrypts into `plain` (replacing it). Returns false, with
  // `plain` empty, if the tag does not authenticate.
  // REQUIRES: nonce.size() == kGcmNonceBytes, tag.size() == kGcmTagBytes.
  bool open(std::string_view nonce, std::string_view aad, std::string_view ciphertext,
            std::string_view tag, std::string& plain) const;

 private:
  struct CtxFree {
    void operator()(EVP_CIPHER_CTX* c) const noexcept;
  };
  using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;
  // A new copy of keyed_.
  Ctx copy_keyed() const;
  // The calling thread's context for this key, made on its first call. If
  // this key already has kMaxThreadContexts, a copy only for this call is
  // put in `spare` and returned.
  EVP_CIPHER_CTX* thread_context(Ctx& spare) const;
  // Forgets the calling thread's context: it is never used again (it stays
  // owned, and is freed with the key).
  void drop_thread_context() const noexcept;

  const std::uint64_t serial_;  // unique for the life of the process
  Ctx keyed_;                   // keyed, no nonce; only ever copied
  mutable std::mutex mu_;
  mutable std::vector<Ctx> thread_ctxs_;  // GUARDED_BY(mu_); each used by one thread only
};

// HMAC-SHA-256 of `message` under `key` (any length, per RFC 2104).
// Returns kHmacSha256Bytes raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view message);

// HMAC-SHA-256 under one key for many messages: the key is absorbed once
// and the context restarted per message. Gives what hmac_sha256 gives.
// The context holds the key (OpenSSL keeps a copy, and the padded-key
// digest states) until destruction, when OpenSSL wipes it.
// Thread safety: not safe concurrently (one context); a value type that
// can be moved. An empty (default or moved-from) one throws
// InvalidArgument from mac().
class HmacSha256 {
 public:
  HmacSha256() = default;
  explicit HmacSha256(std::string_view key);
  ~HmacSha256();
  HmacSha256(HmacSha256&& other) noexcept;
  HmacSha256& operator=(HmacSha256&& other) noexcept;
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;

  // kHmacSha256Bytes raw bytes.
  std::string mac(std::string_view message);
  // Another context under the same key (its own copy, wiped when it goes).
  HmacSha256 clone() const;

 private:
  EVP_MAC_CTX* ctx_ = nullptr;
};

// True if `a` and `b` are equal. The time taken depends on the length only,
// never on where they differ (lengths are not treated as secret).
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// Overwrites `size` bytes at `data` with zeros in a way the compiler may not
// elide.
void secure_wipe(void* data, std::size_t size) noexcept;
inline void secure_wipe(std::string& s) noexcept { secure_wipe(s.data(), s.size()); }

// `n` bytes from OpenSSL's CSPRNG. Use it for key material: every call
// asks the CSPRNG afresh, nothing is kept.
std::string random_bytes(std::size_t n);

// A fresh random 96-bit GCM nonce. Each thread draws the CSPRNG (RAND_bytes)
// in blocks of 256 nonces and hands them out in turn, never one twice: one
// RAND_bytes call cost about as much as sealing a 1 KiB payload. Nonces are
// public (they are stored in every envelope), so holding the next few in
// memory reveals nothing. A forked child discards what its parent drew
// (a pthread_atfork handler), so parent and child never share a nonce.
std::string random_gcm_nonce();
// The same, written to the kGcmNonceBytes bytes at `out`.
void random_gcm_nonce(char* out);

// Lowercase hex of `bytes`, and its inverse (InvalidArgument on bad input).
std::string to_hex(std::string_view bytes);
std::string from_hex(std::string_view hex);

// Standard base64 (RFC 4648, with padding), via EVP. decode throws
// InvalidArgument on malformed input; the message never contains the input.
std::string base64_encode(std::string_view bytes);
std::string base64_decode(std::string_view text);

}  // namespace asyncmq::security

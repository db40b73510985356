#include "security/crypto.hpp"

#include <asyncmq/error.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <memory>

namespace asyncmq::security {
namespace {

// The one place OpenSSL failures become asyncmq errors. Drains OpenSSL's
// per-thread error queue (so a later call does not report a stale error) and
// names the first error code; OpenSSL's messages never contain key material
// or data, only library/function/reason.
[[noreturn]] void throw_openssl(std::string_view operation) {
  unsigned long first = ERR_get_error();
  while (ERR_get_error() != 0) {
  }
  std::string msg = "openssl: " + std::string(operation) + " failed";
  if (first != 0) {
    char buf[256];
    ERR_error_string_n(first, buf, sizeof buf);
    msg += " (";
    msg += buf;
    msg += ")";
  }
  throw Error(errc::backend_failure, msg);
}

void require_length(std::string_view what, std::size_t got, std::size_t want) {
  if (got != want) {
    throw InvalidArgument(std::string(what) + " must be " + std::to_string(want) +
                          " bytes, got " + std::to_string(got));
  }
}

int checked_int(std::size_t n, std::string_view what) {
  if (n > static_cast<std::size_t>(INT_MAX)) throw InvalidArgument(std::string(what) + " too long");
  return static_cast<int>(n);
}

const unsigned char* u8(std::string_view s) {
  // OpenSSL wants a non-null pointer even for empty input.
  static const unsigned char empty = 0;
  return s.empty() ? &empty : reinterpret_cast<const unsigned char*>(s.data());
}

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

// Fetched once: the implicit fetch inside EVP_aes_256_gcm() on every call
// costs a provider lookup per message.
const EVP_CIPHER* aes256gcm() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (!cipher) throw_openssl("EVP_CIPHER_fetch(AES-256-GCM)");
  return cipher;
}

CipherCtx new_ctx() {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw_openssl("EVP_CIPHER_CTX_new");
  return ctx;
}

// One encryption on `ctx`, which has its key and nonce set: writes
// ciphertext || tag (plain.size() + kGcmTagBytes bytes) at `out`.
// REQUIRES: aad and plain no longer than INT_MAX (checked_int).
void gcm_encrypt_to(EVP_CIPHER_CTX* ctx, std::string_view aad, std::string_view plain,
                    unsigned char* out) {
  const int aad_len = static_cast<int>(aad.size());
  const int plain_len = static_cast<int>(plain.size());
  int len = 0;
  if (aad_len > 0 && EVP_EncryptUpdate(ctx, nullptr, &len, u8(aad), aad_len) != 1)
    throw_openssl("EVP_EncryptUpdate(aad)");
  int written = 0;
  if (plain_len > 0) {
    if (EVP_EncryptUpdate(ctx, out, &len, u8(plain), plain_len) != 1)
      throw_openssl("EVP_EncryptUpdate");
    written = len;
  }
  unsigned char tail[16];
  if (EVP_EncryptFinal_ex(ctx, tail, &len) != 1) throw_openssl("EVP_EncryptFinal_ex");
  // GCM is a stream mode: Update wrote every byte, Final writes none.
  if (written != plain_len || len != 0) throw_openssl("AES-256-GCM output length");
  // The parameter call that EVP_CTRL_GCM_GET_TAG makes, without the control
  // call's translation around it: this runs once per message.
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out + plain.size(),
                                        kGcmTagBytes),
      OSSL_PARAM_construct_end()};
  if (EVP_CIPHER_CTX_get_params(ctx, params) != 1) throw_openssl("get AES-256-GCM tag");
}

// Appends ciphertext || tag to `out`; on failure `out` is as it was.
void gcm_encrypt(EVP_CIPHER_CTX* ctx, std::string_view aad, std::string_view plain,
                 std::string& out) {
  const std::size_t at = out.size();
  out.resize(at + plain.size() + kGcmTagBytes);
  try {
    gcm_encrypt_to(ctx, aad, plain, reinterpret_cast<unsigned char*>(out.data() + at));
  } catch (...) {
    out.resize(at);
    throw;
  }
}

// The parameters that hand the expected tag to a decryption's init call.
// Given there rather than by EVP_CTRL_GCM_SET_TAG afterwards: each control
// call is a parameter round trip through the provider (a lookup of every
// parameter name the GCM implementation knows), which showed up per message.
// `tag_copy` must outlive the init call; OpenSSL copies it into the context.
struct TagParams {
  unsigned char tag_copy[kGcmTagBytes];
  OSSL_PARAM params[2];
  explicit TagParams(std::string_view tag) {
    std::memcpy(tag_copy, tag.data(), kGcmTagBytes);
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag_copy,
                                                  kGcmTagBytes);
    params[1] = OSSL_PARAM_construct_end();
  }
};

// One decryption on `ctx`, which has its key, nonce and expected tag set.
// Returns false (and `plain` empty) if the tag does not authenticate; no
// unverified plaintext is ever left in `plain` (it is wiped).
// REQUIRES: aad and ciphertext no longer than INT_MAX (checked_int).
bool gcm_decrypt(EVP_CIPHER_CTX* ctx, std::string_view aad, std::string_view ciphertext,
                 std::string& plain) {
  const int aad_len = static_cast<int>(aad.size());
  const int ct_len = static_cast<int>(ciphertext.size());
  secure_wipe(plain);
  plain.assign(ciphertext.size(), '\0');
  auto fail = [&](std::string_view op) {
    secure_wipe(plain);
    plain.clear();
    throw_openssl(op);
  };
  int len = 0;
  if (aad_len > 0 && EVP_DecryptUpdate(ctx, nullptr, &len, u8(aad), aad_len) != 1)
    fail("EVP_DecryptUpdate(aad)");
  auto* pt = reinterpret_cast<unsigned char*>(plain.data());
  int written = 0;
  if (ct_len > 0) {
    if (EVP_DecryptUpdate(ctx, pt, &len, u8(ciphertext), ct_len) != 1) fail("EVP_DecryptUpdate");
    written = len;
  }
  unsigned char tail[16];
  if (EVP_DecryptFinal_ex(ctx, tail, &len) != 1) {
    // Authentication failed. OpenSSL 3 queues no error for a tag mismatch,
    // but drain the queue anyway so nothing stale leaks into a later call.
    ERR_clear_error();
    secure_wipe(plain);  // unverified plaintext never leaves this function
    plain.clear();
    return false;
  }
  if (written != ct_len || len != 0) fail("AES-256-GCM output length");
  return true;
}

}  // namespace

GcmSealed aes256_gcm_seal(std::string_view key, std::string_view nonce, std::string_view aad,
                          std::string_view plain) {
  require_length("AES-256-GCM key", key.size(), kAes256KeyBytes);
  require_length("AES-256-GCM nonce", nonce.size(), kGcmNonceBytes);
  checked_int(aad.size(), "associated data");
  checked_int(plain.size(), "plaintext");
  CipherCtx ctx = new_ctx();
  // The default GCM IV length is 12 bytes, so no EVP_CTRL_GCM_SET_IVLEN.
  if (EVP_EncryptInit_ex2(ctx.get(), aes256gcm(), u8(key), u8(nonce), nullptr) != 1)
    throw_openssl("EVP_EncryptInit_ex2");
  std::string both;
  gcm_encrypt(ctx.get(), aad, plain, both);
  GcmSealed out;
  out.tag = both.substr(plain.size());
  both.resize(plain.size());
  out.ciphertext = std::move(both);
  return out;
}

std::optional<std::string> aes256_gcm_open(std::string_view key, std::string_view nonce,
                                           std::string_view aad, std::string_view ciphertext,
                                           std::string_view tag) {
  require_length("AES-256-GCM key", key.size(), kAes256KeyBytes);
  require_length("AES-256-GCM nonce", nonce.size(), kGcmNonceBytes);
  require_length("AES-256-GCM tag", tag.size(), kGcmTagBytes);
  checked_int(aad.size(), "associated data");
  checked_int(ciphertext.size(), "ciphertext");
  CipherCtx ctx = new_ctx();
  TagParams tp(tag);
  if (EVP_DecryptInit_ex2(ctx.get(), aes256gcm(), u8(key), u8(nonce), tp.params) != 1)
    throw_openssl("EVP_DecryptInit_ex2");
  std::string plain;
  if (!gcm_decrypt(ctx.get(), aad, ciphertext, plain)) return std::nullopt;
  return plain;
}

// ---- GcmKey ----------------------------------------------------------------

namespace {

std::atomic<std::uint64_t> next_gcm_serial{1};

// Which context this thread uses for which GcmKey (by serial number). Plain
// data, so the thread_local needs no constructor, destructor or guard on
// each access; the contexts belong to their GcmKeys, not to this table. A
// thread that uses more keys than entries evicts the oldest, and makes that
// key another context if it comes back to it (bounded by
// kMaxThreadContexts).
struct ThreadGcmContexts {
  static constexpr std::size_t kEntries = 8;
  struct Entry {
    std::uint64_t serial = 0;  // 0: empty (serials start at 1)
    EVP_CIPHER_CTX* ctx = nullptr;
  };
  Entry entries[kEntries];
  std::size_t next = 0;  // the entry to replace next
};
thread_local ThreadGcmContexts thread_gcm_contexts;

}  // namespace

void GcmKey::CtxFree::operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }

GcmKey::GcmKey(std::string_view key)
    : serial_(next_gcm_serial.fetch_add(1, std::memory_order_relaxed)) {
  require_length("AES-256-GCM key", key.size(), kAes256KeyBytes);
  keyed_.reset(EVP_CIPHER_CTX_new());
  if (!keyed_) throw_openssl("EVP_CIPHER_CTX_new");
  if (EVP_EncryptInit_ex2(keyed_.get(), aes256gcm(), u8(key), nullptr, nullptr) != 1)
    throw_openssl("EVP_EncryptInit_ex2");
}

GcmKey::~GcmKey() = default;

GcmKey::Ctx GcmKey::copy_keyed() const {
  // Copying only reads keyed_, which no call ever uses directly, so
  // threads may copy it at once.
  Ctx c(EVP_CIPHER_CTX_new());
  if (!c) throw_openssl("EVP_CIPHER_CTX_new");
  if (EVP_CIPHER_CTX_copy(c.get(), keyed_.get()) != 1) throw_openssl("EVP_CIPHER_CTX_copy");
  return c;
}

EVP_CIPHER_CTX* GcmKey::thread_context(Ctx& spare) const {
  ThreadGcmContexts& t = thread_gcm_contexts;
  for (const auto& e : t.entries)
    if (e.serial == serial_) return e.ctx;
  Ctx c = copy_keyed();
  EVP_CIPHER_CTX* raw = c.get();
  {
    std::lock_guard lock(mu_);
    if (thread_ctxs_.size() < kMaxThreadContexts) thread_ctxs_.push_back(std::move(c));
  }
  if (c) {  // this key has its share of threads: a context for this call only
    spare = std::move(c);
    return raw;
  }
  t.entries[t.next] = {serial_, raw};
  t.next = (t.next + 1) % ThreadGcmContexts::kEntries;
  return raw;
}

void GcmKey::drop_thread_context() const noexcept {
  for (auto& e : thread_gcm_contexts.entries)
    if (e.serial == serial_) e = {};
}

void GcmKey::seal_to(std::string_view nonce, std::string_view aad, std::string_view plain,
                     char* out) const {
  require_length("AES-256-GCM nonce", nonce.size(), kGcmNonceBytes);
  checked_int(aad.size(), "associated data");
  checked_int(plain.size(), "plaintext");
  Ctx spare;
  EVP_CIPHER_CTX* c = thread_context(spare);
  try {
    // No cipher and no key: keep both, set the nonce (this also restarts GHASH).
    if (EVP_CipherInit_ex2(c, nullptr, nullptr, u8(nonce), 1, nullptr) != 1)
      throw_openssl("EVP_CipherInit_ex2");
    gcm_encrypt_to(c, aad, plain, reinterpret_cast<unsigned char*>(out));
  } catch (...) {
    if (!spare) drop_thread_context();
    throw;
  }
}

void GcmKey::seal(std::string_view nonce, std::string_view aad, std::string_view plain,
                  std::string& out) const {
  const std::size_t at = out.size();
  out.resize(at + plain.size() + kGcmTagBytes);
  try {
    seal_to(nonce, aad, plain, out.data() + at);
  } catch (...) {
    out.resize(at);
    throw;
  }
}

bool GcmKey::open(std::string_view nonce, std::string_view aad, std::string_view ciphertext,
                  std::string_view tag, std::string& plain) const {
  require_length("AES-256-GCM nonce", nonce.size(), kGcmNonceBytes);
  require_length("AES-256-GCM tag", tag.size(), kGcmTagBytes);
  checked_int(aad.size(), "associated data");
  checked_int(ciphertext.size(), "ciphertext");
  Ctx spare;
  EVP_CIPHER_CTX* c = thread_context(spare);
  bool opened = false;
  try {
    TagParams tp(tag);
    if (EVP_CipherInit_ex2(c, nullptr, nullptr, u8(nonce), 0, tp.params) != 1)
      throw_openssl("EVP_CipherInit_ex2");
    opened = gcm_decrypt(c, aad, ciphertext, plain);
  } catch (...) {
    if (!spare) drop_thread_context();
    throw;
  }
  if (!opened && !spare) {
    // Keyed again from scratch rather than trusted after a refusal (the
    // copy resets the context first, which frees and wipes its state).
    if (EVP_CIPHER_CTX_copy(c, keyed_.get()) != 1) {
      ERR_clear_error();
      drop_thread_context();
    }
  }
  return opened;
}

// ---- HMAC-SHA-256 ----------------------------------------------------------

namespace {

// Fetched once, like the cipher: HMAC() fetched the MAC and the digest on
// every call.
EVP_MAC* hmac_algorithm() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!mac) throw_openssl("EVP_MAC_fetch(HMAC)");
  return mac;
}

// A context with the digest chosen and no key yet, copied for every new
// key: setting the digest by name fetched SHA-256 on every call.
const EVP_MAC_CTX* hmac_sha256_unkeyed() {
  static EVP_MAC_CTX* ctx = [] {
    EVP_MAC_CTX* c = EVP_MAC_CTX_new(hmac_algorithm());
    if (!c) throw_openssl("EVP_MAC_CTX_new");
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    if (EVP_MAC_CTX_set_params(c, params) != 1) {
      EVP_MAC_CTX_free(c);
      throw_openssl("EVP_MAC_CTX_set_params(digest=SHA256)");
    }
    return c;
  }();
  return ctx;
}

EVP_MAC_CTX* new_hmac_ctx(std::string_view key) {
  // EVP_MAC_CTX_dup only reads its argument (it is not const in OpenSSL's API).
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(const_cast<EVP_MAC_CTX*>(hmac_sha256_unkeyed()));
  if (!ctx) throw_openssl("EVP_MAC_CTX_dup");
  if (EVP_MAC_init(ctx, u8(key), key.size(), nullptr) != 1) {
    EVP_MAC_CTX_free(ctx);
    throw_openssl("EVP_MAC_init(HMAC-SHA-256)");
  }
  return ctx;
}

// Update and final on an initialised context.
std::string hmac_finish(EVP_MAC_CTX* ctx, std::string_view message) {
  std::string out(kHmacSha256Bytes, '\0');
  std::size_t out_len = 0;
  if (EVP_MAC_update(ctx, u8(message), message.size()) != 1 ||
      EVP_MAC_final(ctx, reinterpret_cast<unsigned char*>(out.data()), &out_len, out.size()) != 1 ||
      out_len != kHmacSha256Bytes)
    throw_openssl("HMAC(SHA-256)");
  return out;
}

}  // namespace

std::string hmac_sha256(std::string_view key, std::string_view message) {
  checked_int(key.size(), "HMAC key");
  std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(new_hmac_ctx(key),
                                                                &EVP_MAC_CTX_free);
  return hmac_finish(ctx.get(), message);
}

HmacSha256::HmacSha256(std::string_view key) : ctx_(new_hmac_ctx(key)) {}

HmacSha256::~HmacSha256() { EVP_MAC_CTX_free(ctx_); }

HmacSha256 HmacSha256::clone() const {
  if (!ctx_) throw InvalidArgument("HMAC-SHA-256: no key");
  HmacSha256 out;
  out.ctx_ = EVP_MAC_CTX_dup(ctx_);
  if (!out.ctx_) throw_openssl("EVP_MAC_CTX_dup");
  return out;
}

HmacSha256::HmacSha256(HmacSha256&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }

HmacSha256& HmacSha256::operator=(HmacSha256&& other) noexcept {
  if (this != &other) {
    EVP_MAC_CTX_free(ctx_);
    ctx_ = other.ctx_;
    other.ctx_ = nullptr;
  }
  return *this;
}

std::string HmacSha256::mac(std::string_view message) {
  if (!ctx_) throw InvalidArgument("HMAC-SHA-256: no key");
  // A null key restarts the context under the key it already holds.
  if (EVP_MAC_init(ctx_, nullptr, 0, nullptr) != 1) throw_openssl("EVP_MAC_init");
  return hmac_finish(ctx_, message);
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void secure_wipe(void* data, std::size_t size) noexcept {
  if (data && size) OPENSSL_cleanse(data, size);
}

// ---- randomness --------------------------------------------------------------

namespace {

// Bumped in a forked child (pthread_atfork), so that no thread's nonce
// block drawn before the fork is used after it.
std::atomic<std::uint64_t> fork_generation{0};

void after_fork_in_child() { fork_generation.fetch_add(1, std::memory_order_relaxed); }

constexpr std::size_t kNoncesPerBlock = 256;

struct NonceBlock {
  unsigned char bytes[kNoncesPerBlock * kGcmNonceBytes];
  std::size_t next = sizeof bytes;  // empty
  std::uint64_t generation = 0;
  ~NonceBlock() { OPENSSL_cleanse(bytes, sizeof bytes); }
};

}  // namespace

void random_gcm_nonce(char* out) {
  static const bool registered = [] {
    if (pthread_atfork(nullptr, nullptr, after_fork_in_child) != 0)
      throw Error(errc::backend_failure, "pthread_atfork failed");
    return true;
  }();
  (void)registered;
  thread_local NonceBlock block;
  const std::uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  if (block.next == sizeof block.bytes || block.generation != generation) {
    if (RAND_bytes(block.bytes, static_cast<int>(sizeof block.bytes)) != 1) {
      block.next = sizeof block.bytes;
      throw_openssl("RAND_bytes");
    }
    block.next = 0;
    block.generation = generation;
  }
  std::memcpy(out, block.bytes + block.next, kGcmNonceBytes);
  // Handed out once: the bytes are not needed again.
  OPENSSL_cleanse(block.bytes + block.next, kGcmNonceBytes);
  block.next += kGcmNonceBytes;
}

std::string random_gcm_nonce() {
  std::string out(kGcmNonceBytes, '\0');
  random_gcm_nonce(out.data());
  return out;
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                          checked_int(n, "random length")) != 1)
    throw_openssl("RAND_bytes");
  return out;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

std::string from_hex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) throw InvalidArgument("hex string has an odd length");
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) throw InvalidArgument("hex string has a non-hex character");
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), u8(bytes),
                          checked_int(bytes.size(), "base64 input"));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string base64_decode(std::string_view text) {
  // EVP_DecodeBlock is lenient (whitespace, no padding check) and reports
  // padding as zero bytes, so validate strictly here first.
  auto is_b64 = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
  };
  if (text.empty()) return {};
  if (text.size() % 4 != 0) throw InvalidArgument("base64 text length is not a multiple of 4");
  std::size_t pad = 0;
  if (text.back() == '=') ++pad;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  for (std::size_t i = 0; i < text.size() - pad; ++i)
    if (!is_b64(text[i])) throw InvalidArgument("base64 text has an invalid character");
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), u8(text),
                          checked_int(text.size(), "base64 input"));
  if (n < 0) {
    secure_wipe(out);
    throw InvalidArgument("base64 text is malformed");
  }
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

}  // namespace asyncmq::security

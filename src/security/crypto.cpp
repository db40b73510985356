#include "security/crypto.hpp"

#include <asyncmq/error.hpp>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>
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

}  // namespace

GcmSealed aes256_gcm_seal(std::string_view key, std::string_view nonce, std::string_view aad,
                          std::string_view plain) {
  require_length("AES-256-GCM key", key.size(), kAes256KeyBytes);
  require_length("AES-256-GCM nonce", nonce.size(), kGcmNonceBytes);
  const int aad_len = checked_int(aad.size(), "associated data");
  const int plain_len = checked_int(plain.size(), "plaintext");

  CipherCtx ctx = new_ctx();
  // The default GCM IV length is 12 bytes, so no EVP_CTRL_GCM_SET_IVLEN.
  if (EVP_EncryptInit_ex2(ctx.get(), aes256gcm(), u8(key), u8(nonce), nullptr) != 1)
    throw_openssl("EVP_EncryptInit_ex2");
  int len = 0;
  if (aad_len > 0 && EVP_EncryptUpdate(ctx.get(), nullptr, &len, u8(aad), aad_len) != 1)
    throw_openssl("EVP_EncryptUpdate(aad)");
  GcmSealed out;
  out.ciphertext.resize(plain.size());
  auto* ct = reinterpret_cast<unsigned char*>(out.ciphertext.data());
  int written = 0;
  if (plain_len > 0) {
    if (EVP_EncryptUpdate(ctx.get(), ct, &len, u8(plain), plain_len) != 1)
      throw_openssl("EVP_EncryptUpdate");
    written = len;
  }
  unsigned char tail[16];
  if (EVP_EncryptFinal_ex(ctx.get(), tail, &len) != 1) throw_openssl("EVP_EncryptFinal_ex");
  written += len;  // GCM is a stream mode: 0 here
  out.ciphertext.resize(static_cast<std::size_t>(written));
  out.tag.resize(kGcmTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kGcmTagBytes),
                          out.tag.data()) != 1)
    throw_openssl("EVP_CTRL_GCM_GET_TAG");
  return out;
}

std::optional<std::string> aes256_gcm_open(std::string_view key, std::string_view nonce,
                                           std::string_view aad, std::string_view ciphertext,
                                           std::string_view tag) {
  require_length("AES-256-GCM key", key.size(), kAes256KeyBytes);
  require_length("AES-256-GCM nonce", nonce.size(), kGcmNonceBytes);
  require_length("AES-256-GCM tag", tag.size(), kGcmTagBytes);
  const int aad_len = checked_int(aad.size(), "associated data");
  const int ct_len = checked_int(ciphertext.size(), "ciphertext");

  CipherCtx ctx = new_ctx();
  if (EVP_DecryptInit_ex2(ctx.get(), aes256gcm(), u8(key), u8(nonce), nullptr) != 1)
    throw_openssl("EVP_DecryptInit_ex2");
  int len = 0;
  if (aad_len > 0 && EVP_DecryptUpdate(ctx.get(), nullptr, &len, u8(aad), aad_len) != 1)
    throw_openssl("EVP_DecryptUpdate(aad)");
  std::string plain(ciphertext.size(), '\0');
  auto* pt = reinterpret_cast<unsigned char*>(plain.data());
  int written = 0;
  if (ct_len > 0) {
    if (EVP_DecryptUpdate(ctx.get(), pt, &len, u8(ciphertext), ct_len) != 1) {
      secure_wipe(plain);
      throw_openssl("EVP_DecryptUpdate");
    }
    written = len;
  }
  // The tag is set before Final; OpenSSL only reads it, the cast is its API.
  std::string tag_copy(tag);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kGcmTagBytes),
                          tag_copy.data()) != 1) {
    secure_wipe(plain);
    throw_openssl("EVP_CTRL_GCM_SET_TAG");
  }
  unsigned char tail[16];
  if (EVP_DecryptFinal_ex(ctx.get(), tail, &len) != 1) {
    // Authentication failed. OpenSSL 3 queues no error for a tag mismatch,
    // but drain the queue anyway so nothing stale leaks into a later call.
    ERR_clear_error();
    secure_wipe(plain);  // unverified plaintext never leaves this function
    return std::nullopt;
  }
  plain.resize(static_cast<std::size_t>(written + len));
  return plain;
}

std::string hmac_sha256(std::string_view key, std::string_view message) {
  const int key_len = checked_int(key.size(), "HMAC key");
  std::string out(kHmacSha256Bytes, '\0');
  unsigned int out_len = 0;
  if (!HMAC(EVP_sha256(), u8(key), key_len, u8(message), message.size(),
            reinterpret_cast<unsigned char*>(out.data()), &out_len) ||
      out_len != kHmacSha256Bytes)
    throw_openssl("HMAC(SHA-256)");
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void secure_wipe(void* data, std::size_t size) noexcept {
  if (data && size) OPENSSL_cleanse(data, size);
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

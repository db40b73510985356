// JwkSet: verification keys parsed from a JSON Web Key Set (RFC 7517), each
// with the one algorithm it may verify (see JwtVerifier in
// include/asyncmq/identity.hpp for the rules).
//
// Supported keys: "oct" (HS256/384/512; at least as many bytes as the
// hash), "RSA" (RS*/PS*; modulus of 2048 bits or more), "EC" on P-256,
// P-384, P-521 (ES256/384/512; the curve fixes the algorithm), "OKP"
// Ed25519 (EdDSA). Private members ("d", ...) are ignored: only public
// parts are used.
//
// Thread safety: immutable after parse; verify is safe concurrently.
// Lifetime: shared; keys are freed with the set.
#pragma once

#include <asyncmq/identity.hpp>
#include <asyncmq/security.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct evp_pkey_st;

namespace asyncmq {

class JwkSet {
 public:
  struct Key {
    std::string kid;  // may be empty
    JwsAlg alg;
    std::shared_ptr<evp_pkey_st> pkey;  // RSA, EC, OKP
    Secret hmac;                        // oct
  };

  // Parses {"keys":[...]} (or a single JWK object). A key that cannot be
  // used is skipped and its reason recorded in skipped(); malformed JSON
  // or a duplicate kid throws InvalidArgument naming `source`.
  static std::shared_ptr<JwkSet> parse(std::string_view json, std::string_view source,
                                       const JwtOptions& options = {});

  // The key for a token's kid; with no kid, the only key if there is one.
  // Null if none.
  const Key* find(const std::string* kid) const;
  std::size_t size() const { return keys_.size(); }
  const std::vector<std::string>& skipped() const { return skipped_; }

  // Verifies `signature` over `input` with `key` under key.alg. Never
  // throws for a bad signature (false); lengths are checked first.
  static bool verify(const Key& key, std::string_view input, std::string_view signature);

 private:
  std::vector<std::unique_ptr<Key>> keys_;
  std::vector<std::string> skipped_;
};

}  // namespace asyncmq

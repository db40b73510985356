// JwkSet: JWKs to OpenSSL keys, and signature verification per algorithm,
// all through EVP (see jwks.hpp).
//
// ECDSA: JOSE carries r||s, each exactly the curve's coordinate size
// (RFC 7518 3.4); OpenSSL verifies DER, so the two halves are converted
// with ECDSA_SIG. A signature of any other length is refused before any
// conversion (no leniency that would give one signature two encodings).
// RSASSA-PSS: MGF1 with the signing hash and a salt as long as the hash
// (RFC 7518 3.5), enforced with RSA_PSS_SALTLEN_DIGEST.
#include "security/jwks.hpp"

#include "core/log.hpp"
#include "security/crypto.hpp"
#include "security/jose.hpp"

#include <boost/json.hpp>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <array>
#include <set>

namespace asyncmq {

namespace {

constexpr std::array<std::string_view, 13> kAlgNames = {
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
    "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"};

const EVP_MD* digest_of(JwsAlg alg) {
  switch (alg) {
    case JwsAlg::HS256: case JwsAlg::RS256: case JwsAlg::PS256: case JwsAlg::ES256:
      return EVP_sha256();
    case JwsAlg::HS384: case JwsAlg::RS384: case JwsAlg::PS384: case JwsAlg::ES384:
      return EVP_sha384();
    case JwsAlg::HS512: case JwsAlg::RS512: case JwsAlg::PS512: case JwsAlg::ES512:
      return EVP_sha512();
    case JwsAlg::EdDSA: return nullptr;
  }
  return nullptr;
}

bool is_hmac(JwsAlg a) { return a == JwsAlg::HS256 || a == JwsAlg::HS384 || a == JwsAlg::HS512; }
bool is_rsa(JwsAlg a) {
  return a == JwsAlg::RS256 || a == JwsAlg::RS384 || a == JwsAlg::RS512 || a == JwsAlg::PS256 ||
         a == JwsAlg::PS384 || a == JwsAlg::PS512;
}
bool is_pss(JwsAlg a) { return a == JwsAlg::PS256 || a == JwsAlg::PS384 || a == JwsAlg::PS512; }

struct Curve {
  std::string_view jwk_name, group;
  JwsAlg alg;
  std::size_t coord;
};
constexpr std::array<Curve, 3> kCurves = {{{"P-256", "prime256v1", JwsAlg::ES256, 32},
                                           {"P-384", "secp384r1", JwsAlg::ES384, 48},
                                           {"P-521", "secp521r1", JwsAlg::ES512, 66}}};

struct PkeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct CtxFree { void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); } };
struct BldFree { void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); } };
struct ParamFree { void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); } };
struct BnFree { void operator()(BIGNUM* p) const { BN_free(p); } };
struct MdCtxFree { void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); } };

// A key could not be used; the reason goes to skipped().
struct Skip {
  std::string why;
};

std::string b64_member(const boost::json::object& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->value().is_string()) throw Skip{std::string("no `") + name + "`"};
  auto bytes = security::base64url_decode(it->value().as_string());
  if (!bytes || bytes->empty()) throw Skip{std::string("`") + name + "` is not base64url"};
  return *bytes;
}

std::shared_ptr<EVP_PKEY> from_params(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  std::unique_ptr<EVP_PKEY_CTX, CtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    throw Skip{"OpenSSL refused the key parameters"};
  }
  std::shared_ptr<EVP_PKEY> key(raw, PkeyFree{});
  std::unique_ptr<EVP_PKEY_CTX, CtxFree> check(EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    ERR_clear_error();
    throw Skip{"the public key is not valid"};
  }
  return key;
}

std::shared_ptr<EVP_PKEY> rsa_key(const boost::json::object& jwk) {
  std::string n = b64_member(jwk, "n"), e = b64_member(jwk, "e");
  std::unique_ptr<BIGNUM, BnFree> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                                                 static_cast<int>(n.size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                                                 static_cast<int>(e.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()))
    throw Skip{"cannot build the RSA key"};
  if (BN_num_bits(bn_n.get()) < 2048) throw Skip{"RSA modulus shorter than 2048 bits"};
  // EVP_PKEY_public_check on RSA also tests e: odd and > 1.
  return from_params("RSA", bld.get());
}

std::shared_ptr<EVP_PKEY> ec_key(const boost::json::object& jwk, const Curve& c) {
  std::string x = b64_member(jwk, "x"), y = b64_member(jwk, "y");
  if (x.size() != c.coord || y.size() != c.coord)
    throw Skip{"EC coordinates must be exactly " + std::to_string(c.coord) + " bytes"};
  std::string point = "\x04" + x + y;
  std::string group(c.group);
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group.c_str(), 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()))
    throw Skip{"cannot build the EC key"};
  return from_params("EC", bld.get());
}

std::shared_ptr<EVP_PKEY> ed25519_key(const boost::json::object& jwk) {
  std::string x = b64_member(jwk, "x");
  if (x.size() != 32) throw Skip{"Ed25519 `x` must be 32 bytes"};
  EVP_PKEY* raw = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x.data()), x.size());
  if (!raw) {
    ERR_clear_error();
    throw Skip{"OpenSSL refused the Ed25519 key"};
  }
  return std::shared_ptr<EVP_PKEY>(raw, PkeyFree{});
}

std::string string_member(const boost::json::object& o, const char* name) {
  auto it = o.find(name);
  if (it == o.end()) return {};
  if (!it->value().is_string()) throw Skip{std::string("`") + name + "` is not a string"};
  return std::string(it->value().as_string());
}

std::unique_ptr<JwkSet::Key> make_key(const boost::json::object& jwk, const JwtOptions& options) {
  auto key = std::make_unique<JwkSet::Key>();
  const std::string kty = string_member(jwk, "kty");
  const std::string use = string_member(jwk, "use");
  const std::string alg_name = string_member(jwk, "alg");
  if (!use.empty() && use != "sig") throw Skip{"`use` is \"" + use + "\", not \"sig\""};
  if (auto ops = jwk.find("key_ops"); ops != jwk.end()) {
    bool verify = false;
    if (!ops->value().is_array()) throw Skip{"`key_ops` is not an array"};
    for (const auto& op : ops->value().as_array()) verify = verify || (op.is_string() && op.as_string() == "verify");
    if (!verify) throw Skip{"`key_ops` does not allow \"verify\""};
  }
  std::optional<JwsAlg> alg;
  if (!alg_name.empty()) {
    alg = jws_alg_from_string(alg_name);
    if (!alg) throw Skip{"unsupported alg \"" + alg_name.substr(0, 16) + "\""};
  }
  if (kty == "oct") {
    if (!alg) alg = options.default_alg;
    if (!alg || !is_hmac(*alg)) throw Skip{"an oct key needs alg HS256, HS384 or HS512"};
    std::string k = b64_member(jwk, "k");
    if (k.size() < static_cast<std::size_t>(EVP_MD_get_size(digest_of(*alg)))) {
      security::secure_wipe(k);
      throw Skip{"HMAC key shorter than the hash output"};
    }
    key->hmac = Secret::take(k);
  } else if (kty == "RSA") {
    if (!alg) alg = options.default_alg;
    if (!alg || !is_rsa(*alg)) throw Skip{"an RSA key needs alg RS256/384/512 or PS256/384/512"};
    key->pkey = rsa_key(jwk);
  } else if (kty == "EC") {
    const std::string crv = string_member(jwk, "crv");
    const Curve* curve = nullptr;
    for (const auto& c : kCurves)
      if (c.jwk_name == crv) curve = &c;
    if (!curve) throw Skip{"unsupported EC curve"};
    if (alg && *alg != curve->alg) throw Skip{"alg does not match the curve"};
    alg = curve->alg;
    key->pkey = ec_key(jwk, *curve);
  } else if (kty == "OKP") {
    if (string_member(jwk, "crv") != "Ed25519") throw Skip{"unsupported OKP curve (want Ed25519)"};
    if (alg && *alg != JwsAlg::EdDSA) throw Skip{"alg does not match Ed25519"};
    alg = JwsAlg::EdDSA;
    key->pkey = ed25519_key(jwk);
  } else {
    throw Skip{"unsupported kty"};
  }
  key->alg = *alg;
  key->kid = string_member(jwk, "kid");
  return key;
}

}  // namespace

std::string_view to_string(JwsAlg alg) { return kAlgNames[static_cast<int>(alg)]; }

std::optional<JwsAlg> jws_alg_from_string(std::string_view name) {
  for (std::size_t i = 0; i < kAlgNames.size(); ++i)
    if (kAlgNames[i] == name) return static_cast<JwsAlg>(i);
  return std::nullopt;
}

std::shared_ptr<JwkSet> JwkSet::parse(std::string_view json, std::string_view source,
                                      const JwtOptions& options) {
  boost::system::error_code ec;
  boost::json::value doc = boost::json::parse(json, ec);
  if (ec || !doc.is_object())
    throw InvalidArgument("JWKS " + std::string(source) + " is not a JSON object");
  auto set = std::make_shared<JwkSet>();
  std::vector<const boost::json::object*> jwks;
  const auto& root = doc.as_object();
  if (auto it = root.find("keys"); it != root.end()) {
    if (!it->value().is_array()) throw InvalidArgument("JWKS " + std::string(source) + ": `keys` is not an array");
    for (const auto& k : it->value().as_array()) {
      if (!k.is_object()) throw InvalidArgument("JWKS " + std::string(source) + ": a key is not an object");
      jwks.push_back(&k.as_object());
    }
  } else {
    jwks.push_back(&root);
  }
  std::set<std::string> kids;
  for (std::size_t i = 0; i < jwks.size(); ++i) {
    try {
      auto key = make_key(*jwks[i], options);
      if (!kids.insert(key->kid).second)
        throw InvalidArgument("JWKS " + std::string(source) + ": two keys have the same kid");
      set->keys_.push_back(std::move(key));
    } catch (const Skip& s) {
      set->skipped_.push_back("key " + std::to_string(i) + ": " + s.why);
      core::log(core::LogLevel::warn, "jwt",
                "JWKS " + std::string(source) + ": skipping key " + std::to_string(i) + ": " + s.why);
    }
  }
  return set;
}

const JwkSet::Key* JwkSet::find(const std::string* kid) const {
  if (!kid) return keys_.size() == 1 ? keys_.front().get() : nullptr;
  for (const auto& k : keys_)
    if (!k->kid.empty() && k->kid == *kid) return k.get();
  return nullptr;
}

bool JwkSet::verify(const Key& key, std::string_view input, std::string_view signature) {
  const EVP_MD* md = digest_of(key.alg);
  if (is_hmac(key.alg)) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    std::size_t len = 0;
    const char* name = EVP_MD_get0_name(md);
    if (!EVP_Q_mac(nullptr, "HMAC", nullptr, name, nullptr, key.hmac.reveal().data(),
                   key.hmac.size(), reinterpret_cast<const unsigned char*>(input.data()),
                   input.size(), mac, sizeof mac, &len)) {
      ERR_clear_error();
      return false;
    }
    bool ok = signature.size() == len && CRYPTO_memcmp(mac, signature.data(), len) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return ok;
  }
  std::string der;
  if (key.alg == JwsAlg::ES256 || key.alg == JwsAlg::ES384 || key.alg == JwsAlg::ES512) {
    std::size_t coord = key.alg == JwsAlg::ES256 ? 32 : key.alg == JwsAlg::ES384 ? 48 : 66;
    if (signature.size() != 2 * coord) return false;
    auto* data = reinterpret_cast<const unsigned char*>(signature.data());
    BIGNUM* r = BN_bin2bn(data, static_cast<int>(coord), nullptr);
    BIGNUM* s = BN_bin2bn(data + coord, static_cast<int>(coord), nullptr);
    ECDSA_SIG* sig = ECDSA_SIG_new();
    if (!r || !s || !sig || ECDSA_SIG_set0(sig, r, s) != 1) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(sig);
      return false;
    }
    unsigned char* out = nullptr;
    int n = i2d_ECDSA_SIG(sig, &out);
    ECDSA_SIG_free(sig);
    if (n <= 0) return false;
    der.assign(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
    OPENSSL_free(out);
    signature = der;
  } else if (is_rsa(key.alg)) {
    if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.pkey.get()))) return false;
  } else if (key.alg == JwsAlg::EdDSA) {
    if (signature.size() != 64) return false;
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, key.pkey.get()) != 1) {
    ERR_clear_error();
    return false;
  }
  if (is_rsa(key.alg)) {
    bool ok = is_pss(key.alg)
                  ? EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
                        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1
                  : EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
    if (!ok) {
      ERR_clear_error();
      return false;
    }
  }
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(input.data()),
                            input.size());
  ERR_clear_error();
  return rc == 1;
}

}  // namespace asyncmq

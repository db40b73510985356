// JwtVerifier (see include/asyncmq/identity.hpp): compact JWS parsing with
// strict base64url, the pinned-algorithm check, signature verification by
// JwkSet, then the registered claims.
//
// Order matters: nothing in the payload is looked at before the signature
// verifies, and the header is used only to pick the key (kid) and to check
// that its alg is the key's pinned one. Header members that would fetch or
// carry keys (jku, x5u, x5c, jwk) are never read.
#include "core/log.hpp"
#include "security/jose.hpp"
#include "security/jwks.hpp"
#include "security/policy_internal.hpp"

#include <asyncmq/identity.hpp>

#include <boost/json.hpp>

#include <cmath>
#include <mutex>

namespace asyncmq {

namespace {

// A kid or claim value shown in an error: printable ASCII, at most 64
// characters. It is the caller's own input, never a secret.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) out += "...";
  return out;
}

[[noreturn]] void refuse(const std::string& why) { throw Unauthenticated("token refused: " + why); }

boost::json::object parse_object(std::string_view text, const char* what) {
  boost::system::error_code ec;
  boost::json::parse_options po;
  po.max_depth = 16;
  boost::json::value v = boost::json::parse(text, ec, {}, po);
  if (ec || !v.is_object()) refuse(std::string(what) + " is not a JSON object");
  return std::move(v.as_object());
}

std::optional<double> numeric(const boost::json::object& o, const char* name) {
  auto it = o.find(name);
  if (it == o.end()) return std::nullopt;
  const auto& v = it->value();
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  if (v.is_double() && std::isfinite(v.as_double())) return v.as_double();
  refuse(std::string("`") + name + "` is not a number");
}

}  // namespace

struct JwtVerifier::Impl {
  Env& env;
  JwtOptions options;
  std::filesystem::path file;  // empty: fixed keys
  mutable std::mutex mu;
  mutable std::shared_ptr<const JwkSet> keys;  // GUARDED_BY(mu)
  mutable security::FileStamp stamp;           // GUARDED_BY(mu)
  mutable security::FileStamp failed;          // GUARDED_BY(mu)

  Impl(Env& e, JwtOptions o) : env(e), options(std::move(o)) {}

  std::shared_ptr<const JwkSet> load() const {
    return JwkSet::parse(security::read_text_file(file, "JWKS file"), file.string(), options);
  }

  // The current keys; re-reads the file when it changed.
  std::shared_ptr<const JwkSet> current() const {
    std::lock_guard lock(mu);
    if (file.empty()) return keys;
    auto now = security::stamp_of(file);
    if (now == stamp || now == failed) return keys;
    try {
      keys = load();
      stamp = now;
      core::log(core::LogLevel::info, "jwt",
                "reloaded JWKS " + file.string() + ": " + std::to_string(keys->size()) + " keys");
    } catch (const std::exception& e) {
      failed = now;
      core::log(core::LogLevel::error, "jwt",
                std::string("keeping the previous keys; the changed JWKS file is bad: ") + e.what());
    }
    return keys;
  }
};

JwtVerifier::JwtVerifier(std::filesystem::path jwks_file, Env& env, JwtOptions options)
    : impl_(std::make_unique<Impl>(env, std::move(options))) {
  impl_->file = std::move(jwks_file);
  impl_->stamp = security::stamp_of(impl_->file);
  impl_->keys = impl_->load();
}

JwtVerifier::JwtVerifier(std::shared_ptr<const JwkSet> keys, Env& env, JwtOptions options)
    : impl_(std::make_unique<Impl>(env, std::move(options))) {
  if (!keys) throw InvalidArgument("JwtVerifier needs a key set");
  impl_->keys = std::move(keys);
}

JwtVerifier::~JwtVerifier() = default;

void JwtVerifier::reload() {
  if (impl_->file.empty()) return;
  auto stamp = security::stamp_of(impl_->file);
  auto keys = impl_->load();
  std::lock_guard lock(impl_->mu);
  impl_->keys = std::move(keys);
  impl_->stamp = stamp;
}

std::size_t JwtVerifier::key_count() const { return impl_->current()->size(); }

JwtVerifier::Jws JwtVerifier::verify_jws(std::string_view compact) const {
  if (compact.size() > impl_->options.max_token_bytes)
    refuse("longer than " + std::to_string(impl_->options.max_token_bytes) + " bytes");
  if (!compact.empty() && compact.front() == '{')
    refuse("JSON serialization is not accepted (compact only)");
  const std::size_t d1 = compact.find('.');
  const std::size_t d2 = d1 == std::string_view::npos ? d1 : compact.find('.', d1 + 1);
  if (d2 == std::string_view::npos || compact.find('.', d2 + 1) != std::string_view::npos)
    refuse("not a compact JWS (want three base64url parts separated by '.')");
  const std::string_view h64 = compact.substr(0, d1);
  const std::string_view p64 = compact.substr(d1 + 1, d2 - d1 - 1);
  const std::string_view s64 = compact.substr(d2 + 1);
  auto header_text = security::base64url_decode(h64);
  if (!header_text || header_text->empty()) refuse("the header is not strict base64url");
  auto payload = security::base64url_decode(p64);
  if (!payload) refuse("the payload is not strict base64url");
  auto signature = security::base64url_decode(s64);
  if (!signature) refuse("the signature is not strict base64url");

  boost::json::object header = parse_object(*header_text, "the header");
  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->value().is_string()) refuse("the header has no `alg`");
  const std::string alg_name(alg_it->value().as_string());
  std::string lower;
  for (char c : alg_name) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (lower == "none") refuse("alg 'none' is never accepted");
  auto alg = jws_alg_from_string(alg_name);
  if (!alg) refuse("unsupported alg '" + shown(alg_name) + "'");
  if (header.contains("crit")) refuse("the header has `crit` extensions, which are not supported");
  std::optional<std::string> kid;
  if (auto it = header.find("kid"); it != header.end()) {
    if (!it->value().is_string()) refuse("`kid` is not a string");
    kid = std::string(it->value().as_string());
  }

  auto keys = impl_->current();
  // kid is only ever compared with the key set's kids, as an opaque string.
  const JwkSet::Key* key = keys->find(kid ? &*kid : nullptr);
  if (!key) {
    if (kid) refuse("unknown kid '" + shown(*kid) + "' (no such key in the JWKS)");
    refuse("the token has no kid and the JWKS does not have exactly one key");
  }
  if (key->alg != *alg)
    refuse("alg " + alg_name + " is not the algorithm pinned for key '" + shown(key->kid) + "' (" +
           std::string(to_string(key->alg)) + ")");
  const std::string_view signing_input = compact.substr(0, d2);
  if (!JwkSet::verify(*key, signing_input, *signature)) refuse("bad signature");
  Jws out;
  out.header_json = std::move(*header_text);
  out.payload = std::move(*payload);
  out.kid = key->kid;
  out.alg = key->alg;
  return out;
}

Principal JwtVerifier::verify(std::string_view token) const {
  Jws jws = verify_jws(token);
  const JwtOptions& o = impl_->options;
  boost::json::object claims = parse_object(jws.payload, "the claims");
  const double now = static_cast<double>(impl_->env.now_ms()) / 1000.0;
  const double leeway = static_cast<double>(o.leeway_s);
  auto exp = numeric(claims, "exp");
  if (!exp) refuse("no `exp` (expiry) claim");
  if (now > *exp + leeway) refuse("expired");
  if (auto nbf = numeric(claims, "nbf"); nbf && now + leeway < *nbf) refuse("not valid yet (nbf)");
  if (!o.issuer.empty()) {
    auto it = claims.find("iss");
    if (it == claims.end() || !it->value().is_string() || it->value().as_string() != o.issuer)
      refuse("wrong or missing issuer (iss)");
  }
  if (auto it = claims.find("aud"); it != claims.end()) {
    std::vector<std::string_view> auds;
    if (it->value().is_string()) {
      auds.push_back(it->value().as_string());
    } else if (it->value().is_array()) {
      for (const auto& a : it->value().as_array()) {
        if (!a.is_string()) refuse("`aud` holds a non-string");
        auds.push_back(a.as_string());
      }
    } else {
      refuse("`aud` is neither a string nor an array");
    }
    bool ok = false;
    for (auto a : auds)
      for (const auto& want : o.audiences) ok = ok || a == want;
    if (!ok) refuse(o.audiences.empty() ? "the token has an audience (aud) and none is configured"
                                        : "wrong audience (aud)");
  } else if (!o.audiences.empty()) {
    refuse("no audience (aud) claim");
  }
  auto name_it = claims.find(o.name_claim);
  if (name_it == claims.end() || !name_it->value().is_string() ||
      name_it->value().as_string().empty())
    refuse("no `" + o.name_claim + "` claim to name the principal");
  std::string_view name = name_it->value().as_string();
  if (name.size() > 256) refuse("the principal name is longer than 256 characters");
  for (char c : name)
    if (c < 0x21 || c > 0x7e) refuse("the principal name has characters outside printable ASCII");

  Principal p;
  p.kind = "jwt";
  p.name = std::string(name);
  for (const auto& [k, v] : claims) {
    if (v.is_string()) {
      p.claims[std::string(k)].push_back(std::string(v.as_string()));
    } else if (v.is_array()) {
      std::vector<std::string> values;
      for (const auto& e : v.as_array())
        if (e.is_string()) values.push_back(std::string(e.as_string()));
      if (!values.empty()) p.claims[std::string(k)] = std::move(values);
    }
  }
  return p;
}

}  // namespace asyncmq

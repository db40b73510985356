// Identity and policy: who is calling (a Principal, from an API key, a JWT
// or a TLS client certificate) and what that principal may do to which
// queue (a Policy of roles per queue pattern), enforced by a Client that
// carries the principal.
//
//   auto keys = asyncmq::ApiKeyStore::open("/etc/asyncmq/api-keys.json");
//   auto who = keys->authenticate(key_from_the_caller);      // or a JwtVerifier
//   auto policy = asyncmq::Policy::load_file("/etc/asyncmq/policy.toml");
//   asyncmq::ClientOptions o;
//   o.principal = std::make_shared<asyncmq::Principal>(who);
//   o.policy = policy;
//   auto client = asyncmq::Client::open(uri, env, o);        // every call checked
//
// Principals. A principal is a kind ("apikey", "jwt", "mtls") and a name;
// its id, "<kind>:<name>", is what policies match and what denials, logs and
// audit records name. It never holds the credential it came from.
//
// Errors: errc::unauthenticated (a credential that is unknown, malformed,
// expired, revoked or badly signed: Unauthenticated), errc::permission_denied
// (a principal the policy does not allow: PermissionDenied). Messages name
// the principal, key id or kid, never a key, token or secret.
#pragma once

#include <asyncmq/env.hpp>
#include <asyncmq/error.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct x509_st;  // OpenSSL's X509

namespace asyncmq {

class Secret;

// ---- principals ----------------------------------------------------------

// Who is calling. A value type; immutable once made.
struct Principal {
  std::string kind;  // "apikey", "jwt", "mtls"
  std::string name;  // the API key's name, the JWT's `sub`, the mapped certificate name
  // What the credential says about the caller, for policies that match on
  // it: a JWT's string claims and string-array claims (each element a
  // value), an API key's "role_hint". Never secrets.
  std::map<std::string, std::vector<std::string>, std::less<>> claims;

  // "<kind>:<name>", e.g. "apikey:ci-producer" or "jwt:alice".
  std::string id() const { return kind + ":" + name; }
};

// A credential was refused: unknown, malformed, expired, revoked or badly
// signed. errc::unauthenticated.
class Unauthenticated : public Error {
 public:
  explicit Unauthenticated(const std::string& what) : Error(errc::unauthenticated, what) {}
};

// ---- API keys -------------------------------------------------------------

// What is known about one API key. Never the key, never its hash.
struct ApiKeyInfo {
  std::string id;          // "k" + 16 hex characters; stable, shown by list, used by revoke
  std::string name;        // principal name: 1..128 of [A-Za-z0-9._:-]
  std::string role_hint;   // free text for the policy author (a claim; grants nothing)
  std::int64_t created_ms = 0;
  std::int64_t expires_ms = 0;    // 0: never
  std::int64_t last_used_ms = 0;  // 0: never used
  bool revoked = false;
};

// A key just made. `key` is shown to the user once and then forgotten: the
// store keeps only its SHA-256.
struct NewApiKey {
  ApiKeyInfo info;
  std::string key;  // "amq_" + 43 base64url characters (32 bytes from RAND_bytes)
};

// API keys in a JSON file holding, per key, its SHA-256 (hex), name, id,
// role hint, creation, expiry, last use and revocation. Format:
//   {"version":1,"keys":[{"id":"k0123456789abcdef","name":"ci","sha256":"<hex>",
//     "role_hint":"producer","created_ms":..,"expires_ms":0,"last_used_ms":0,
//     "revoked":false}]}
// Every change rewrites the file atomically (a temporary file with mode 0600
// in the same directory, fsync, rename) under an exclusive lock on
// "<file>.lock", so concurrent processes never lose each other's changes.
// Reading refuses, like the keyring, a file that group or others may read or
// write, a file not owned by the current user, a symbolic link and anything
// but a regular file (errc::permission_denied / invalid_argument). A missing
// file is an empty store; it is created on the first create().
//
// Lookup hashes the presented key with SHA-256 and compares it with every
// stored hash with CRYPTO_memcmp (no early exit on a match), so neither the
// key nor which entry matched leaks through timing.
//
// Thread safety: every method is safe concurrently (and across processes).
// Lifetime: shared; the Env must outlive it.
class ApiKeyStore {
 public:
  static std::shared_ptr<ApiKeyStore> open(std::filesystem::path file, Env& env = Env::system());

  // Makes a key. `ttl_ms` 0: never expires. Throws InvalidArgument for a bad
  // name or ttl, Conflict if an unrevoked key already has this name.
  NewApiKey create(const std::string& name, const std::string& role_hint, std::int64_t ttl_ms);
  std::vector<ApiKeyInfo> list() const;  // by creation
  // Revokes by id. Throws NotFound. Revoking twice is not an error.
  void revoke(const std::string& id);
  // Returns the key's principal (kind "apikey") and records the use time.
  // Throws Unauthenticated for a malformed, unknown, revoked or expired key;
  // the message names the key's id and name when known, never the key.
  Principal authenticate(std::string_view key);

  const std::filesystem::path& file() const { return file_; }

  ApiKeyStore(std::filesystem::path file, Env& env);  // use open()

 private:
  std::filesystem::path file_;
  Env& env_;
};

// Parses a duration such as "90s", "15m", "12h", "30d" or "0" (never) into
// milliseconds. Throws InvalidArgument.
std::int64_t parse_duration_ms(std::string_view text);

// ---- JWT --------------------------------------------------------------------

// The JWS algorithms asyncmq verifies. `none` is not one of them and never
// will be.
enum class JwsAlg {
  HS256, HS384, HS512,  // HMAC; only with "oct" keys
  RS256, RS384, RS512,  // RSASSA-PKCS1-v1_5; RSA keys of 2048 bits or more
  PS256, PS384, PS512,  // RSASSA-PSS, MGF1 with the same hash, salt = hash length
  ES256, ES384, ES512,  // ECDSA on P-256 / P-384 / P-521, JOSE raw r||s
  EdDSA,                // Ed25519
};
std::string_view to_string(JwsAlg alg);
std::optional<JwsAlg> jws_alg_from_string(std::string_view name);

class JwkSet;  // a parsed JWKS; see src/security/jwks.hpp

struct JwtOptions {
  // Required `iss`, when non-empty.
  std::string issuer;
  // Accepted audiences: the token's `aud` (string or array) must contain one
  // of them. With none configured, a token that has an `aud` is refused
  // (RFC 7519 4.1.3: a recipient that does not identify itself with it).
  std::vector<std::string> audiences;
  // Clock skew allowed on `exp` and `nbf`, seconds.
  std::int64_t leeway_s = 60;
  // The claim giving the principal's name.
  std::string name_claim = "sub";
  // Tokens longer than this are refused before any parsing.
  std::size_t max_token_bytes = 16 * 1024;
  // Algorithm for a JWKS key that has no `alg` and whose type does not imply
  // one (RSA, oct). Empty: such keys are not loaded. EC and OKP keys imply
  // theirs from the curve.
  std::optional<JwsAlg> default_alg;
};

// Verifies compact-serialised JWS/JWTs with keys from a JWKS file.
//
// The algorithm is pinned per key (the JWK's `alg`, or implied by its curve,
// or JwtOptions::default_alg) and the token's `alg` header must equal it:
// the token never chooses. An "oct" key only ever verifies HMAC and an
// RSA/EC/OKP key never does, so HMAC keyed with a public key cannot happen.
// `alg: none` is refused by name. `kid` is an opaque string looked up in
// the key set (never used to build a path, URL or query); `jku`, `x5u`,
// `x5c` and embedded `jwk` headers are ignored; a `crit` header is refused
// (no extension is understood). Base64url is strict: no padding, no
// characters outside the alphabet, no non-zero trailing bits.
//
// The JWKS file reloads itself: each verify stats it and re-reads it when
// its inode, size, mtime or ctime changed (a bad new file keeps the old keys
// and logs an error). Keys with `use` other than "sig", or `key_ops`
// without "verify", or that cannot be used, are skipped with a warning.
//
// Time comes from the Env (exp, nbf).
// Thread safety: every method is safe concurrently.
class JwtVerifier {
 public:
  // Keys from a file, reloaded on change. Throws for a missing or malformed
  // file (NotFound / InvalidArgument).
  JwtVerifier(std::filesystem::path jwks_file, Env& env, JwtOptions options = {});
  // Keys given directly (no reloading), e.g. from JwkSet::parse.
  JwtVerifier(std::shared_ptr<const JwkSet> keys, Env& env, JwtOptions options = {});
  ~JwtVerifier();

  struct Jws {
    std::string header_json;
    std::string payload;  // the verified bytes
    std::string kid;
    JwsAlg alg;
  };
  // Verifies the signature only (no claims). Throws Unauthenticated.
  Jws verify_jws(std::string_view compact) const;

  // Verifies the signature and the claims (exp required; nbf, iss, aud) and
  // returns the principal (kind "jwt", name from name_claim). Throws
  // Unauthenticated naming the check that failed.
  Principal verify(std::string_view token) const;

  // Re-reads the JWKS file now (throws if it is bad; the old keys stay).
  void reload();
  std::size_t key_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- TLS client certificates -------------------------------------------

// Maps a client certificate that the TLS layer already verified to a
// principal (kind "mtls"). Rules are tried in order; the first whose field
// has a value matching `pattern` (a glob: `*` any run of characters, `?`
// one) wins. The principal's name is `principal` if set, else the matched
// value itself.
struct CertRule {
  enum class Field { subject_cn, san_dns, san_uri, san_email };
  Field field = Field::subject_cn;
  std::string pattern;
  std::string principal;
};

// Thread safety: immutable; safe concurrently.
class CertMapper {
 public:
  explicit CertMapper(std::vector<CertRule> rules);
  // REQUIRES: the certificate passed TLS verification. Throws
  // Unauthenticated when no rule matches.
  Principal map(const x509_st* certificate) const;
  // The same from a PEM text (tests, tools). Throws InvalidArgument for bad PEM.
  Principal map_pem(std::string_view pem) const;

 private:
  std::vector<CertRule> rules_;
};

// ---- policy ------------------------------------------------------------------

// What a principal can ask for. Each backend call maps to one of these (see
// src/security/policy_backend.hpp).
enum class Action {
  add,        // enqueue
  claim, complete, fail, heartbeat,
  pause, resume, retry, clean, cancel, remove,
  read,       // get, list, counts, queues, is_paused
  keys, apikeys, purge, audit,
};
inline constexpr int kActionCount = 16;
std::string_view to_string(Action a);
std::optional<Action> action_from_string(std::string_view name);

// producer: add. worker: claim, complete, fail, heartbeat. operator: pause,
// resume, retry, clean, cancel, remove, and read (payloads redacted).
// viewer: read (payloads redacted). admin: everything, payloads shown.
enum class Role { producer, worker, operator_, viewer, admin };
inline constexpr int kRoleCount = 5;
std::string_view to_string(Role r);
std::optional<Role> role_from_string(std::string_view name);
bool role_allows(Role r, Action a);

// A denied call, for observers (audit) and logs. No credential in it.
struct Denial {
  std::string principal;  // Principal::id()
  Action action;
  std::string queue;      // "*" for calls that are not about one queue
  std::int64_t time_ms = 0;
};

// The principal may not do this. errc::permission_denied. The message names
// principal, action and queue.
class PermissionDenied : public Error {
 public:
  explicit PermissionDenied(const std::string& what) : Error(errc::permission_denied, what) {}
};

// The replacement for payload, result, error, progress and log lines in what
// a redacted reader sees.
inline constexpr std::string_view kRedacted = "\"[redacted]\"";

struct PolicyOptions {
  // How stale a file-backed policy may be: the file is stat'ed at most once
  // per this much Env time. 0: on every check.
  std::int64_t recheck_ms = 1000;
};

// Roles per queue pattern for principals; deny by default.
//
// File format (TOML):
//
//   # who may do what; anything not granted is denied
//   [[grant]]
//   principal = "apikey:billing-*"   # glob over Principal::id()
//   roles = ["producer"]
//   queues = ["billing.*"]           # globs over queue names
//
//   [[grant]]
//   claims = { groups = "ops" }      # every listed claim must have this value
//   roles = ["operator", "viewer"]
//   queues = ["*"]
//
// A grant applies to a principal when its `principal` glob matches the id
// (if given) and every `claims` entry is among the principal's values for
// that claim (if given); a grant with neither is refused at load. Queue
// globs: `*` any run of characters, `?` one. Unknown keys, roles or types
// are load errors naming the line.
//
// Live reload: a policy loaded from a file stats it at most every
// `recheck_ms` of Env time (0: on every check) and reloads when its inode,
// size, mtime or ctime changed. A new file that does not parse keeps the old
// rules and logs an error; reload() instead throws.
//
// Denials: check() throws PermissionDenied, raises the process-wide
// denials() counter, logs one line (component "policy") and calls every
// observer registered with on_denial, in registration order, on the denying
// thread, after the counter and before the throw. An observer that throws is
// logged and ignored. The audit trail registers one to record denied
// attempts; the metrics endpoint exports denials().
//
// Thread safety: every method is safe concurrently; a check reads an
// immutable snapshot of the rules. Lifetime: shared; the Env must outlive it.
class Policy {
 public:
  using Options = PolicyOptions;

  static std::shared_ptr<Policy> parse(std::string_view toml, std::string_view source,
                                       Env& env = Env::system());
  static std::shared_ptr<Policy> load_file(const std::filesystem::path& file,
                                           Env& env = Env::system(), Options options = {});
  ~Policy();

  // Whether `who` may do `action` on `queue`. No side effects.
  bool allowed(const Principal& who, Action action, std::string_view queue) const;
  // Whether `who` may do `action` on some queue (for calls that span queues).
  bool allowed_anywhere(const Principal& who, Action action) const;
  // Whether `who` reading `queue` sees payloads redacted (not admin there).
  bool redacted(const Principal& who, std::string_view queue) const;
  // allowed(), or deny: counter, log line, observers, PermissionDenied.
  void check(const Principal& who, Action action, std::string_view queue) const;
  // Reports a denial decided elsewhere (counter, log, observers) and
  // returns the error to throw.
  PermissionDenied deny(const Principal& who, Action action, std::string_view queue) const;

  void on_denial(std::function<void(const Denial&)> observer);
  // Re-reads the file now. Throws on a bad file (the old rules stay).
  void reload();
  std::size_t grant_count() const;
  // Changes whenever the rules that answer change (reload(), or a changed
  // file seen by the recheck, which this call runs like a check does). A
  // caller that keeps decisions keeps them only while it stays the same:
  // read it before deciding, so that a decision is never newer than the
  // number it is kept under.
  std::uint64_t generation() const;

  // Denials in this process, all policies together.
  static std::uint64_t denials();

  struct Rules;
  Policy(std::shared_ptr<const Rules> rules, std::filesystem::path file, Env& env,
         Options options);  // use parse() or load_file()

 private:
  std::shared_ptr<const Rules> rules() const;
  // Reloads a changed file once the recheck interval passed. REQUIRES: mu_.
  void refresh_locked() const;

  mutable std::mutex mu_;
  mutable std::shared_ptr<const Rules> rules_;  // GUARDED_BY(mu_)
  mutable std::int64_t next_check_ms_ = 0;      // GUARDED_BY(mu_)
  mutable std::shared_ptr<const Rules> failed_;  // GUARDED_BY(mu_): the stamp of a bad file
  mutable std::uint64_t generation_ = 0;        // GUARDED_BY(mu_): rules_ replaced so often
  std::vector<std::function<void(const Denial&)>> observers_;  // GUARDED_BY(mu_)
  std::filesystem::path file_;
  Env& env_;
  Options options_;
};

}  // namespace asyncmq

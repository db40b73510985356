// Data protection at the codec seam: a keyring of AES-256 keys and a codec
// that seals every payload, result and error with AES-256-GCM before it
// reaches any backend.
//
//   auto keys = asyncmq::Keyring::load_file("/etc/asyncmq/keys");
//   asyncmq::ClientOptions o;
//   o.codec = asyncmq::make_sealing_codec(keys);
//   auto client = asyncmq::Client::open("sqlite:///var/lib/asyncmq.db", env, o);
//
// Key file format (also the format of the ASYNCMQ_KEYS environment
// variable): one key per line, `<id> <role> <base64 of 32 bytes>`, fields
// separated by spaces or tabs; blank lines and lines starting with `#` are
// ignored. <id> is 1..64 characters from [A-Za-z0-9._-]. <role> is one of
//   primary       seals new data and opens old data (exactly one per ring
//                 for sealing)
//   decrypt-only  opens data sealed under it, never seals (after rotation)
//   disabled      refused for both (a retired or compromised key)
//   index         the key of the blind index for data subjects (at most one;
//                 never used for sealing)
// A line may end with a fourth field `created=<ms since the epoch>`
// (written by `asyncmq keys add`; informational).
// Make a key with `openssl rand -base64 32`. In the environment variable,
// lines may also be separated by `;`.
//
// Thread safety: Keyring and the sealing codec are safe for concurrent use.
// Errors: KeyFileError for a missing, unsafe or malformed key source;
// IntegrityError when sealed data fails to open.
#pragma once

#include <asyncmq/codec.hpp>
#include <asyncmq/error.hpp>

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncmq {

namespace security {
struct KeyringAccess;  // the sealing codec's view of a Keyring (private)
}

// Bytes that must never be printed: key material, passwords, tokens.
// There is no operator<<, no conversion to a string or string_view, no
// copying; the bytes are reached only through the explicit `reveal()`, and
// are wiped (OPENSSL_cleanse) when the Secret is destroyed or assigned over.
// Thread safety: a value type; const methods are safe concurrently.
class Secret {
 public:
  Secret() = default;
  // Copies `bytes`. The caller wipes its own copy (see take()).
  explicit Secret(std::string_view bytes);
  // Moves `bytes` into a Secret and wipes the source string.
  static Secret take(std::string& bytes);
  ~Secret();
  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // The raw bytes, for handing to a cipher. Never log, print, or put them
  // into an error, event or output.
  std::string_view reveal() const noexcept {
    return {reinterpret_cast<const char*>(data_.get()), size_};
  }

  operator std::string() const = delete;
  operator std::string_view() const = delete;
  operator const char*() const = delete;
  operator bool() const = delete;
  friend std::ostream& operator<<(std::ostream&, const Secret&) = delete;
  // GoogleTest prints objects without operator<< as raw bytes; print a mask.
  friend void PrintTo(const Secret&, std::ostream* os);

 private:
  void wipe() noexcept;
  std::unique_ptr<unsigned char[]> data_;
  std::size_t size_ = 0;
};

enum class KeyState : std::uint8_t { primary, decrypt_only, disabled };
std::string_view to_string(KeyState s);

// A key source (file or environment variable) that is missing, unsafe or
// malformed. Messages name the source, the line and the problem, never key
// bytes. errc::permission_denied for an unsafe file mode or owner,
// errc::not_found for a missing source, errc::invalid_argument otherwise.
class KeyFileError : public Error {
 public:
  KeyFileError(errc code, const std::string& what) : Error(code, what) {}
};

struct KeyringOptions {
  // A key that has sealed this many messages logs a warning once, to prompt
  // a rotation. NIST SP 800-38D limits one key to 2^32 messages with random
  // 96-bit nonces (nonce collision probability about 2^-32 at that point);
  // 2^28 leaves a wide margin, and the count is per process (restarts and
  // other processes are not counted), so warn early.
  std::uint64_t warn_after_messages = std::uint64_t{1} << 28;
  // At this many messages from this process, sealing refuses (Error with
  // errc::conflict) until another key is made primary.
  std::uint64_t refuse_after_messages = std::uint64_t{1} << 32;
};

struct KeyInfo {
  std::string id;
  KeyState state;
  std::uint64_t messages_sealed;  // by this process
  // When the key was made (the key file's optional `created=` field, set by
  // `asyncmq keys add`), ms since the epoch; 0 if unknown.
  std::int64_t created_ms = 0;
};

// Named AES-256 keys with ids and states, plus an optional blind-index key.
// Key bytes are held as Secret (wiped on destruction) and shared with the
// codec by reference count, so a key in use by a concurrent seal outlives a
// state change. Lifetime: shared (std::shared_ptr) with the codecs made
// from it. Thread safety: every method is safe concurrently.
class Keyring {
 public:
  explicit Keyring(KeyringOptions options = {});
  ~Keyring();
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;

  // Loads a key file (format above). Refuses, like ssh with a private key, a
  // file that group or others may read or write (mode & 077), a file not
  // owned by the current user, and anything but a regular file.
  static std::shared_ptr<Keyring> load_file(const std::filesystem::path& path,
                                            KeyringOptions options = {});
  // Loads keys from an environment variable (default ASYNCMQ_KEYS).
  static std::shared_ptr<Keyring> load_env(const char* variable = "ASYNCMQ_KEYS",
                                           KeyringOptions options = {});
  // Parses key-file text; `source` names it in error messages.
  static std::shared_ptr<Keyring> parse(std::string_view text, std::string_view source,
                                        KeyringOptions options = {});

  // Adds a 32-byte key. A new primary demotes the old one to decrypt-only.
  // Throws InvalidArgument for a bad id or size, Conflict for a duplicate id.
  void add(std::string id, KeyState state, Secret key);
  // Sets the blind-index key (32 bytes). Throws InvalidArgument.
  void set_index_key(std::string id, Secret key);
  // Rotation: makes `id` primary; the old primary becomes decrypt-only.
  // Throws NotFound.
  void activate(const std::string& id);
  // Sets a key's state (primary as activate). Throws NotFound.
  void set_state(const std::string& id, KeyState state);

  // Reloading without a restart (SIGHUP, a changed key file): reads the
  // source this ring was loaded from again (load_file: the same path, with
  // the same checks; load_env: the same variable) and, only if all of it is
  // valid, replaces every key, state and the index key at once. Message
  // counters carry over for keys whose id and bytes are unchanged. On any
  // error the ring is left exactly as it was and the error (KeyFileError,
  // never holding key bytes) is thrown. A ring made by parse() or by hand
  // has no source: reload throws KeyFileError(errc::not_found).
  void reload();
  // The key file this ring was loaded from; empty if not loaded from a file.
  std::filesystem::path source_file() const;

  std::vector<KeyInfo> list() const;             // sorted by id, without bytes
  std::string primary_id() const;                // empty if none
  bool has_index_key() const;
  std::uint64_t messages_sealed(const std::string& id) const;  // NotFound
  const KeyringOptions& options() const { return options_; }

 private:
  friend struct security::KeyringAccess;
  struct Impl;
  KeyringOptions options_;
  std::unique_ptr<Impl> impl_;
};

// A Codec that seals with the keyring's primary key (AES-256-GCM, random
// 96-bit nonce) in a versioned envelope, binding queue, job id and field as
// associated data, and opens by the key id in the envelope. Any failure to
// open throws IntegrityError naming the job, field and key id, never the
// content. encode_subject returns the blind index: lowercase hex of
// HMAC-SHA-256(index key, subject); without an index key it throws
// InvalidArgument rather than store a subject in the clear. See
// src/security/sealing_codec.hpp for the envelope layout.
// REQUIRES: keys != nullptr. Sealing throws InvalidArgument if the ring has
// no primary key.
std::shared_ptr<Codec> make_sealing_codec(std::shared_ptr<Keyring> keys);

// Where each data subject's own data key is kept, wrapped (AES-256-GCM)
// under the keyring's primary key, apart from the jobs: crypto-shredding.
// The sealing codec seals every field of a job that has a subject under
// that subject's data key; erasing the subject destroys the key, so copies
// of the jobs elsewhere (backups, a copied database file) can no longer be
// opened, even with the keyring. Keys are named by the subject's blind
// index (64 lowercase hex characters), never by the subject.
// Thread safety: every method is safe concurrently, also across processes
// sharing one directory store.
class SubjectKeyStore {
 public:
  virtual ~SubjectKeyStore() = default;
  // The wrapped key stored for `index`, or nullopt.
  virtual std::optional<std::string> get(std::string_view index) = 0;
  // Stores `wrapped` for `index` unless a key is already stored; returns the
  // key that is stored afterwards (another writer's, if it came first).
  virtual std::string put_if_absent(std::string_view index, std::string_view wrapped) = 0;
  // Replaces the stored key with `wrapped` if it is still `expected`
  // (re-wrapping under a new primary key). Returns whether it did.
  virtual bool replace(std::string_view index, std::string_view expected,
                       std::string_view wrapped) = 0;
  // Destroys the key of `index` (overwriting it first where the medium
  // allows). Returns whether there was one. Durable on return.
  virtual bool destroy(std::string_view index) = 0;
  // The indexes that have a key, sorted.
  virtual std::vector<std::string> list() = 0;
};

// A store of one file per subject (mode 0600) in `dir`, created with mode
// 0700 if missing. Writes are atomic (write, fsync, link or rename) and
// durable; destroy overwrites the file with zeros, fsyncs and unlinks it (a
// copy-on-write or journalling file system may still hold old blocks: the
// bytes there are wrapped under the keyring, so destroying or retiring the
// wrapping key finishes the job). Several processes may share a directory.
// Throws KeyFileError if `dir` cannot be created, is not a directory, or may
// be read by group or others.
std::shared_ptr<SubjectKeyStore> open_subject_key_dir(const std::filesystem::path& dir);
// A store in memory (tests, memory:// backends): lost with the process.
std::shared_ptr<SubjectKeyStore> make_memory_subject_key_store();

// As above, and the jobs of a data subject are sealed under the subject's
// own data key from `subjects` (made on first use: 256 random bits, wrapped
// under the primary key). REQUIRES: keys != nullptr; subjects may be null
// (then subjects' jobs are sealed under the primary key like any other).
std::shared_ptr<Codec> make_sealing_codec(std::shared_ptr<Keyring> keys,
                                          std::shared_ptr<SubjectKeyStore> subjects);


// ---- Guards and redaction -------------------------------------------------
//
// Guards check a payload at the codec seam, before it is sealed and before
// any backend sees it, so every backend gets them for free:
//
//   asyncmq::GuardOptions g;                      // defaults: see GuardLimits
//   asyncmq::GuardRule pay{"payments.*", {}};
//   pay.limits.allow_pan = true;                  // this queue may hold PANs
//   g.rules.push_back(pay);
//   o.codec = asyncmq::make_guarded_codec(asyncmq::make_sealing_codec(keys), g);
//
// Redaction masks secrets in text that leaves the process (log lines, error
// messages, CLI output): configured field names (`"password": "..."`,
// `token=...`), card-like numbers, bearer tokens, JWTs, PEM private keys and
// URI passwords. See src/security/redaction.hpp for the exact rules.

// Limits for one queue. Zero means "no limit" for the numeric ones.
struct GuardLimits {
  // Largest payload in bytes of JSON text. ClientOptions::max_payload_bytes
  // still applies on top (it is checked first, in Queue::add).
  std::size_t max_payload_bytes = 0;
  // Deepest nesting of objects and arrays; a top-level object is depth 1.
  std::size_t max_depth = 32;
  // Most members in any one object (a wide object costs the handler).
  std::size_t max_keys_per_object = 10'000;
  // Most members in all objects of the payload together.
  std::size_t max_keys_total = 100'000;
  // False: refuse any JSON string, number or key holding a card number
  // (PAN): 13 to 19 digits, optionally split by single spaces or dashes,
  // with a card issuer's prefix and length (4 Visa, 51-55/2221-2720
  // Mastercard, 34/37 Amex, 6 Discover/UnionPay, ...; see
  // src/security/guards.hpp), passing the Luhn check, and not glued to
  // letters or digits on either side. A PAN inside a longer run
  // of digit groups is found when it covers whole groups
  // ("4111 1111 1111 1111 123" is refused; a bare 25-digit id is not).
  bool allow_pan = false;
};

// The limits for queues whose name matches `queue_pattern`, a glob where `*`
// matches any run of characters and `?` exactly one.
struct GuardRule {
  std::string queue_pattern;
  GuardLimits limits;
};

// Which limits a queue gets: of the rules whose pattern matches its name,
// the one with the most literal (non-wildcard) characters, the first of
// those if several tie; `defaults` if none matches.
struct GuardOptions {
  GuardLimits defaults;
  std::vector<GuardRule> rules;
  // The limits for `queue` by the rule above.
  const GuardLimits& limits_for(std::string_view queue) const;
};

// A payload refused by a guard. errc::guard_refused, in the invalid-input
// group (the CLI exits 2). The message names the queue, the rule and the
// JSON path (e.g. `$.customer.card`, `$.items[3]`), never the value; a
// key that is itself refused is not spelled out either.
// Thread safety: immutable after construction.
class GuardRefused : public InvalidArgument {
 public:
  GuardRefused(std::string rule, std::string path, const std::string& what)
      : InvalidArgument(what, errc::guard_refused), rule_(std::move(rule)), path_(std::move(path)) {}
  // One of max_payload_bytes, max_depth, max_keys_per_object,
  // max_keys_total, card_number, json (not valid JSON).
  const std::string& rule() const noexcept { return rule_; }
  const std::string& path() const noexcept { return path_; }

 private:
  std::string rule_;
  std::string path_;
};

// Checks `json` (JSON text) against `limits` in one pass over the text,
// without building a document. Throws GuardRefused at the first violation.
// `queue` only names the queue in the message.
void check_payload(const GuardLimits& limits, std::string_view queue, std::string_view json);

// A Codec that checks every payload (Field::payload) with check_payload
// under the queue's limits before passing it to `inner`; results, error
// messages and log lines are not guarded, but error messages and log lines
// (Field::error, Field::log) are redacted (redact_text) before `inner`
// stores them. Decoding is `inner`'s. Lifetime: holds
// `inner`. Thread safety: safe concurrently (the Codec contract).
// REQUIRES: inner != nullptr.
std::shared_ptr<Codec> make_guarded_codec(std::shared_ptr<Codec> inner, GuardOptions options = {});

// The field names redacted by default: password, passwd, secret, token,
// api_key, apikey, authorization, auth, cookie, card, card_number, pan,
// cvv, ssn, iban, private_key and more. Matching is case-insensitive and
// also by suffix (`user_password`, `X-Auth-Token`); names shorter than five
// characters match as a suffix only after `_`, `-`, `.` or a lower-to-upper
// case change (`card` masks `credit_card`, not `discard`).
std::vector<std::string> default_redacted_fields();

struct RedactionOptions {
  // Field names whose values are masked; the defaults plus any you add.
  std::vector<std::string> fields = default_redacted_fields();
  // More patterns to mask: "literal:TEXT" masks TEXT wherever it appears;
  // anything else is an ECMAScript regular expression whose matches are
  // masked. A malformed expression: InvalidArgument naming its index.
  std::vector<std::string> patterns;
};

// Replaces the process's redaction rules (used by logging, the guarded
// codec's error messages and the CLI). Until it is called, the defaults
// apply. Thread safety: safe concurrently with redact_text.
void configure_redaction(const RedactionOptions& options);

// `text` with every secret the current rules find replaced by "****".
// Thread safety: safe concurrently.
std::string redact_text(std::string_view text);

}  // namespace asyncmq

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
#include <string>
#include <string_view>
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

}  // namespace asyncmq

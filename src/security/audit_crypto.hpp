// The audit trail's cryptography on OpenSSL EVP: epoch key derivation
// (HMAC-SHA-256, in crypto.hpp), Ed25519 checkpoint signatures, key ids
// (SHA-256, from jose.hpp), and the two key files. See include/asyncmq/audit.hpp for the scheme.
//
// Thread safety: free functions, safe concurrently. Ed25519Signer is
// immutable after construction and safe concurrently.
// Errors: InvalidArgument for wrong key lengths, Error(backend_failure) for
// an OpenSSL failure; never a key byte in a message.
#pragma once

#include <asyncmq/audit.hpp>
#include <asyncmq/security.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace asyncmq::security {

inline constexpr std::size_t kAuditKeyBytes = 32;
inline constexpr std::size_t kEd25519KeyBytes = 32;
inline constexpr std::size_t kEd25519SigBytes = 64;

// k_0 = HMAC(seed, "asyncmq-audit-epoch0").
Secret audit_epoch0_key(std::string_view seed);
// k_{e+1} = HMAC(k_e, "asyncmq-audit-evolve" || u64be(e)).
Secret audit_evolve_key(std::string_view key, std::uint64_t epoch);
// k_target from the seed (target + 1 HMACs).
Secret audit_key_for_epoch(std::string_view seed, std::uint64_t target);

struct Ed25519KeyPair {
  Secret private_key;      // raw 32 bytes
  std::string public_key;  // raw 32 bytes
};
Ed25519KeyPair ed25519_generate();
std::string ed25519_public_from_private(std::string_view private_key);
// A 64-byte signature of `message`.
std::string ed25519_sign(std::string_view private_key, std::string_view message);
// True if `signature` is a valid Ed25519 signature of `message` under
// `public_key` (raw 32 bytes). Wrong lengths are simply invalid.
bool ed25519_verify(std::string_view public_key, std::string_view message,
                    std::string_view signature);

// The checkpoint key id: hex of the first 8 bytes of SHA-256(public key).
std::string audit_key_id(std::string_view public_key);

// The writer key file: "asyncmq-audit-writer v1" then "name value" lines.
struct AuditWriterKey {
  std::uint64_t epoch = 0;
  std::uint64_t epoch_start_seq = 1;  // first seq MACed under this epoch
  std::int64_t epoch_start_ms = 0;    // 0: not started (set at first use)
  Secret key;                         // k_epoch
  Secret sign_key;                    // Ed25519 private key
};
// Reads and checks a key file: regular, owned by us, mode & 077 == 0
// (Error permission_denied otherwise), NotFound if missing.
std::string read_private_file(const std::filesystem::path& path, std::string_view what);
AuditWriterKey parse_writer_key(std::string_view text, const std::filesystem::path& path);
std::string render_writer_key(const AuditWriterKey& k);

struct AuditVerifyKey {
  Secret seed;
  std::string public_key;
};
AuditVerifyKey parse_verify_key(std::string_view text, const std::filesystem::path& path);
std::string render_verify_key(const AuditVerifyKey& k);

// Replaces `path` atomically with `text` (mode 0600): temporary file in the
// same directory, fsync, rename, fsync of the directory. The temporary copy
// is wiped (the caller's `text` is not).
void replace_private_file(const std::filesystem::path& path, std::string_view text);
// Creates `path` (mode 0600) with `text`; Conflict if it exists.
void create_private_file(const std::filesystem::path& path, std::string_view text);

}  // namespace asyncmq::security

namespace asyncmq::security {

// audit_canonical() and audit_to_json_line() (include/asyncmq/audit.hpp),
// appending to `out` instead of returning a new string: the writer renders
// a whole batch into one buffer.
void append_audit_canonical(const AuditRecord& r, std::string& out);
void append_audit_json_line(const AuditRecord& r, std::string& out);

// One signed checkpoint (a line of the checkpoint file).
struct AuditCheckpoint {
  std::uint64_t seq = 0;
  std::int64_t time_ms = 0;
  std::uint64_t epoch = 0;  // the record's at seq
  std::string mac;     // raw, the record's at seq
  std::string key_id;  // hex
  std::string sig;     // raw, 64 bytes
};
// "asyncmq-audit-checkpoint-v1" || u64be(seq) || i64be(time) || u64be(epoch)
//   || lp(mac) || lp(key_id)
std::string audit_checkpoint_message(const AuditCheckpoint& c);
std::string audit_checkpoint_line(const AuditCheckpoint& c);  // no newline
std::optional<AuditCheckpoint> parse_audit_checkpoint_line(std::string_view line);

}  // namespace asyncmq::security

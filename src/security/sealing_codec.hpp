// The sealing codec: AES-256-GCM at the codec seam, so no backend ever holds
// a payload, result, error message, log line or progress value in the clear.
//
// Envelope, version 1 (binary; every stored field is one envelope):
//
//   offset  size  content
//   0       1     version = 0x01
//   1       1     L = length of the key id, 1..64
//   2       L     key id (ASCII, [A-Za-z0-9._-])
//   2+L     12    nonce (random, RAND_bytes)
//   14+L    n     ciphertext (n = plaintext length)
//   14+L+n  16    GCM tag
//
// Associated data (authenticated, not stored):
//
//   "asyncmq.seal.v1" (15 bytes, domain separation)
//   field           1 byte (Field::payload = 1, result = 2, error = 3, log = 4,
//                   progress = 5)
//   queue length    4 bytes, big-endian
//   queue           the queue name
//   job id          16 bytes
//   header          envelope bytes [0, 2+L): version, L, key id
//
// So a sealed value copied into another job, queue or field fails to open,
// and neither the version nor the key id can be swapped without failing the
// tag (a swapped key id also simply selects the wrong key). Lengths are
// prefixed so that no two (queue, job) pairs give the same associated data.
//
// Overhead: 30 + L bytes per field (32 for a 2-character key id).
//
// Opening never falls back to treating stored bytes as plain text: data
// written before sealing was configured fails to open (IntegrityError) and
// must be re-sealed (issue 5, `asyncmq keys reseal`).
//
// Blind index (encode_subject): lowercase hex (64 characters) of
// HMAC-SHA-256(index key, "asyncmq.subject.v1" || subject). Equal subjects
// give equal indexes under one index key, so purge can find a subject's
// jobs; without the index key the subject cannot be recovered or confirmed.
// Rotating the index key changes every index (not supported yet).
//
// Envelope, version 2: a field of a job with a data subject, sealed under
// that subject's own data key (crypto-shredding; see SubjectKeyStore):
//
//   offset  size  content
//   0       1     version = 0x02
//   1       12    nonce
//   13      n     ciphertext
//   13+n    16    GCM tag
//
// Associated data: "asyncmq.seal.v2", field, queue length and queue, job id
// (as in version 1), then the subject's blind index (64 bytes) and the
// version byte. There is no key id: the key is the one stored for the
// job's subject, so a job whose subject was purged cannot be opened by
// anyone, whatever keyring they hold.
//
// A subject's data key is stored wrapped: a version-1 envelope (key id of
// the keyring key that wrapped it) of the 32 key bytes, with associated
// data "asyncmq.subject-key.v1" || blind index || header. Rotation re-wraps
// these under the new primary (rewrap_subject_keys); the jobs themselves
// need no re-sealing.
//
// Thread safety: safe for concurrent use (the Codec contract).
#pragma once

#include <asyncmq/codec.hpp>
#include <asyncmq/security.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncmq::security {

inline constexpr std::uint8_t kEnvelopeVersion = 1;
inline constexpr std::uint8_t kSubjectEnvelopeVersion = 2;
inline constexpr std::size_t kBlindIndexChars = 64;

// True for a blind index as encode_subject makes it: 64 lowercase hex.
bool valid_blind_index(std::string_view index) noexcept;
inline constexpr std::size_t kMaxKeyIdBytes = 64;

// A parsed envelope; views into the stored bytes.
struct EnvelopeView {
  std::uint8_t version = 0;
  std::string_view key_id;
  std::string_view header;  // bytes [0, 2+L)
  std::string_view nonce;
  std::string_view ciphertext;
  std::string_view tag;
};

// Splits `stored` into its parts; nullopt if too short or the key id length
// is out of range. Does not check the version or the key id's characters.
std::optional<EnvelopeView> parse_envelope(std::string_view stored) noexcept;

std::string_view field_name(Field f) noexcept;

// Which keyring key a stored field depends on: the key id of a version-1
// envelope; empty for a version-2 (subject) envelope, whose key is the
// subject's (see subject_key_wrapped_by), or for bytes that are no envelope.
std::string sealed_key_id(std::string_view stored);

class SealingCodec final : public Codec {
 public:
  // REQUIRES: keys != nullptr. `subjects` may be null: then fields of jobs
  // with a subject are sealed under the primary key like all others.
  explicit SealingCodec(std::shared_ptr<Keyring> keys,
                        std::shared_ptr<SubjectKeyStore> subjects = nullptr);

  std::string encode(const CodecContext& ctx, std::string_view plain) override;
  std::string decode(const CodecContext& ctx, std::string_view stored) override;
  std::string encode_subject(std::string_view subject) override;

  // ---- rotation ----
  // True if `stored` should be sealed again: a version-1 envelope under a
  // key other than the current primary, or a version-1 envelope of a job
  // with a subject while a subject key store is configured (it moves under
  // the subject's key). Bytes that are no envelope are not "to reseal"
  // (they cannot be opened; see decode).
  bool needs_reseal(const CodecContext& ctx, std::string_view stored) const;
  // Re-wraps every stored subject key that is not wrapped under the primary.
  struct RewrapStats {
    std::uint64_t rewrapped = 0;  // now under the primary
    std::uint64_t current = 0;    // were already
    std::uint64_t failed = 0;     // could not be opened (unknown or disabled key)
  };
  RewrapStats rewrap_subject_keys();
  // The keyring key id each stored subject key is wrapped under, by index.
  std::vector<std::pair<std::string, std::string>> subject_key_wrappers();
  // Destroys the data key of a stored blind index. Returns whether it had one.
  bool destroy_subject_key(std::string_view index);

  SubjectKeyStore* subjects() const { return subjects_.get(); }
  Keyring& keyring() const { return *keys_; }

 private:
  // The unwrapped data key of `index`; made and stored if `create` and there
  // is none. Throws IntegrityError (naming `ctx`) if it is missing or fails
  // to open.
  Secret subject_key(const CodecContext& ctx, bool create);
  std::string wrap(std::string_view index, std::string_view key_bytes);
  // The 32 key bytes of a wrapped subject key into `out`; false if it does
  // not open. `key_id` (optional) receives the wrapping key's id.
  bool unwrap(std::string_view index, std::string_view wrapped, std::string& out,
              std::string* key_id) const;

  std::shared_ptr<Keyring> keys_;
  std::shared_ptr<SubjectKeyStore> subjects_;
};

}  // namespace asyncmq::security

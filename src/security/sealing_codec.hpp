// The sealing codec: AES-256-GCM at the codec seam, so no backend ever holds
// a payload, result or error message in the clear.
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
//   field           1 byte (Field::payload = 1, result = 2, error = 3)
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
// Thread safety: safe for concurrent use (the Codec contract).
#pragma once

#include <asyncmq/codec.hpp>
#include <asyncmq/security.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace asyncmq::security {

inline constexpr std::uint8_t kEnvelopeVersion = 1;
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

// The associated data for a field (layout above).
std::string associated_data(const CodecContext& ctx, std::string_view header);

std::string_view field_name(Field f) noexcept;

class SealingCodec final : public Codec {
 public:
  // REQUIRES: keys != nullptr.
  explicit SealingCodec(std::shared_ptr<Keyring> keys);

  std::string encode(const CodecContext& ctx, std::string_view plain) override;
  std::string decode(const CodecContext& ctx, std::string_view stored) override;
  std::string encode_subject(std::string_view subject) override;

 private:
  std::shared_ptr<Keyring> keys_;
};

}  // namespace asyncmq::security

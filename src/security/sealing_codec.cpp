#include "security/sealing_codec.hpp"

#include "security/crypto.hpp"
#include "security/keyring.hpp"

#include <asyncmq/error.hpp>

#include <cassert>

namespace asyncmq::security {
namespace {

constexpr std::string_view kSealDomain = "asyncmq.seal.v1";
constexpr std::string_view kSubjectDomain = "asyncmq.subject.v1";

// Every open failure ends here: one message shape, naming the job, the field
// and (when readable) the key id; never the stored or plain bytes.
[[noreturn]] void refuse(const CodecContext& ctx, std::string_view key_id, std::string_view why) {
  std::string msg = "job " + ctx.job.str() + " " + std::string(field_name(ctx.field)) + ": ";
  if (!key_id.empty() && valid_key_id(key_id)) {
    msg += "sealed data under key '" + std::string(key_id) + "' failed to open: ";
  } else {
    msg += "sealed data failed to open: ";
  }
  msg += why;
  throw IntegrityError(msg);
}

}  // namespace

std::string_view field_name(Field f) noexcept {
  switch (f) {
    case Field::payload: return "payload";
    case Field::result: return "result";
    case Field::error: return "error";
  }
  return "unknown field";
}

std::optional<EnvelopeView> parse_envelope(std::string_view stored) noexcept {
  if (stored.size() < 2) return std::nullopt;
  EnvelopeView e;
  e.version = static_cast<std::uint8_t>(stored[0]);
  const std::size_t id_len = static_cast<std::uint8_t>(stored[1]);
  if (id_len == 0 || id_len > kMaxKeyIdBytes) return std::nullopt;
  const std::size_t header_len = 2 + id_len;
  if (stored.size() < header_len + kGcmNonceBytes + kGcmTagBytes) return std::nullopt;
  e.header = stored.substr(0, header_len);
  e.key_id = stored.substr(2, id_len);
  e.nonce = stored.substr(header_len, kGcmNonceBytes);
  const std::size_t ct_off = header_len + kGcmNonceBytes;
  e.ciphertext = stored.substr(ct_off, stored.size() - ct_off - kGcmTagBytes);
  e.tag = stored.substr(stored.size() - kGcmTagBytes);
  return e;
}

std::string associated_data(const CodecContext& ctx, std::string_view header) {
  std::string aad;
  aad.reserve(kSealDomain.size() + 1 + 4 + ctx.queue.size() + 16 + header.size());
  aad.append(kSealDomain);
  aad.push_back(static_cast<char>(ctx.field));
  const auto qlen = static_cast<std::uint32_t>(ctx.queue.size());
  for (int shift = 24; shift >= 0; shift -= 8) aad.push_back(static_cast<char>(qlen >> shift));
  aad.append(ctx.queue);
  const auto& id = ctx.job.bytes();
  aad.append(reinterpret_cast<const char*>(id.data()), id.size());
  aad.append(header);
  return aad;
}

SealingCodec::SealingCodec(std::shared_ptr<Keyring> keys) : keys_(std::move(keys)) {
  if (!keys_) throw InvalidArgument("the sealing codec needs a keyring");
}

std::string SealingCodec::encode(const CodecContext& ctx, std::string_view plain) {
  std::shared_ptr<Key> key = KeyringAccess::take_primary_for_seal(*keys_);
  assert(valid_key_id(key->id) && key->id.size() <= kMaxKeyIdBytes);
  std::string out;
  out.reserve(2 + key->id.size() + kGcmNonceBytes + plain.size() + kGcmTagBytes);
  out.push_back(static_cast<char>(kEnvelopeVersion));
  out.push_back(static_cast<char>(key->id.size()));
  out.append(key->id);
  const std::size_t header_len = out.size();
  const std::string nonce = random_gcm_nonce();
  out.append(nonce);
  const std::string aad = associated_data(ctx, std::string_view(out).substr(0, header_len));
  GcmSealed sealed = aes256_gcm_seal(key->material.reveal(), nonce, aad, plain);
  out.append(sealed.ciphertext);
  out.append(sealed.tag);
  return out;
}

std::string SealingCodec::decode(const CodecContext& ctx, std::string_view stored) {
  auto env = parse_envelope(stored);
  if (!env) refuse(ctx, {}, "not a sealed envelope (too short or malformed header)");
  if (env->version != kEnvelopeVersion)
    refuse(ctx, env->key_id, "unsupported envelope version " + std::to_string(env->version));
  if (!valid_key_id(env->key_id)) refuse(ctx, {}, "the envelope's key id is malformed");
  std::shared_ptr<const Key> key = KeyringAccess::key_for_open(*keys_, env->key_id);
  if (!key) refuse(ctx, env->key_id, "the key is unknown or disabled");
  const std::string aad = associated_data(ctx, env->header);
  auto plain = aes256_gcm_open(key->material.reveal(), env->nonce, aad, env->ciphertext, env->tag);
  if (!plain)
    refuse(ctx, env->key_id,
           "authentication failed (altered, or copied from another job, queue or field)");
  return std::move(*plain);
}

std::string SealingCodec::encode_subject(std::string_view subject) {
  std::shared_ptr<const Key> key = KeyringAccess::index_key(*keys_);
  if (!key)
    throw InvalidArgument(
        "the keyring has no index key; refusing to store a data subject in the clear");
  std::string msg;
  msg.reserve(kSubjectDomain.size() + subject.size());
  msg.append(kSubjectDomain);
  msg.append(subject);
  std::string mac = hmac_sha256(key->material.reveal(), msg);
  secure_wipe(msg);
  return to_hex(mac);
}

}  // namespace asyncmq::security

namespace asyncmq {

std::shared_ptr<Codec> make_sealing_codec(std::shared_ptr<Keyring> keys) {
  return std::make_shared<security::SealingCodec>(std::move(keys));
}

}  // namespace asyncmq

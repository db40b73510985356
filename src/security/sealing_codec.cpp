#include "security/sealing_codec.hpp"

#include "security/crypto.hpp"
#include "security/keyring.hpp"

#include <asyncmq/error.hpp>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>

namespace asyncmq::security {
namespace {

constexpr std::string_view kSealDomain = "asyncmq.seal.v1";
constexpr std::string_view kSealDomainV2 = "asyncmq.seal.v2";
constexpr std::string_view kSubjectDomain = "asyncmq.subject.v1";
constexpr std::string_view kWrapDomain = "asyncmq.subject-key.v1";

// Bytes assembled on the stack when they fit, on the heap otherwise: the
// associated data of a field is about 40 bytes plus the queue name and the
// key id, built for every seal and open, where an allocation of its own
// showed up in profiles. Associated data is not secret (queue, job id, key
// id), so it is not wiped.
class Scratch {
 public:
  explicit Scratch(std::size_t n)
      : heap_(n > sizeof local_ ? std::make_unique<char[]>(n) : nullptr), size_(n) {}
  char* data() { return heap_ ? heap_.get() : local_; }
  // The last `n` bytes, where an envelope's header goes.
  char* tail(std::size_t n) { return data() + size_ - n; }
  std::string_view view() const { return {heap_ ? heap_.get() : local_, size_}; }

 private:
  char local_[256];
  std::unique_ptr<char[]> heap_;
  std::size_t size_;
};

std::size_t job_context_size(std::string_view domain, const CodecContext& ctx) {
  return domain.size() + 1 + 4 + ctx.queue.size() + ctx.job.bytes().size();
}

// What both envelope versions bind: domain, field, queue length (4 bytes,
// big-endian), queue, job id; written at `out` (job_context_size bytes).
// Returns the end of what was written.
char* write_job_context(std::string_view domain, const CodecContext& ctx, char* out) {
  out = std::copy(domain.begin(), domain.end(), out);
  *out++ = static_cast<char>(ctx.field);
  const auto qlen = static_cast<std::uint32_t>(ctx.queue.size());
  for (int shift = 24; shift >= 0; shift -= 8) *out++ = static_cast<char>(qlen >> shift);
  out = std::copy(ctx.queue.begin(), ctx.queue.end(), out);
  const auto& id = ctx.job.bytes();
  std::memcpy(out, id.data(), id.size());
  return out + id.size();
}

// Version 2's associated data (layout in the header).
std::string associated_data_v2(const CodecContext& ctx) {
  std::string aad(job_context_size(kSealDomainV2, ctx) + ctx.subject.size() + 1, '\0');
  char* p = write_job_context(kSealDomainV2, ctx, aad.data());
  p = std::copy(ctx.subject.begin(), ctx.subject.end(), p);
  *p = static_cast<char>(kSubjectEnvelopeVersion);
  return aad;
}

std::size_t header_size(const Key& key) { return 2 + key.id.size(); }

// A version-1 field's associated data (layout in the header): the job
// context, then `header_len` bytes for the envelope's header, left to the
// caller (seal_v1 writes it; an open copies the stored one there).
Scratch field_aad(const CodecContext& ctx, std::size_t header_len) {
  Scratch aad(job_context_size(kSealDomain, ctx) + header_len);
  write_job_context(kSealDomain, ctx, aad.data());
  return aad;
}

// A version-1 envelope of `plain` under `key`, written in one allocation.
// `aad` is the associated data with its last header_size(key) bytes left
// for the envelope's header, which is written there.
std::string seal_v1(const Key& key, Scratch& aad, std::string_view plain) {
  assert(valid_key_id(key.id) && key.id.size() <= kMaxKeyIdBytes);
  const std::size_t header_len = header_size(key);
  std::string out(header_len + kGcmNonceBytes + plain.size() + kGcmTagBytes, '\0');
  char* p = out.data();
  p[0] = static_cast<char>(kEnvelopeVersion);
  p[1] = static_cast<char>(key.id.size());
  std::copy(key.id.begin(), key.id.end(), p + 2);
  std::copy(p, p + header_len, aad.tail(header_len));
  random_gcm_nonce(p + header_len);
  key.gcm->seal_to(std::string_view(p + header_len, kGcmNonceBytes), aad.view(), plain,
                   p + header_len + kGcmNonceBytes);
  return out;
}

// The associated data of a wrapped subject key: domain, index, then
// `header_len` bytes for the envelope's header (left to the caller).
Scratch wrap_aad(std::string_view index, std::size_t header_len) {
  Scratch aad(kWrapDomain.size() + index.size() + header_len);
  std::copy(index.begin(), index.end(), std::copy(kWrapDomain.begin(), kWrapDomain.end(), aad.data()));
  return aad;
}

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
    case Field::log: return "log";
    case Field::progress: return "progress";
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

SealingCodec::SealingCodec(std::shared_ptr<Keyring> keys,
                           std::shared_ptr<SubjectKeyStore> subjects)
    : keys_(std::move(keys)), subjects_(std::move(subjects)) {
  if (!keys_) throw InvalidArgument("the sealing codec needs a keyring");
}

std::string SealingCodec::encode(const CodecContext& ctx, std::string_view plain) {
  if (subjects_ && !ctx.subject.empty()) {
    Secret key = subject_key(ctx, /*create=*/true);
    std::string out;
    out.reserve(1 + kGcmNonceBytes + plain.size() + kGcmTagBytes);
    out.push_back(static_cast<char>(kSubjectEnvelopeVersion));
    const std::string nonce = random_gcm_nonce();
    out.append(nonce);
    GcmSealed sealed = aes256_gcm_seal(key.reveal(), nonce, associated_data_v2(ctx), plain);
    out.append(sealed.ciphertext);
    out.append(sealed.tag);
    return out;
  }
  std::shared_ptr<Key> key = KeyringAccess::take_primary_for_seal(*keys_);
  Scratch aad = field_aad(ctx, header_size(*key));
  return seal_v1(*key, aad, plain);
}

std::string SealingCodec::decode(const CodecContext& ctx, std::string_view stored) {
  if (!stored.empty() && static_cast<std::uint8_t>(stored[0]) == kSubjectEnvelopeVersion) {
    if (ctx.subject.empty())
      refuse(ctx, {}, "sealed under a data subject's key, but the job has no subject");
    if (!subjects_)
      refuse(ctx, {}, "sealed under a data subject's key, and no subject key store is configured");
    if (stored.size() < 1 + kGcmNonceBytes + kGcmTagBytes)
      refuse(ctx, {}, "not a sealed envelope (too short)");
    Secret key = subject_key(ctx, /*create=*/false);
    auto plain = aes256_gcm_open(
        key.reveal(), stored.substr(1, kGcmNonceBytes), associated_data_v2(ctx),
        stored.substr(1 + kGcmNonceBytes, stored.size() - 1 - kGcmNonceBytes - kGcmTagBytes),
        stored.substr(stored.size() - kGcmTagBytes));
    if (!plain)
      refuse(ctx, {},
             "authentication failed under the data subject's key (altered, or copied from "
             "another job, queue, field or subject)");
    return std::move(*plain);
  }
  auto env = parse_envelope(stored);
  if (!env) refuse(ctx, {}, "not a sealed envelope (too short or malformed header)");
  if (env->version != kEnvelopeVersion)
    refuse(ctx, env->key_id, "unsupported envelope version " + std::to_string(env->version));
  if (!valid_key_id(env->key_id)) refuse(ctx, {}, "the envelope's key id is malformed");
  std::shared_ptr<const Key> key = KeyringAccess::key_for_open(*keys_, env->key_id);
  if (!key) {
    bool known = false;
    for (const auto& k : keys_->list()) known = known || k.id == env->key_id;
    refuse(ctx, env->key_id,
           known ? "the key is unknown or disabled: it is disabled (retired) in the keyring"
                 : "the key is unknown or disabled: the keyring has no key with this id");
  }
  Scratch aad = field_aad(ctx, env->header.size());
  std::copy(env->header.begin(), env->header.end(), aad.tail(env->header.size()));
  std::string plain;
  if (!key->gcm->open(env->nonce, aad.view(), env->ciphertext, env->tag, plain))
    refuse(ctx, env->key_id,
           "authentication failed (altered, or copied from another job, queue or field)");
  return plain;
}

Secret SealingCodec::subject_key(const CodecContext& ctx, bool create) {
  if (!valid_blind_index(ctx.subject))
    refuse(ctx, {}, "the job's stored subject is not a blind index");
  std::optional<std::string> wrapped = subjects_->get(ctx.subject);
  if (!wrapped) {
    if (!create)
      refuse(ctx, {}, "the data subject's key is gone (the subject was purged); "
                      "its data can no longer be opened");
    std::string fresh = random_bytes(kAes256KeyBytes);
    std::string mine = wrap(ctx.subject, fresh);
    std::string stored = subjects_->put_if_absent(ctx.subject, mine);
    if (stored == mine) return Secret::take(fresh);
    secure_wipe(fresh);  // another writer stored one first: use theirs
    wrapped = std::move(stored);
  }
  std::string key_id, bytes;
  if (!unwrap(ctx.subject, *wrapped, bytes, &key_id))
    refuse(ctx, key_id,
           "the data subject's key failed to open (its wrapping key is unknown or disabled, "
           "or it was altered)");
  return Secret::take(bytes);
}

std::string SealingCodec::wrap(std::string_view index, std::string_view key_bytes) {
  std::shared_ptr<Key> key = KeyringAccess::take_primary_for_seal(*keys_);
  Scratch aad = wrap_aad(index, header_size(*key));
  return seal_v1(*key, aad, key_bytes);
}

bool SealingCodec::unwrap(std::string_view index, std::string_view wrapped, std::string& out,
                          std::string* key_id) const {
  auto env = parse_envelope(wrapped);
  if (!env || env->version != kEnvelopeVersion || !valid_key_id(env->key_id)) return false;
  if (key_id) *key_id = std::string(env->key_id);
  std::shared_ptr<const Key> key = KeyringAccess::key_for_open(*keys_, env->key_id);
  if (!key) return false;
  Scratch aad = wrap_aad(index, env->header.size());
  std::copy(env->header.begin(), env->header.end(), aad.tail(env->header.size()));
  if (!key->gcm->open(env->nonce, aad.view(), env->ciphertext, env->tag, out)) return false;
  if (out.size() != kAes256KeyBytes) {
    secure_wipe(out);
    out.clear();
    return false;
  }
  return true;
}

bool SealingCodec::needs_reseal(const CodecContext& ctx, std::string_view stored) const {
  if (stored.empty() || static_cast<std::uint8_t>(stored[0]) != kEnvelopeVersion) return false;
  auto env = parse_envelope(stored);
  if (!env) return false;
  if (subjects_ && !ctx.subject.empty()) return true;
  return env->key_id != keys_->primary_id();
}

SealingCodec::RewrapStats SealingCodec::rewrap_subject_keys() {
  RewrapStats st;
  if (!subjects_) return st;
  for (const std::string& index : subjects_->list()) {
    // A concurrent writer (another rewrap) may replace it between our read
    // and our compare-and-set: read again, a few times.
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::optional<std::string> w = subjects_->get(index);
      if (!w) break;  // destroyed meanwhile
      const std::string primary = keys_->primary_id();
      if (!primary.empty() && sealed_key_id(*w) == primary) {
        ++st.current;
        break;
      }
      std::string bytes;
      if (!unwrap(index, *w, bytes, nullptr)) {
        ++st.failed;
        break;
      }
      std::string fresh = wrap(index, bytes);
      secure_wipe(bytes);
      if (subjects_->replace(index, *w, fresh)) {
        ++st.rewrapped;
        break;
      }
    }
  }
  return st;
}

std::vector<std::pair<std::string, std::string>> SealingCodec::subject_key_wrappers() {
  std::vector<std::pair<std::string, std::string>> out;
  if (!subjects_) return out;
  for (const std::string& index : subjects_->list()) {
    std::optional<std::string> w = subjects_->get(index);
    if (w) out.emplace_back(index, sealed_key_id(*w));
  }
  return out;
}

bool SealingCodec::destroy_subject_key(std::string_view index) {
  if (!subjects_) return false;
  if (!valid_blind_index(index)) throw InvalidArgument("not a blind index");
  return subjects_->destroy(index);
}

std::string sealed_key_id(std::string_view stored) {
  if (stored.empty() || static_cast<std::uint8_t>(stored[0]) != kEnvelopeVersion) return {};
  auto env = parse_envelope(stored);
  if (!env || !valid_key_id(env->key_id)) return {};
  return std::string(env->key_id);
}

bool valid_blind_index(std::string_view index) noexcept {
  if (index.size() != kBlindIndexChars) return false;
  for (char c : index)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
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

std::shared_ptr<Codec> make_sealing_codec(std::shared_ptr<Keyring> keys,
                                          std::shared_ptr<SubjectKeyStore> subjects) {
  return std::make_shared<security::SealingCodec>(std::move(keys), std::move(subjects));
}

}  // namespace asyncmq

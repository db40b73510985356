// The keyring's private side: what the sealing codec needs from a Keyring
// (the primary key for sealing, a key by id for opening, the index key),
// kept out of the public header so users never handle key entries.
//
// A Key is immutable except for its message counter and is shared by
// std::shared_ptr: a seal that has taken the primary keeps using it even if
// a rotation happens meanwhile, and the bytes are wiped when the last user
// lets go (Secret's destructor).
//
// Thread safety: every function is safe concurrently.
#pragma once

#include <asyncmq/security.hpp>

#include "security/crypto.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace asyncmq::security {

// Aligned to a cache line, and the counters on one of their own: every seal
// (producer and worker threads alike) writes `sealed`, and every seal and
// open reads `id` and `gcm`; sharing a line made the readers miss on each
// write.
struct alignas(64) Key {
  std::string id;
  Secret material;  // kAes256KeyBytes
  // `material` prepared for AES-256-GCM (set with it, never null in a
  // Keyring); its contexts are wiped with the Key.
  std::unique_ptr<GcmKey> gcm;
  std::int64_t created_ms = 0;  // set before the key is shared; 0 if unknown
  alignas(64) std::atomic<std::uint64_t> sealed{0};
  std::atomic<bool> warned{false};
};

// Key ids: 1..64 characters from [A-Za-z0-9._-]: safe in the envelope, in
// log lines and in error messages.
bool valid_key_id(std::string_view id) noexcept;

struct KeyringAccess {
  // The primary key, its counter already incremented for one message (and a
  // warning logged once at the threshold). Throws InvalidArgument if there
  // is no primary; Error(errc::conflict) at the refusal threshold.
  static std::shared_ptr<Key> take_primary_for_seal(Keyring& ring);
  // The key `id` if it may open data (primary or decrypt-only); null if it
  // is unknown or disabled.
  static std::shared_ptr<const Key> key_for_open(const Keyring& ring, std::string_view id);
  // The blind-index key; null if none.
  static std::shared_ptr<const Key> index_key(const Keyring& ring);
};

}  // namespace asyncmq::security

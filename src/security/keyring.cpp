// Keyring: key entries, their states, and loading them from a file or the
// environment (format in include/asyncmq/security.hpp).
//
// Loading a file: it is opened once (O_NOFOLLOW, O_CLOEXEC) and checked with
// fstat on that descriptor, so the file that is checked is the file that is
// read (no race between a stat and an open). Read buffers holding key text
// are wiped after parsing.
#include "security/keyring.hpp"

#include "core/log.hpp"
#include "security/crypto.hpp"

#include <asyncmq/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <ostream>

namespace asyncmq {

// ---- Secret ----------------------------------------------------------------

Secret::Secret(std::string_view bytes) {
  if (!bytes.empty()) {
    data_ = std::make_unique<unsigned char[]>(bytes.size());
    std::memcpy(data_.get(), bytes.data(), bytes.size());
    size_ = bytes.size();
  }
}

Secret Secret::take(std::string& bytes) {
  Secret s(bytes);
  security::secure_wipe(bytes);
  bytes.clear();
  return s;
}

Secret::~Secret() { wipe(); }

Secret::Secret(Secret&& other) noexcept : data_(std::move(other.data_)), size_(other.size_) {
  other.size_ = 0;
}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    wipe();
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
  }
  return *this;
}

void Secret::wipe() noexcept {
  if (data_) security::secure_wipe(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

void PrintTo(const Secret& s, std::ostream* os) {
  *os << "Secret(" << s.size() << " bytes, redacted)";
}

std::string_view to_string(KeyState s) {
  switch (s) {
    case KeyState::primary: return "primary";
    case KeyState::decrypt_only: return "decrypt-only";
    case KeyState::disabled: return "disabled";
  }
  return "unknown";
}

// ---- Keyring ---------------------------------------------------------------

struct Keyring::Impl {
  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<security::Key>, std::less<>> keys;  // GUARDED_BY(mu)
  std::map<std::string, KeyState, std::less<>> states;                       // GUARDED_BY(mu)
  std::string primary;                                                        // GUARDED_BY(mu)
  std::shared_ptr<security::Key> index;                                       // GUARDED_BY(mu)
  // Where reload() reads from: a file path or an environment variable name.
  std::string source_file;  // GUARDED_BY(mu)
  std::string source_env;   // GUARDED_BY(mu)

  // REQUIRES: mu held.
  void set_state_locked(const std::string& id, KeyState state) {
    auto it = states.find(id);
    if (it == states.end()) throw NotFound("no key with id '" + id + "' in the keyring");
    if (state == KeyState::primary) {
      if (!primary.empty() && primary != id) states[primary] = KeyState::decrypt_only;
      primary = id;
    } else if (primary == id) {
      primary.clear();
    }
    it->second = state;
  }
};

Keyring::Keyring(KeyringOptions options)
    : options_(options), impl_(std::make_unique<Impl>()) {}
Keyring::~Keyring() = default;

namespace {

std::shared_ptr<security::Key> make_key(std::string id, Secret material) {
  if (!security::valid_key_id(id))
    throw InvalidArgument("key id must be 1..64 characters from [A-Za-z0-9._-]");
  if (material.size() != security::kAes256KeyBytes)
    throw InvalidArgument("key '" + id + "' must be 32 bytes, got " +
                          std::to_string(material.size()));
  auto k = std::make_shared<security::Key>();
  k->id = std::move(id);
  k->gcm = std::make_unique<security::GcmKey>(material.reveal());
  k->material = std::move(material);
  return k;
}

}  // namespace

void Keyring::add(std::string id, KeyState state, Secret key) {
  auto k = make_key(std::move(id), std::move(key));
  std::lock_guard lock(impl_->mu);
  if (impl_->keys.count(k->id) || (impl_->index && impl_->index->id == k->id))
    throw Conflict("key id '" + k->id + "' is already in the keyring");
  const std::string key_id = k->id;
  impl_->keys.emplace(key_id, std::move(k));
  impl_->states.emplace(key_id, KeyState::disabled);
  impl_->set_state_locked(key_id, state);
}

void Keyring::set_index_key(std::string id, Secret key) {
  auto k = make_key(std::move(id), std::move(key));
  std::lock_guard lock(impl_->mu);
  if (impl_->keys.count(k->id))
    throw Conflict("key id '" + k->id + "' is already in the keyring");
  impl_->index = std::move(k);
}

void Keyring::activate(const std::string& id) { set_state(id, KeyState::primary); }

void Keyring::set_state(const std::string& id, KeyState state) {
  std::lock_guard lock(impl_->mu);
  impl_->set_state_locked(id, state);
}

std::vector<KeyInfo> Keyring::list() const {
  std::lock_guard lock(impl_->mu);
  std::vector<KeyInfo> out;
  for (const auto& [id, key] : impl_->keys)
    out.push_back({id, impl_->states.at(id), key->sealed.load(), key->created_ms});
  return out;
}

std::string Keyring::primary_id() const {
  std::lock_guard lock(impl_->mu);
  return impl_->primary;
}

bool Keyring::has_index_key() const {
  std::lock_guard lock(impl_->mu);
  return impl_->index != nullptr;
}

std::uint64_t Keyring::messages_sealed(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->keys.find(id);
  if (it == impl_->keys.end()) throw NotFound("no key with id '" + id + "' in the keyring");
  return it->second->sealed.load();
}

// ---- loading ----------------------------------------------------------------

namespace {

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

std::shared_ptr<Keyring> Keyring::parse(std::string_view text, std::string_view source,
                                        KeyringOptions options) {
  auto ring = std::make_shared<Keyring>(options);
  auto fail = [&](std::size_t line_no, const std::string& what) -> KeyFileError {
    return KeyFileError(errc::invalid_argument, std::string(source) + ":" +
                                                    std::to_string(line_no) + ": " + what);
  };
  int primaries = 0;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find_first_of("\n;", pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto fields = split_fields(line);
    if (fields.empty() || fields[0].front() == '#') continue;
    constexpr std::string_view kCreated = "created=";
    if (fields.size() != 3 &&
        !(fields.size() == 4 && fields[3].substr(0, kCreated.size()) == kCreated))
      throw fail(line_no, "expected `<id> <role> <base64 key> [created=<ms>]`, got " +
                              std::to_string(fields.size()) + " fields");
    std::int64_t created_ms = 0;
    if (fields.size() == 4) {
      std::string_view v = fields[3];
      bool ok = v.substr(0, kCreated.size()) == kCreated && v.size() > kCreated.size() &&
                v.size() <= kCreated.size() + 15;
      for (std::size_t i = kCreated.size(); ok && i < v.size(); ++i) {
        if (v[i] < '0' || v[i] > '9') ok = false;
        created_ms = created_ms * 10 + (v[i] - '0');
      }
      if (!ok) throw fail(line_no, "the fourth field must be created=<ms since the epoch>");
    }
    std::string id(fields[0]);
    if (!security::valid_key_id(id))
      throw fail(line_no, "key id must be 1..64 characters from [A-Za-z0-9._-]");
    std::string bytes;
    try {
      bytes = security::base64_decode(fields[2]);
    } catch (const InvalidArgument&) {
      throw fail(line_no, "key '" + id + "' is not valid base64");
    }
    Secret material = Secret::take(bytes);
    if (material.size() != security::kAes256KeyBytes)
      throw fail(line_no, "key '" + id + "' must be 32 bytes (base64 of 32 random bytes), got " +
                              std::to_string(material.size()));
    std::string_view role = fields[1];
    try {
      if (role == "index") {
        if (ring->has_index_key()) throw fail(line_no, "more than one index key");
        ring->set_index_key(id, std::move(material));
        continue;
      }
      KeyState state;
      if (role == "primary") {
        state = KeyState::primary;
        if (++primaries > 1) throw fail(line_no, "more than one primary key");
      } else if (role == "decrypt-only") {
        state = KeyState::decrypt_only;
      } else if (role == "disabled") {
        state = KeyState::disabled;
      } else {
        throw fail(line_no, "unknown role (want primary, decrypt-only, disabled or index)");
      }
      ring->add(id, state, std::move(material));
      if (created_ms != 0) {
        std::lock_guard lock(ring->impl_->mu);  // not shared yet; for the annotations
        ring->impl_->keys.at(id)->created_ms = created_ms;
      }
    } catch (const KeyFileError&) {
      throw;
    } catch (const Error& e) {
      throw fail(line_no, e.what());
    }
  }
  return ring;
}

std::shared_ptr<Keyring> Keyring::load_file(const std::filesystem::path& path,
                                            KeyringOptions options) {
  const std::string name = path.string();
  int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) throw KeyFileError(errc::not_found, "key file " + name + " does not exist");
    if (e == ELOOP)
      throw KeyFileError(errc::permission_denied, "key file " + name + " is a symbolic link");
    throw KeyFileError(e == EACCES ? errc::permission_denied : errc::invalid_argument,
                       "cannot open key file " + name + ": " + std::strerror(e));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw KeyFileError(errc::invalid_argument,
                       "cannot stat key file " + name + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw KeyFileError(errc::invalid_argument, "key file " + name + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw KeyFileError(errc::permission_denied,
                       "key file " + name + " has mode " + mode +
                           ": it must not be accessible by group or others "
                           "(chmod 600 it); refusing to use it");
  }
  if (st.st_uid != ::geteuid())
    throw KeyFileError(errc::permission_denied,
                       "key file " + name + " is not owned by the current user; refusing to use it");
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      security::secure_wipe(buf, sizeof buf);
      security::secure_wipe(text);
      throw KeyFileError(errc::invalid_argument,
                         "cannot read key file " + name + ": " + std::strerror(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > (1 << 20)) {
      security::secure_wipe(text);
      throw KeyFileError(errc::invalid_argument, "key file " + name + " is larger than 1 MiB");
    }
  }
  security::secure_wipe(buf, sizeof buf);
  // The string may have reallocated while growing; earlier buffers were
  // freed unwiped. Keys in a file are a few hundred bytes, within the first
  // 4 KiB chunk, so in practice only one buffer ever held them.
  try {
    auto ring = parse(text, name, options);
    security::secure_wipe(text);
    std::lock_guard lock(ring->impl_->mu);
    ring->impl_->source_file = name;
    return ring;
  } catch (...) {
    security::secure_wipe(text);
    throw;
  }
}

std::shared_ptr<Keyring> Keyring::load_env(const char* variable, KeyringOptions options) {
  const char* value = std::getenv(variable);
  if (!value || !*value)
    throw KeyFileError(errc::not_found,
                       std::string("environment variable ") + variable + " is not set");
  auto ring = parse(value, std::string("$") + variable, options);
  std::lock_guard lock(ring->impl_->mu);
  ring->impl_->source_env = variable;
  return ring;
}

std::filesystem::path Keyring::source_file() const {
  std::lock_guard lock(impl_->mu);
  return impl_->source_file;
}

void Keyring::reload() {
  std::string file, env;
  {
    std::lock_guard lock(impl_->mu);
    file = impl_->source_file;
    env = impl_->source_env;
  }
  std::shared_ptr<Keyring> fresh;
  if (!file.empty()) {
    fresh = load_file(file, options_);
  } else if (!env.empty()) {
    fresh = load_env(env.c_str(), options_);
  } else {
    throw KeyFileError(errc::not_found,
                       "this keyring was not loaded from a key file or variable; "
                       "there is nothing to reload");
  }
  Impl& next = *fresh->impl_;  // private to this call: no other user
  std::lock_guard lock(impl_->mu);
  // A key whose id and bytes are unchanged keeps its entry, and with it its
  // message counter and the seals in flight that hold it.
  for (auto& [id, key] : next.keys) {
    auto old = impl_->keys.find(id);
    if (old != impl_->keys.end() &&
        security::constant_time_equal(old->second->material.reveal(), key->material.reveal()))
      key = old->second;
  }
  impl_->keys.swap(next.keys);
  impl_->states.swap(next.states);
  impl_->primary.swap(next.primary);
  impl_->index.swap(next.index);
}

namespace security {

bool valid_key_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

std::shared_ptr<Key> KeyringAccess::take_primary_for_seal(Keyring& ring) {
  std::shared_ptr<Key> key;
  {
    std::lock_guard lock(ring.impl_->mu);
    if (ring.impl_->primary.empty())
      throw InvalidArgument("the keyring has no primary key; cannot seal");
    key = ring.impl_->keys.at(ring.impl_->primary);
  }
  const auto& o = ring.options_;
  std::uint64_t n = key->sealed.fetch_add(1) + 1;
  if (n > o.refuse_after_messages) {
    key->sealed.fetch_sub(1);
    throw Error(errc::conflict, "key '" + key->id + "' has sealed " +
                                    std::to_string(o.refuse_after_messages) +
                                    " messages, the limit for random nonces; "
                                    "make another key primary");
  }
  if (n >= o.warn_after_messages && !key->warned.exchange(true)) {
    core::log(core::LogLevel::warn, "keyring",
              "key '" + key->id + "' has sealed " + std::to_string(n) +
                  " messages in this process; rotate to a new primary key well before " +
                  std::to_string(o.refuse_after_messages));
  }
  return key;
}

std::shared_ptr<const Key> KeyringAccess::key_for_open(const Keyring& ring, std::string_view id) {
  std::lock_guard lock(ring.impl_->mu);
  auto st = ring.impl_->states.find(id);
  if (st == ring.impl_->states.end() || st->second == KeyState::disabled) return nullptr;
  return ring.impl_->keys.find(id)->second;
}

std::shared_ptr<const Key> KeyringAccess::index_key(const Keyring& ring) {
  std::lock_guard lock(ring.impl_->mu);
  return ring.impl_->index;
}

}  // namespace security
}  // namespace asyncmq

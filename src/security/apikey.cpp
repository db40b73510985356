// ApiKeyStore (see include/asyncmq/identity.hpp): API keys kept as SHA-256
// hashes in a private JSON file.
//
// Why SHA-256 and not a slow password hash: a key is 256 bits from the
// CSPRNG, not a human password, so there is nothing to brute-force and a
// fast hash is the right tool (as GitHub and Stripe do for their tokens).
//
// Why every lookup compares against every entry: with CRYPTO_memcmp per
// entry and no early exit, the time taken does not tell which entry (if
// any) matched.
//
// Concurrency: every read-modify-write holds an exclusive flock on
// "<file>.lock" (a separate file, because the store itself is replaced by
// rename and a lock on a replaced inode protects nothing).
#include "core/log.hpp"
#include "security/crypto.hpp"
#include "security/jose.hpp"

#include <asyncmq/identity.hpp>

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace asyncmq {


namespace {

constexpr std::string_view kPrefix = "amq_";
constexpr std::size_t kKeyBytes = 32;
constexpr std::size_t kKeyChars = 43;  // base64url of 32 bytes, unpadded
// last_used_ms is written at most this often per key: a busy server must
// not rewrite the store on every request.
constexpr std::int64_t kLastUsedResolutionMs = 60'000;

bool valid_principal_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Holds an exclusive lock on "<file>.lock" for the object's life. With
// `required` false, a lock that cannot be taken (a read-only directory) is
// not an error: held() says so and the caller does not write.
class StoreLock {
 public:
  explicit StoreLock(const std::filesystem::path& file, bool required = true) {
    std::string name = file.string() + ".lock";
    lock_.fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock_.fd < 0) {
      if (!required) return;
      throw InvalidArgument("cannot open API key store lock " + name + ": " + std::strerror(errno));
    }
    while (::flock(lock_.fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      if (!required) return;
      throw InvalidArgument("cannot lock API key store " + name + ": " + std::strerror(errno));
    }
    held_ = true;
  }
  bool held() const { return held_; }

 private:
  Fd lock_;
  bool held_ = false;
};

struct Entry {
  ApiKeyInfo info;
  std::string hash;  // raw SHA-256 (32 bytes)
};

// Reads the store; a missing file is an empty store. Refuses unsafe files
// like the keyring: checked with fstat on the descriptor that is read.
std::vector<Entry> read_store(const std::filesystem::path& file) {
  const std::string name = file.string();
  Fd f;
  f.fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (f.fd < 0) {
    if (errno == ENOENT) return {};
    if (errno == ELOOP)
      throw Error(errc::permission_denied, "API key store " + name + " is a symbolic link; refusing to use it");
    throw Error(errno == EACCES ? errc::permission_denied : errc::invalid_argument,
                "cannot open API key store " + name + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode))
    throw InvalidArgument("API key store " + name + " is not a regular file");
  if ((st.st_mode & 077) != 0 || st.st_uid != ::geteuid())
    throw Error(errc::permission_denied,
                "API key store " + name +
                    " is accessible by group or others, or not owned by the current user "
                    "(chmod 600 it); refusing to use it");
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw InvalidArgument("cannot read API key store " + name + ": " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > (16 << 20)) throw InvalidArgument("API key store " + name + " is larger than 16 MiB");
  }
  std::vector<Entry> out;
  if (text.empty()) return out;
  try {
    boost::json::value doc = boost::json::parse(text);
    const auto& root = doc.as_object();
    if (root.at("version").as_int64() != 1)
      throw InvalidArgument("API key store " + name + " has an unknown version");
    for (const auto& v : root.at("keys").as_array()) {
      const auto& o = v.as_object();
      Entry e;
      e.info.id = std::string(o.at("id").as_string());
      e.info.name = std::string(o.at("name").as_string());
      e.info.role_hint = std::string(o.at("role_hint").as_string());
      e.info.created_ms = o.at("created_ms").as_int64();
      e.info.expires_ms = o.at("expires_ms").as_int64();
      e.info.last_used_ms = o.at("last_used_ms").as_int64();
      e.info.revoked = o.at("revoked").as_bool();
      e.hash = security::from_hex(std::string(o.at("sha256").as_string()));
      if (e.hash.size() != 32) throw InvalidArgument("bad hash length");
      out.push_back(std::move(e));
    }
  } catch (const InvalidArgument&) {
    throw;
  } catch (const std::exception&) {
    // Boost.JSON's messages may quote the text; say only where.
    throw InvalidArgument("API key store " + name + " is malformed (not the expected JSON)");
  }
  return out;
}

// Replaces the store atomically: temporary file (mode 0600) in the same
// directory, fsync, rename, fsync of the directory.
void write_store(const std::filesystem::path& file, const std::vector<Entry>& entries) {
  boost::json::array keys;
  for (const auto& e : entries) {
    boost::json::object o;
    o["id"] = e.info.id;
    o["name"] = e.info.name;
    o["sha256"] = security::to_hex(e.hash);
    o["role_hint"] = e.info.role_hint;
    o["created_ms"] = e.info.created_ms;
    o["expires_ms"] = e.info.expires_ms;
    o["last_used_ms"] = e.info.last_used_ms;
    o["revoked"] = e.info.revoked;
    keys.push_back(std::move(o));
  }
  boost::json::object root;
  root["version"] = 1;
  root["keys"] = std::move(keys);
  std::string text = boost::json::serialize(root) + "\n";

  std::string tmpl = file.string() + ".tmp.XXXXXX";
  Fd f;
  f.fd = ::mkostemp(tmpl.data(), O_CLOEXEC);  // mode 0600
  if (f.fd < 0)
    throw InvalidArgument("cannot create a temporary file next to " + file.string() + ": " +
                          std::strerror(errno));
  auto fail = [&](const char* what) {
    int e = errno;
    ::unlink(tmpl.c_str());
    throw InvalidArgument(std::string(what) + " " + file.string() + ": " + std::strerror(e));
  };
  if (::fchmod(f.fd, 0600) != 0) fail("cannot set the mode of");
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(f.fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot write");
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(f.fd) != 0) fail("cannot fsync");
  if (::rename(tmpl.c_str(), file.c_str()) != 0) fail("cannot replace");
  std::string dir = file.has_parent_path() ? file.parent_path().string() : ".";
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd >= 0) ::fsync(d.fd);
}

}  // namespace

std::int64_t parse_duration_ms(std::string_view text) {
  if (text == "0" || text == "never") return 0;
  auto bad = [&]() {
    return InvalidArgument("duration must be a number followed by s, m, h or d (e.g. 30d), or 0 for never");
  };
  if (text.size() < 2 || text.size() > 12) throw bad();
  std::int64_t n = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') throw bad();
    n = n * 10 + (c - '0');
  }
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1000; break;
    case 'm': unit = 60'000; break;
    case 'h': unit = 3'600'000; break;
    case 'd': unit = 86'400'000; break;
    default: throw bad();
  }
  if (n <= 0 || n > (std::int64_t{1} << 40) / unit * 1000) throw bad();
  return n * unit;
}

ApiKeyStore::ApiKeyStore(std::filesystem::path file, Env& env) : file_(std::move(file)), env_(env) {}

std::shared_ptr<ApiKeyStore> ApiKeyStore::open(std::filesystem::path file, Env& env) {
  if (file.empty()) throw InvalidArgument("API key store: no file given");
  auto store = std::make_shared<ApiKeyStore>(std::move(file), env);
  read_store(store->file_);  // refuse an unsafe or malformed file now, not at first use
  return store;
}

NewApiKey ApiKeyStore::create(const std::string& name, const std::string& role_hint,
                              std::int64_t ttl_ms) {
  if (!valid_principal_name(name))
    throw InvalidArgument(
        "API key name must be 1..128 characters of A-Z a-z 0-9 . _ : -", errc::invalid_name);
  if (role_hint.size() > 256) throw InvalidArgument("role hint is longer than 256 characters");
  if (ttl_ms < 0) throw InvalidArgument("expiry must not be negative");
  StoreLock lock(file_);
  auto entries = read_store(file_);
  const std::int64_t now = env_.now_ms();
  for (const auto& e : entries) {
    bool live = !e.info.revoked && (e.info.expires_ms == 0 || e.info.expires_ms > now);
    if (live && e.info.name == name)
      throw Conflict("an unrevoked API key named '" + name + "' exists (" + e.info.id +
                     "); revoke it first");
  }
  NewApiKey made;
  made.info.id = "k" + security::to_hex(security::random_bytes(8));
  made.info.name = name;
  made.info.role_hint = role_hint;
  made.info.created_ms = now;
  made.info.expires_ms = ttl_ms == 0 ? 0 : now + ttl_ms;
  std::string raw = security::random_bytes(kKeyBytes);
  made.key = std::string(kPrefix) + security::base64url_encode(raw);
  security::secure_wipe(raw);
  Entry e{made.info, security::sha256(made.key)};
  entries.push_back(std::move(e));
  write_store(file_, entries);
  return made;
}

std::vector<ApiKeyInfo> ApiKeyStore::list() const {
  std::vector<ApiKeyInfo> out;
  for (auto& e : read_store(file_)) out.push_back(std::move(e.info));
  return out;
}

void ApiKeyStore::revoke(const std::string& id) {
  StoreLock lock(file_);
  auto entries = read_store(file_);
  for (auto& e : entries) {
    if (e.info.id != id) continue;
    if (!e.info.revoked) {
      e.info.revoked = true;
      write_store(file_, entries);
    }
    return;
  }
  throw NotFound("no API key with id '" + id + "' in " + file_.string());
}

Principal ApiKeyStore::authenticate(std::string_view key) {
  if (key.size() != kPrefix.size() + kKeyChars || key.substr(0, kPrefix.size()) != kPrefix)
    throw Unauthenticated("API key refused: malformed (expected amq_ and 43 characters)");
  const std::string hash = security::sha256(key);
  StoreLock lock(file_, /*required=*/false);
  auto entries = read_store(file_);
  Entry* found = nullptr;
  for (auto& e : entries) {
    // No early exit: every entry is compared.
    if (security::constant_time_equal(e.hash, hash)) found = &e;
  }
  if (!found) throw Unauthenticated("API key refused: unknown key");
  ApiKeyInfo& info = found->info;
  const std::int64_t now = env_.now_ms();
  if (info.revoked)
    throw Unauthenticated("API key refused: key " + info.id + " ('" + info.name + "') is revoked");
  if (info.expires_ms != 0 && now >= info.expires_ms)
    throw Unauthenticated("API key refused: key " + info.id + " ('" + info.name + "') has expired");
  // The last-used time is bookkeeping: a store that cannot be written
  // (read-only deployment) still authenticates.
  if (lock.held() && now - info.last_used_ms >= kLastUsedResolutionMs) {
    info.last_used_ms = now;
    try {
      write_store(file_, entries);
    } catch (const Error& e) {
      core::log(core::LogLevel::warn, "apikey",
                std::string("cannot record the last use of key ") + info.id + ": " + e.what());
    }
  }
  Principal p;
  p.kind = "apikey";
  p.name = info.name;
  if (!info.role_hint.empty()) p.claims["role_hint"].push_back(info.role_hint);
  p.claims["key_id"].push_back(info.id);
  return p;
}

}  // namespace asyncmq

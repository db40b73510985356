#include "security/audit_crypto.hpp"

#include <asyncmq/error.hpp>

#include "security/crypto.hpp"
#include "security/jose.hpp"

#include <boost/json.hpp>

#include <openssl/err.h>
#include <openssl/evp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace asyncmq::security {
namespace {

[[noreturn]] void throw_openssl(std::string_view operation) {
  unsigned long first = ERR_get_error();
  while (ERR_get_error() != 0) {
  }
  std::string msg = "openssl: " + std::string(operation) + " failed";
  if (first != 0) {
    char buf[256];
    ERR_error_string_n(first, buf, sizeof buf);
    msg += std::string(" (") + buf + ")";
  }
  throw Error(errc::backend_failure, msg);
}

const unsigned char* u8(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

[[noreturn]] void file_error(errc code, const std::filesystem::path& path, const std::string& why) {
  throw Error(code, path.string() + ": " + why);
}

// "name value" lines after a header line; returns value of `name` or throws.
struct KeyValues {
  std::vector<std::pair<std::string, std::string>> items;
  const std::filesystem::path* path;
  const std::string& get(std::string_view name) const {
    for (const auto& [k, v] : items)
      if (k == name) return v;
    throw InvalidArgument(path->string() + ": missing field '" + std::string(name) + "'");
  }
};

KeyValues parse_key_values(std::string_view text, std::string_view header,
                           const std::filesystem::path& path) {
  KeyValues kv{{}, &path};
  std::size_t pos = 0;
  bool first = true;
  std::size_t line_no = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    if (first) {
      if (line != header)
        throw InvalidArgument(path.string() + ": not an asyncmq audit key file of this kind "
                              "(expected first line '" + std::string(header) + "')");
      first = false;
      continue;
    }
    std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0)
      throw InvalidArgument(path.string() + ": line " + std::to_string(line_no) +
                            " is not 'name value'");
    kv.items.emplace_back(std::string(line.substr(0, sp)), std::string(line.substr(sp + 1)));
  }
  if (first) throw InvalidArgument(path.string() + ": empty key file");
  return kv;
}

std::uint64_t parse_u64(const std::string& s, std::string_view name, const std::filesystem::path& path) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
    throw InvalidArgument(path.string() + ": field '" + std::string(name) + "' is not a number");
  return std::stoull(s);
}

Secret decode_key(const std::string& b64, std::string_view name, const std::filesystem::path& path) {
  std::string raw;
  try {
    raw = base64_decode(b64);
  } catch (const Error&) {
    throw InvalidArgument(path.string() + ": field '" + std::string(name) + "' is not base64");
  }
  if (raw.size() != 32) {
    secure_wipe(raw);
    throw InvalidArgument(path.string() + ": field '" + std::string(name) +
                          "' must hold 32 bytes");
  }
  return Secret::take(raw);
}

void write_all(int fd, std::string_view text, const std::filesystem::path& path) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      file_error(errc::backend_failure, path, std::string("write failed: ") + std::strerror(errno));
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

void fsync_dir(const std::filesystem::path& path) {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

Secret audit_epoch0_key(std::string_view seed) {
  std::string k = hmac_sha256(seed, "asyncmq-audit-epoch0");
  return Secret::take(k);
}

Secret audit_evolve_key(std::string_view key, std::uint64_t epoch) {
  std::string msg = "asyncmq-audit-evolve";
  put_u64(msg, epoch);
  std::string k = hmac_sha256(key, msg);
  return Secret::take(k);
}

Secret audit_key_for_epoch(std::string_view seed, std::uint64_t target) {
  Secret k = audit_epoch0_key(seed);
  for (std::uint64_t e = 0; e < target; ++e) k = audit_evolve_key(k.reveal(), e);
  return k;
}

Ed25519KeyPair ed25519_generate() {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1)
    throw_openssl("Ed25519 key generation");
  Pkey pkey(raw);
  std::string priv(kEd25519KeyBytes, '\0');
  std::string pub(kEd25519KeyBytes, '\0');
  std::size_t priv_len = priv.size(), pub_len = pub.size();
  if (EVP_PKEY_get_raw_private_key(pkey.get(), reinterpret_cast<unsigned char*>(priv.data()),
                                   &priv_len) != 1 ||
      EVP_PKEY_get_raw_public_key(pkey.get(), reinterpret_cast<unsigned char*>(pub.data()),
                                  &pub_len) != 1 ||
      priv_len != kEd25519KeyBytes || pub_len != kEd25519KeyBytes) {
    secure_wipe(priv);
    throw_openssl("Ed25519 raw key export");
  }
  return {Secret::take(priv), pub};
}

std::string ed25519_public_from_private(std::string_view private_key) {
  if (private_key.size() != kEd25519KeyBytes)
    throw InvalidArgument("Ed25519 private key must be 32 bytes");
  Pkey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, u8(private_key),
                                         private_key.size()));
  if (!pkey) throw_openssl("Ed25519 private key import");
  std::string pub(kEd25519KeyBytes, '\0');
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), reinterpret_cast<unsigned char*>(pub.data()), &len) != 1)
    throw_openssl("Ed25519 public key export");
  return pub;
}

std::string ed25519_sign(std::string_view private_key, std::string_view message) {
  if (private_key.size() != kEd25519KeyBytes)
    throw InvalidArgument("Ed25519 private key must be 32 bytes");
  Pkey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, u8(private_key),
                                         private_key.size()));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> md(EVP_MD_CTX_new());
  if (!pkey || !md) throw_openssl("Ed25519 sign setup");
  std::string sig(kEd25519SigBytes, '\0');
  std::size_t len = sig.size();
  if (EVP_DigestSignInit(md.get(), nullptr, nullptr, nullptr, pkey.get()) != 1 ||
      EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, u8(message),
                     message.size()) != 1 ||
      len != kEd25519SigBytes)
    throw_openssl("Ed25519 sign");
  return sig;
}

bool ed25519_verify(std::string_view public_key, std::string_view message,
                    std::string_view signature) {
  if (public_key.size() != kEd25519KeyBytes || signature.size() != kEd25519SigBytes) return false;
  Pkey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, u8(public_key),
                                        public_key.size()));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> md(EVP_MD_CTX_new());
  if (!pkey || !md) {
    ERR_clear_error();
    return false;
  }
  bool ok = EVP_DigestVerifyInit(md.get(), nullptr, nullptr, nullptr, pkey.get()) == 1 &&
            EVP_DigestVerify(md.get(), u8(signature), signature.size(), u8(message),
                             message.size()) == 1;
  ERR_clear_error();
  return ok;
}

std::string audit_key_id(std::string_view public_key) {
  return to_hex(sha256(public_key).substr(0, 8));
}

std::string read_private_file(const std::filesystem::path& path, std::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT)
      throw NotFound(std::string(what) + " " + path.string() + " does not exist");
    file_error(errc::permission_denied, path, std::string("cannot open ") + std::string(what) +
                                                  ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    file_error(errc::permission_denied, path, std::string(what) + " is not a regular file");
  }
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    file_error(errc::permission_denied, path, std::string(what) + " is not owned by this user");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    file_error(errc::permission_denied, path,
               std::string(what) + " is readable or writable by group or others (chmod 600 it)");
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > 65536) break;
  }
  secure_wipe(buf, sizeof buf);
  ::close(fd);
  return text;
}

AuditWriterKey parse_writer_key(std::string_view text, const std::filesystem::path& path) {
  KeyValues kv = parse_key_values(text, "asyncmq-audit-writer v1", path);
  AuditWriterKey k;
  k.epoch = parse_u64(kv.get("epoch"), "epoch", path);
  k.epoch_start_seq = parse_u64(kv.get("epoch_start_seq"), "epoch_start_seq", path);
  k.epoch_start_ms = static_cast<std::int64_t>(parse_u64(kv.get("epoch_start_ms"), "epoch_start_ms", path));
  k.key = decode_key(kv.get("key"), "key", path);
  k.sign_key = decode_key(kv.get("sign_key"), "sign_key", path);
  for (auto& [name, value] : kv.items) secure_wipe(value);
  return k;
}

std::string render_writer_key(const AuditWriterKey& k) {
  return "asyncmq-audit-writer v1\n"
         "# The audit writer's current epoch key: keep it mode 0600. It can MAC\n"
         "# records from this epoch on, never earlier ones.\n"
         "epoch " + std::to_string(k.epoch) + "\n" +
         "epoch_start_seq " + std::to_string(k.epoch_start_seq) + "\n" +
         "epoch_start_ms " + std::to_string(k.epoch_start_ms) + "\n" +
         "key " + base64_encode(k.key.reveal()) + "\n" +
         "sign_key " + base64_encode(k.sign_key.reveal()) + "\n";
}

AuditVerifyKey parse_verify_key(std::string_view text, const std::filesystem::path& path) {
  KeyValues kv = parse_key_values(text, "asyncmq-audit-verify v1", path);
  AuditVerifyKey k;
  k.seed = decode_key(kv.get("seed"), "seed", path);
  std::string pub;
  try {
    pub = base64_decode(kv.get("public_key"));
  } catch (const Error&) {
    throw InvalidArgument(path.string() + ": field 'public_key' is not base64");
  }
  if (pub.size() != kEd25519KeyBytes)
    throw InvalidArgument(path.string() + ": field 'public_key' must hold 32 bytes");
  k.public_key = pub;
  for (auto& [name, value] : kv.items) secure_wipe(value);
  return k;
}

std::string render_verify_key(const AuditVerifyKey& k) {
  return "asyncmq-audit-verify v1\n"
         "# The audit chain's verification key: whoever holds the seed can forge\n"
         "# the whole chain. Keep it off the hosts that run writers.\n"
         "seed " + base64_encode(k.seed.reveal()) + "\n" +
         "public_key " + base64_encode(k.public_key) + "\n" +
         "key_id " + audit_key_id(k.public_key) + "\n";
}

void replace_private_file(const std::filesystem::path& path, std::string_view text) {
  std::string tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    file_error(errc::backend_failure, tmp, std::string("cannot create: ") + std::strerror(errno));
  try {
    write_all(fd, text, tmp);
    if (::fsync(fd) != 0)
      file_error(errc::backend_failure, tmp, std::string("fsync failed: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    file_error(errc::backend_failure, path, std::string("rename failed: ") + std::strerror(err));
  }
  fsync_dir(path);
}

void create_private_file(const std::filesystem::path& path, std::string_view text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST) throw Conflict(path.string() + " already exists; refusing to overwrite it");
    file_error(err == ENOENT ? errc::not_found : errc::backend_failure, path,
               std::string("cannot create: ") + std::strerror(err));
  }
  try {
    write_all(fd, text, path);
    if (::fsync(fd) != 0)
      file_error(errc::backend_failure, path, std::string("fsync failed: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  fsync_dir(path);
}

}  // namespace asyncmq::security

namespace asyncmq::security {

std::string audit_checkpoint_message(const AuditCheckpoint& c) {
  std::string out = "asyncmq-audit-checkpoint-v1";
  put_u64(out, c.seq);
  put_u64(out, static_cast<std::uint64_t>(c.time_ms));
  put_u64(out, c.epoch);
  for (std::string_view f : {std::string_view(c.mac), std::string_view(c.key_id)}) {
    std::uint32_t n = static_cast<std::uint32_t>(f.size());
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    out.append(f);
  }
  return out;
}

std::string audit_checkpoint_line(const AuditCheckpoint& c) {
  return "{\"seq\":" + std::to_string(c.seq) + ",\"time\":" + std::to_string(c.time_ms) +
         ",\"epoch\":" + std::to_string(c.epoch) + ",\"mac\":\"" + to_hex(c.mac) + "\",\"key\":\"" + c.key_id + "\",\"sig\":\"" +
         base64_encode(c.sig) + "\"}";
}

std::optional<AuditCheckpoint> parse_audit_checkpoint_line(std::string_view line) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(line, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  auto* seq = o.if_contains("seq");
  auto* time = o.if_contains("time");
  auto* epoch = o.if_contains("epoch");
  auto* mac = o.if_contains("mac");
  auto* key = o.if_contains("key");
  auto* sig = o.if_contains("sig");
  if (o.size() != 6 || !seq || !time || !epoch || !epoch->is_number() || !mac || !key || !sig || !mac->is_string() ||
      !key->is_string() || !sig->is_string())
    return std::nullopt;
  AuditCheckpoint c;
  if (seq->is_uint64()) c.seq = seq->as_uint64();
  else if (seq->is_int64() && seq->as_int64() >= 0) c.seq = static_cast<std::uint64_t>(seq->as_int64());
  else return std::nullopt;
  if (time->is_int64()) c.time_ms = time->as_int64();
  else if (time->is_uint64()) c.time_ms = static_cast<std::int64_t>(time->as_uint64());
  else return std::nullopt;
  if (epoch->is_uint64()) c.epoch = epoch->as_uint64();
  else if (epoch->is_int64() && epoch->as_int64() >= 0) c.epoch = static_cast<std::uint64_t>(epoch->as_int64());
  else return std::nullopt;
  c.key_id = std::string(key->as_string());
  try {
    c.mac = from_hex(std::string_view(mac->as_string()));
    c.sig = base64_decode(std::string_view(sig->as_string()));
  } catch (const Error&) {
    return std::nullopt;
  }
  if (audit_checkpoint_line(c) != line) return std::nullopt;  // one spelling only
  return c;
}

}  // namespace asyncmq::security

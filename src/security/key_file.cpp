#include "security/key_file.hpp"

#include "security/crypto.hpp"
#include "security/keyring.hpp"

#include <asyncmq/error.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace asyncmq::security {
namespace {

std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string role_name(KeyState s) { return std::string(to_string(s)); }

[[noreturn]] void fail_io(const std::string& what, int err) {
  throw KeyFileError(err == EACCES || err == EPERM ? errc::permission_denied : errc::invalid_argument,
                     what + ": " + std::strerror(err));
}

}  // namespace

KeyFileEditor::KeyFileEditor(std::filesystem::path path, bool create_missing)
    : path_(std::move(path)) {
  const std::string lock_path = path_.string() + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock_fd_ < 0) fail_io("cannot open lock file " + lock_path, errno);
  while (::flock(lock_fd_, LOCK_EX) != 0) {
    if (errno != EINTR) fail_io("cannot lock " + lock_path, errno);
  }
  struct stat st {};
  if (::lstat(path_.c_str(), &st) != 0 && errno == ENOENT) {
    if (!create_missing)
      throw KeyFileError(errc::not_found, "key file " + path_.string() + " does not exist");
    // No semicolon: the key format also splits lines at one.
    lines_.push_back("# asyncmq keys: <id> <role> <base64 key> [created=<ms>], keep this file 0600");
    return;
  }
  // The same checks as every reader of the file (mode, owner, format).
  (void)Keyring::load_file(path_);
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) fail_io("cannot open key file " + path_.string(), errno);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  secure_wipe(buf, sizeof buf);
  ::close(fd);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    lines_.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  secure_wipe(text);
}

KeyFileEditor::~KeyFileEditor() {
  for (auto& l : lines_) secure_wipe(l);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string KeyFileEditor::text() const {
  std::string t;
  for (const auto& l : lines_) {
    t += l;
    t += '\n';
  }
  return t;
}

std::shared_ptr<Keyring> KeyFileEditor::ring() const {
  std::string t = text();
  try {
    auto ring = Keyring::parse(t, path_.string());
    secure_wipe(t);
    return ring;
  } catch (...) {
    secure_wipe(t);
    throw;
  }
}

std::string KeyFileEditor::add(std::string id, std::int64_t now_ms, bool index) {
  if (id.empty()) {
    std::time_t secs = static_cast<std::time_t>(now_ms / 1000);
    std::tm tm {};
    gmtime_r(&secs, &tm);
    char date[16];
    std::strftime(date, sizeof date, "%Y%m%d", &tm);
    id = std::string("k") + date + "-" + to_hex(random_bytes(2));
  }
  if (!valid_key_id(id)) throw InvalidArgument("key id must be 1..64 characters from [A-Za-z0-9._-]");
  auto current = ring();
  for (const auto& k : current->list())
    if (k.id == id) throw Conflict("key id '" + id + "' is already in the key file");
  if (index && current->has_index_key()) throw Conflict("the key file already has an index key");
  std::string key = random_bytes(kAes256KeyBytes);
  std::string line = id + (index ? " index " : " decrypt-only ") + base64_encode(key) +
                     " created=" + std::to_string(now_ms);
  secure_wipe(key);
  lines_.push_back(std::move(line));
  return id;
}

void KeyFileEditor::set_state(const std::string& id, KeyState state) {
  bool found = false;
  for (auto& line : lines_) {
    auto f = split_fields(line);
    if (f.size() < 3 || f[0].front() == '#') continue;
    std::string role;
    if (f[0] == id) {
      if (f[1] == "index") throw InvalidArgument("key '" + id + "' is the index key; it has no state");
      role = role_name(state);
      found = true;
    } else if (state == KeyState::primary && f[1] == "primary") {
      role = role_name(KeyState::decrypt_only);
    } else {
      for (auto& x : f) secure_wipe(x);
      continue;
    }
    f[1] = role;
    std::string rebuilt;
    for (std::size_t i = 0; i < f.size(); ++i) rebuilt += (i ? " " : "") + f[i];
    secure_wipe(line);
    line = std::move(rebuilt);
    for (auto& x : f) secure_wipe(x);
  }
  if (!found) throw NotFound("no key with id '" + id + "' in " + path_.string());
}

void KeyFileEditor::save() {
  (void)ring();  // never write a file the keyring would refuse
  const std::string dir = path_.has_parent_path() ? path_.parent_path().string() : ".";
  const std::string tmp = dir + "/." + path_.filename().string() + ".tmp-" + to_hex(random_bytes(6));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) fail_io("cannot create " + tmp, errno);
  std::string t = text();
  std::string_view rest = t;
  int err = 0;
  while (!rest.empty()) {
    ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  secure_wipe(t);
  if (!err && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  if (!err && ::rename(tmp.c_str(), path_.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    fail_io("cannot write key file " + path_.string(), err);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace asyncmq::security

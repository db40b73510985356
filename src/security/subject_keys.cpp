// Subject key stores: where each data subject's wrapped data key lives,
// apart from the jobs, so that destroying it shreds every copy of the
// subject's jobs (see SubjectKeyStore in include/asyncmq/security.hpp).
//
// The directory store keeps one small file per subject, named by the blind
// index (64 lowercase hex characters: safe as a file name, and checked, so
// a stored subject can never name a path outside the directory).
//   put_if_absent  write a temporary file, fsync, link(2) it to the final
//                  name (link fails if the name exists, so of two processes
//                  creating a subject's key at once exactly one wins and the
//                  other reads the winner's), unlink the temporary.
//   replace        under an exclusive flock on the directory: compare, then
//                  write a temporary file and rename(2) it over the name.
//   destroy        under the same lock: overwrite with zeros, fsync, unlink,
//                  fsync the directory.
// Why files and not a table next to the jobs: a copy of the job store (a
// backup, a copied database file) must not carry the keys with it, or
// destroying them would not make the copy unreadable. Why not a single file:
// destroying one key would then rewrite every other key.
#include <asyncmq/error.hpp>
#include <asyncmq/security.hpp>

#include "security/crypto.hpp"
#include "security/sealing_codec.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

namespace asyncmq {
namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

[[noreturn]] void fail_io(const std::string& what, int err) {
  throw Error(errc::backend_failure, "subject key store: " + what + ": " + std::strerror(err));
}

void write_all(int fd, std::string_view bytes, const std::string& what) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io(what, errno);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void check_index(std::string_view index) {
  if (!security::valid_blind_index(index))
    throw InvalidArgument("subject key store: not a blind index (64 lowercase hex characters)");
}

class DirStore final : public SubjectKeyStore {
 public:
  explicit DirStore(std::string dir) : dir_(std::move(dir)) {
    if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
      throw KeyFileError(errno == EACCES ? errc::permission_denied : errc::invalid_argument,
                         "cannot create subject key directory " + dir_ + ": " +
                             std::strerror(errno));
    struct stat st {};
    if (::lstat(dir_.c_str(), &st) != 0)
      throw KeyFileError(errc::invalid_argument,
                         "cannot stat subject key directory " + dir_ + ": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode))
      throw KeyFileError(errc::invalid_argument,
                         "subject key path " + dir_ + " is not a directory");
    if ((st.st_mode & 077) != 0 || st.st_uid != ::geteuid())
      throw KeyFileError(errc::permission_denied,
                         "subject key directory " + dir_ +
                             " must be owned by the current user and closed to group and others "
                             "(chmod 700 it); refusing to use it");
  }

  std::optional<std::string> get(std::string_view index) override {
    check_index(index);
    return read_file(path(index));
  }

  std::string put_if_absent(std::string_view index, std::string_view wrapped) override {
    check_index(index);
    const std::string final_path = path(index);
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (auto existing = read_file(final_path)) return *existing;
      const std::string tmp = write_temp(wrapped);
      int rc = ::link(tmp.c_str(), final_path.c_str());
      int err = errno;
      ::unlink(tmp.c_str());
      if (rc == 0) {
        sync_dir();
        return std::string(wrapped);
      }
      if (err != EEXIST) fail_io("link " + final_path, err);
      // Someone else stored one first: read theirs (unless it was destroyed
      // in between, then try again).
    }
    throw Error(errc::busy, "subject key store: could not store a key (concurrent changes)");
  }

  bool replace(std::string_view index, std::string_view expected,
               std::string_view wrapped) override {
    check_index(index);
    const std::string final_path = path(index);
    Lock lock(*this);
    auto current = read_file(final_path);
    if (!current || !security::constant_time_equal(*current, expected)) return false;
    const std::string tmp = write_temp(wrapped);
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      fail_io("rename to " + final_path, err);
    }
    sync_dir();
    return true;
  }

  bool destroy(std::string_view index) override {
    check_index(index);
    const std::string final_path = path(index);
    Lock lock(*this);
    Fd fd(::open(final_path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
      if (errno == ENOENT) return false;
      fail_io("open " + final_path, errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) {
      write_all(fd.get(), std::string(static_cast<std::size_t>(st.st_size), '\0'),
                "overwrite " + final_path);
      ::fsync(fd.get());
    }
    if (::unlink(final_path.c_str()) != 0 && errno != ENOENT) fail_io("unlink " + final_path, errno);
    sync_dir();
    return true;
  }

  std::vector<std::string> list() override {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir_.c_str());
    if (!d) fail_io("open directory " + dir_, errno);
    while (dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (security::valid_blind_index(name)) out.emplace_back(name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  // An exclusive flock on the directory: serialises replace and destroy
  // across processes (put_if_absent needs none: link is atomic).
  class Lock {
   public:
    explicit Lock(DirStore& s) : fd_(::open(s.dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
      if (fd_.get() < 0) fail_io("open directory " + s.dir_, errno);
      while (::flock(fd_.get(), LOCK_EX) != 0) {
        if (errno != EINTR) fail_io("lock directory " + s.dir_, errno);
      }
    }

   private:
    Fd fd_;  // closing it releases the lock
  };

  std::string path(std::string_view index) const { return dir_ + "/" + std::string(index); }

  std::optional<std::string> read_file(const std::string& p) {
    Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
      if (errno == ENOENT) return std::nullopt;
      fail_io("open " + p, errno);
    }
    std::string out;
    char buf[512];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_io("read " + p, errno);
      }
      if (n == 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      if (out.size() > 4096) throw Error(errc::corrupt_store, "subject key store: " + p + " is too large");
    }
    return out;
  }

  // Writes `bytes` to a fresh temporary file (0600) in the directory,
  // fsynced; returns its path.
  std::string write_temp(std::string_view bytes) {
    std::string tmp = dir_ + "/.tmp-" + security::to_hex(security::random_bytes(8));
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd.get() < 0) fail_io("create " + tmp, errno);
    try {
      write_all(fd.get(), bytes, "write " + tmp);
      if (::fsync(fd.get()) != 0) fail_io("fsync " + tmp, errno);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
    return tmp;
  }

  void sync_dir() {
    Fd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() >= 0) ::fsync(fd.get());
  }

  std::string dir_;
};

class MemoryStore final : public SubjectKeyStore {
 public:
  std::optional<std::string> get(std::string_view index) override {
    check_index(index);
    std::lock_guard lock(mu_);
    auto it = keys_.find(index);
    if (it == keys_.end()) return std::nullopt;
    return it->second;
  }
  std::string put_if_absent(std::string_view index, std::string_view wrapped) override {
    check_index(index);
    std::lock_guard lock(mu_);
    return keys_.try_emplace(std::string(index), wrapped).first->second;
  }
  bool replace(std::string_view index, std::string_view expected,
               std::string_view wrapped) override {
    check_index(index);
    std::lock_guard lock(mu_);
    auto it = keys_.find(index);
    if (it == keys_.end() || it->second != expected) return false;
    it->second = std::string(wrapped);
    return true;
  }
  bool destroy(std::string_view index) override {
    check_index(index);
    std::lock_guard lock(mu_);
    auto it = keys_.find(index);
    if (it == keys_.end()) return false;
    security::secure_wipe(it->second);
    keys_.erase(it);
    return true;
  }
  std::vector<std::string> list() override {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [k, v] : keys_) out.push_back(k);
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string, std::less<>> keys_;  // GUARDED_BY(mu_)
};

}  // namespace

std::shared_ptr<SubjectKeyStore> open_subject_key_dir(const std::filesystem::path& dir) {
  return std::make_shared<DirStore>(dir.string());
}

std::shared_ptr<SubjectKeyStore> make_memory_subject_key_store() {
  return std::make_shared<MemoryStore>();
}

}  // namespace asyncmq

// The audit writer: appends MACed records to the log file, evolves the key,
// writes signed checkpoints. The scheme and the file formats are described
// in include/asyncmq/audit.hpp.
//
// One batch, under the process mutex and an exclusive flock on the log:
//   1. sync: if the log, the checkpoint file or the key file changed since
//      this process last looked (another process appended, evolved or
//      checkpointed), re-read the head, the last checkpoint, the key;
//   2. for each event: evolve the key first if the epoch is due (the new key
//      file is on disk before any record MACed under it), MAC, render;
//   3. one write(2) of all lines (O_APPEND); fdatasync now under
//      AuditFsync::always;
//   4. the hook; a checkpoint if one is due (under always and never).
// A crash inside step 3 can leave a partial last line; the next writer cuts
// it (it was never a record: its batch had not returned) and logs that.
//
// Group commit (AuditFsync::group, the default). The caller's thread writes
// (step 3 without the fdatasync) and wakes the syncer thread, which runs
// one fdatasync at a time, each covering every record written before it
// started: while one runs, later batches pile up for the next. So the
// callers (a worker's event loop) never wait for the disk, and the disk
// sees at most one flush in flight per log instead of one per batch. After
// each fdatasync the syncer writes the periodic checkpoint if one is due,
// anchoring the last record it made durable, never a later one: a machine
// crash can lose the tail written since, but never leaves a checkpoint
// naming records that are gone (verify would report that as a cut tail).
// Checkpoints written on the caller's thread (before a key evolution, by
// tick(), checkpoint() and close()) first fdatasync the log, for the same
// reason. The syncer's fdatasync of the checkpoint file runs outside the
// locks; the one before an evolution does not (the key file must not get
// ahead of it). Why no timer: a flush as soon as the last one finishes
// needs no clock, and batches grow by themselves when the disk is slow.
#include <asyncmq/audit.hpp>
#include <asyncmq/env.hpp>

#include "core/log.hpp"
#include "security/audit_crypto.hpp"
#include "security/crypto.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

namespace asyncmq {
namespace {

constexpr std::size_t kMaxHeld = 100'000;
// AuditFsync::group starts at most one fdatasync per window. Flushing
// again as soon as the last one finished kept one flush in flight at all
// times under load (about 200 a second here), and on a virtual machine
// each costs CPU time in the driver that the worker then lacks: the
// syncer's share of a 30,000-job audited bench fell from 474 to 108 perf
// samples with the window (the end-to-end ratio moved within its noise,
// 0.82 to 0.84). It adds at most
// the window to the time until a record is on disk; the store itself
// (sqlite:// with sync=normal) flushes only at its checkpoints.
constexpr std::chrono::nanoseconds kGroupWindow = std::chrono::milliseconds(10);
constexpr std::size_t kMaxField = 256;

[[noreturn]] void io_error(const std::filesystem::path& path, const char* what) {
  throw Error(errc::backend_failure, "audit: " + path.string() + ": " + what + ": " +
                                         std::strerror(errno));
}

class FileLock {
 public:
  FileLock(int fd, const std::filesystem::path& path) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) io_error(path, "flock failed");
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

bool is_blind_index(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Printable ASCII only, bounded length: a record is one readable line and
// the canonical encoding round-trips through JSON exactly.
// Into `out`, reusing its buffer: the writer sanitises every field of every
// record, and fresh strings per field showed in its profile.
void clean_into(std::string_view s, std::string& out) {
  out.assign(s.substr(0, kMaxField));
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
}

void sanitize_into(const AuditEvent& e, AuditEvent& out) {
  clean_into(e.action, out.action);
  clean_into(e.actor, out.actor);
  clean_into(e.job, out.job);
  clean_into(e.queue, out.queue);
  clean_into(e.detail, out.detail);
  // Never a subject in the clear: only a blind index passes.
  if (is_blind_index(e.subject)) {
    out.subject = e.subject;
  } else if (!e.subject.empty()) {
    out.subject = "unindexed";
  } else {
    out.subject.clear();
  }
}

void write_all(int fd, std::string_view text, const std::filesystem::path& path) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      io_error(path, "write failed");
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

struct LastLine {
  std::string line;     // without the newline; empty if the file has none
  off_t good_size = 0;  // size up to and including the last newline
};

// The last complete line of `fd` (size `size`), reading backwards.
LastLine read_last_line(int fd, off_t size, const std::filesystem::path& path) {
  LastLine out;
  std::string tail;  // bytes [pos, size)
  off_t pos = size;
  constexpr off_t kChunk = 4096;
  std::optional<off_t> last_nl;
  while (pos > 0) {
    off_t start = pos > kChunk ? pos - kChunk : 0;
    std::string chunk(static_cast<std::size_t>(pos - start), '\0');
    ssize_t n = ::pread(fd, chunk.data(), chunk.size(), start);
    if (n != static_cast<ssize_t>(chunk.size())) io_error(path, "read failed");
    tail.insert(0, chunk);
    pos = start;
    if (!last_nl) {
      auto i = tail.rfind('\n');
      if (i != std::string::npos) last_nl = pos + static_cast<off_t>(i);
    }
    if (last_nl) {
      std::size_t rel = static_cast<std::size_t>(*last_nl - pos);
      auto prev = rel == 0 ? std::string::npos : tail.rfind('\n', rel - 1);
      if (prev != std::string::npos || pos == 0) {
        std::size_t begin = prev == std::string::npos ? 0 : prev + 1;
        out.line = tail.substr(begin, rel - begin);
        out.good_size = *last_nl + 1;
        return out;
      }
    }
    if (size - pos > (1 << 20)) break;  // no line is that long
  }
  out.good_size = last_nl ? *last_nl + 1 : 0;
  return out;
}

// A store's position in the chain: the outbox row and the index within it
// of its last relayed event; seq 0 when none.
struct OutboxCursor {
  std::int64_t seq = 0;
  std::int64_t index = -1;
  bool operator<(const OutboxCursor& o) const {
    return seq < o.seq || (seq == o.seq && index < o.index);
  }
};

// "<store>:<seq>:<index>" (AuditRecord::source) split; nullopt if malformed.
std::optional<std::pair<std::string_view, OutboxCursor>> parse_source(std::string_view s) {
  auto b = s.rfind(':');
  if (b == std::string_view::npos || b == 0) return std::nullopt;
  auto a = s.rfind(':', b - 1);
  if (a == std::string_view::npos || a == 0) return std::nullopt;
  OutboxCursor c;
  auto num = [](std::string_view t, std::int64_t& v) {
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    return ec == std::errc() && p == t.data() + t.size() && !t.empty() && v >= 0;
  };
  if (!num(s.substr(a + 1, b - a - 1), c.seq) || !num(s.substr(b + 1), c.index)) return std::nullopt;
  return std::make_pair(s.substr(0, a), c);
}

void append_number(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;  // 24 characters hold any int64
  out.append(buf, end);
}

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  timespec mtime{};
  bool operator==(const FileId& o) const {
    return dev == o.dev && ino == o.ino && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

std::optional<FileId> file_id(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino, st.st_mtim};
}

}  // namespace

namespace {

// Renders `count` events as the records after `h`, under the epoch key
// `mac` of `epoch`: their JSON lines appended to `buf` (the end of each
// line, before its newline, to `ends` if given), `canonical` as scratch.
// Returns the head after them. Touches nothing else, so it needs no lock:
// the auditing Backend's relay runs it at idle priority (OutboxBatch).
AuditHead render_records(const AuditEvent* const* events, const std::string_view* sources,
                         std::size_t count, AuditHead h, std::uint64_t epoch, std::int64_t now,
                         security::HmacSha256& mac, std::string& buf, std::string& canonical,
                         std::vector<std::size_t>* ends) {
  buf.reserve(buf.size() + count * 400);
  if (ends) ends->reserve(ends->size() + count);
  AuditRecord r;
  for (std::size_t i = 0; i < count; ++i) {
    r.seq = h.seq + 1;
    r.time_ms = now;
    r.epoch = epoch;
    sanitize_into(*events[i], r.event);
    if (sources) clean_into(sources[i], r.source);
    r.prev_mac = std::move(h.mac);
    canonical.clear();
    security::append_audit_canonical(r, canonical);
    r.mac = mac.mac(canonical);
    security::append_audit_json_line(r, buf);
    if (ends) ends->push_back(buf.size());
    buf.push_back('\n');
    h.seq = r.seq;
    h.epoch = r.epoch;
    h.mac = std::move(r.mac);
  }
  return h;
}

}  // namespace

struct AuditLog::Impl {
  AuditOptions opt;
  Env& env;
  mutable std::mutex mu;
  int log_fd = -1;
  int cp_fd = -1;
  off_t log_seen = -1;
  off_t cp_seen = -1;
  AuditHead head;
  std::uint64_t cp_seq = 0;
  std::int64_t cp_time = 0;
  security::AuditWriterKey key;
  security::HmacSha256 mac;  // keyed with key.key (rekey() after each change)
  std::optional<FileId> key_file;
  std::string key_id;
  bool key_dirty = false;
  std::vector<AuditEvent> held;
  std::string line_buf;       // write_records' lines (reused; GUARDED_BY(mu))
  std::string canonical_buf;  // write_records' canonical encoding (reused)
  // Per store that relays into this log (append_outbox), its last record
  // here: valid for the log up to log_seen (sync keeps it so), cleared when
  // that cannot be known (the log shrank, a failed write).
  std::map<std::string, OutboxCursor, std::less<>> cursors;
  std::uint64_t failures = 0;
  std::uint64_t dropped = 0;
  bool closed = false;

  // ---- durability (all GUARDED_BY(mu)) ----
  // The newest record known to be on disk (an fdatasync of the log finished
  // after it was written).
  AuditHead durable;
  // Records were written since the last fdatasync started.
  bool unsynced = false;
  // Per store relayed by this object: what its outbox may lose (see
  // trimmable_through). `pending`: (the head after a relay, the outbox seq
  // it relayed through), oldest first, until durable reaches the head.
  struct Relayed {
    std::deque<std::pair<std::uint64_t, std::int64_t>> pending;
    std::int64_t trimmable = 0;
  };
  std::map<std::string, Relayed, std::less<>> relayed;

  // Notes that the rows of `store` through `through` are in the chain up
  // to the head. REQUIRES: mu held.
  void note_relayed(std::string_view store, std::int64_t through) {
    auto it = relayed.find(store);
    if (it == relayed.end()) it = relayed.emplace(std::string(store), Relayed{}).first;
    Relayed& r = it->second;
    const std::int64_t last = r.pending.empty() ? r.trimmable : r.pending.back().second;
    if (through <= last) return;
    r.pending.emplace_back(head.seq, through);
    // Records another process appended are covered by our next flush; under
    // group one is due, under always it happens here (rarely: only when
    // another process relayed rows of this store).
    if (durable.seq >= head.seq) return;
    if (opt.fsync == AuditFsync::group && !unsynced) {
      unsynced = true;
      wake.notify_one();
    } else if (opt.fsync == AuditFsync::always) {
      flush_or_log();
    }
  }
  // make_log_durable, with a failure counted and logged instead of thrown:
  // the records stay in the page cache and their outbox rows stay too.
  // REQUIRES: mu held.
  void flush_or_log() {
    try {
      make_log_durable();
    } catch (const std::exception& ex) {
      ++failures;
      core::log(core::LogLevel::error, "audit",
                std::string("flush failed (the relayed outbox rows are kept until one succeeds): ") +
                    ex.what());
    }
  }
  // REQUIRES: mu held.
  std::int64_t trimmable(std::string_view store) {
    auto it = relayed.find(store);
    if (it == relayed.end()) return 0;
    Relayed& r = it->second;
    const bool all = opt.fsync == AuditFsync::never;
    while (!r.pending.empty() && (all || r.pending.front().first <= durable.seq)) {
      r.trimmable = std::max(r.trimmable, r.pending.front().second);
      r.pending.pop_front();
    }
    return r.trimmable;
  }
  // The syncer thread (AuditFsync::group only) and its stop flag.
  std::thread syncer;
  std::condition_variable wake;
  bool stop_syncer = false;

  Impl(AuditOptions o, Env& e) : opt(std::move(o)), env(e) {}
  ~Impl() {
    stop();
    if (log_fd >= 0) ::close(log_fd);
    if (cp_fd >= 0) ::close(cp_fd);
  }

  // Stops and joins the syncer, if it runs. REQUIRES: mu not held.
  void stop() {
    {
      std::lock_guard lock(mu);
      stop_syncer = true;
    }
    wake.notify_all();
    if (syncer.joinable()) syncer.join();
  }

  void rekey() { mac = security::HmacSha256(key.key.reveal()); }

  void load_key() {
    std::string text = security::read_private_file(opt.writer_key_path, "audit writer key");
    try {
      key = security::parse_writer_key(text, opt.writer_key_path);
    } catch (...) {
      security::secure_wipe(text);
      throw;
    }
    security::secure_wipe(text);
    key_file = file_id(opt.writer_key_path);
    rekey();
  }

  void save_key() {
    std::string text = security::render_writer_key(key);
    try {
      security::replace_private_file(opt.writer_key_path, text);
    } catch (...) {
      security::secure_wipe(text);
      throw;
    }
    security::secure_wipe(text);
    key_file = file_id(opt.writer_key_path);
    key_dirty = false;
  }

  // One step forward; the old key is wiped by Secret's assignment.
  void evolve(std::uint64_t next_seq, std::int64_t now) {
    key.key = security::audit_evolve_key(key.key.reveal(), key.epoch);
    ++key.epoch;
    key.epoch_start_seq = next_seq;
    key.epoch_start_ms = now;
    key_dirty = true;
    rekey();
  }

  // REQUIRES: the flock is held.
  void sync() {
    struct stat st {};
    if (::fstat(log_fd, &st) != 0) io_error(opt.log_path, "stat failed");
    if (st.st_size != log_seen) {
      LastLine last = read_last_line(log_fd, st.st_size, opt.log_path);
      if (last.good_size != st.st_size) {
        core::log(core::LogLevel::warn, "audit",
                  opt.log_path.string() + " ended in a partial record (a crash during a write?); "
                  "cutting " + std::to_string(st.st_size - last.good_size) + " bytes");
        if (::ftruncate(log_fd, last.good_size) != 0) io_error(opt.log_path, "truncate failed");
      }
      if (last.line.empty()) {
        head = {};
      } else {
        auto r = audit_from_json_line(last.line);
        if (!r)
          throw IntegrityError("audit: the last line of " + opt.log_path.string() +
                               " is not a record; run 'asyncmq audit verify'");
        head.seq = r->seq;
        head.epoch = r->epoch;
        head.mac = r->mac;
      }
      if (!cursors.empty()) {
        if (log_seen >= 0 && last.good_size > log_seen)
          scan_forward(log_seen, last.good_size);  // what other writers appended
        else
          cursors.clear();
      }
      log_seen = last.good_size;
    }
    if (auto id = file_id(opt.writer_key_path); !key_file || !id || !(*id == *key_file)) {
      std::uint64_t mine = key.epoch;
      security::AuditWriterKey before = std::move(key);
      load_key();
      if (key.epoch < mine) {  // an older file put back: keep the newer key
        core::log(core::LogLevel::warn, "audit",
                  opt.writer_key_path.string() + " holds an older epoch than this writer; "
                  "rewriting it");
        key = std::move(before);
        rekey();
        save_key();
      }
    }
    if (head.seq > 0 && key.epoch < head.epoch) {
      // Records under a later epoch exist (written by a process whose key
      // file write was lost): the derivation is one-way forward, so follow.
      if (head.epoch - key.epoch > 1'000'000)
        throw IntegrityError("audit: the log is at epoch " + std::to_string(head.epoch) +
                             " and the writer key at " + std::to_string(key.epoch) +
                             "; is the key file from another chain?");
      while (key.epoch < head.epoch) evolve(head.seq + 1, env.now_ms());
      save_key();
    }
    if (::fstat(cp_fd, &st) != 0) io_error(opt.checkpoint_path, "stat failed");
    if (st.st_size != cp_seen) {
      LastLine last = read_last_line(cp_fd, st.st_size, opt.checkpoint_path);
      if (auto c = last.line.empty() ? std::nullopt
                                     : security::parse_audit_checkpoint_line(last.line)) {
        cp_seq = c->seq;
        cp_time = c->time_ms;
      }
      cp_seen = st.st_size;
    }
  }

  bool epoch_due(std::uint64_t next_seq, std::int64_t now) const {
    return (next_seq >= key.epoch_start_seq && next_seq - key.epoch_start_seq >= opt.epoch_records) ||
           (key.epoch_start_ms != 0 && now - key.epoch_start_ms >= opt.epoch_ms);
  }

  // Moves to the next epoch if it is due. First anchors the records of the
  // ending epoch with a checkpoint (which carries that epoch), so that no
  // record of a finished epoch can later be relabelled with a newer key and
  // pass: the verifier refuses a record whose epoch is later than that of
  // any checkpoint at or after it. REQUIRES: the flock is held.
  void maybe_evolve(std::int64_t now) {
    std::uint64_t next_seq = head.seq + 1;
    if (key.epoch_start_ms == 0) {
      key.epoch_start_ms = now;
      key_dirty = true;
    }
    if (epoch_due(next_seq, now)) {
      if (head.seq > cp_seq) write_checkpoint(now);
      evolve(next_seq, now);
    }
    if (key_dirty) save_key();  // on disk before any record MACed under it
  }

  // Makes every record up to the head durable, so that a checkpoint may
  // name it. Nothing under AuditFsync::never, which promises nothing.
  // REQUIRES: mu held.
  void make_log_durable() {
    if (opt.fsync == AuditFsync::never || (!unsynced && durable.seq >= head.seq)) return;
    if (::fdatasync(log_fd) != 0) io_error(opt.log_path, "fdatasync failed");
    durable = head;
    unsynced = false;
  }

  // Appends a signed checkpoint of `h` (a record in the log), and
  // fdatasyncs the checkpoint file if `sync_now`. REQUIRES: the flock is
  // held, h.seq > cp_seq, the log durable up to h.
  void write_checkpoint_of(const AuditHead& h, std::int64_t now, bool sync_now) {
    security::AuditCheckpoint c;
    c.seq = h.seq;
    c.time_ms = now;
    c.epoch = h.epoch;
    c.mac = h.mac;
    c.key_id = key_id;
    c.sig = security::ed25519_sign(key.sign_key.reveal(), security::audit_checkpoint_message(c));
    std::string line = security::audit_checkpoint_line(c) + "\n";
    write_all(cp_fd, line, opt.checkpoint_path);
    if (sync_now && ::fdatasync(cp_fd) != 0) io_error(opt.checkpoint_path, "fdatasync failed");
    cp_seen += static_cast<off_t>(line.size());
    cp_seq = c.seq;
    cp_time = now;
  }

  // A checkpoint of the head, durable with the records it names.
  // REQUIRES: the flock is held, head.seq > cp_seq.
  void write_checkpoint(std::int64_t now) {
    make_log_durable();
    write_checkpoint_of(head, now, /*sync_now=*/true);
  }

  bool checkpoint_due(std::uint64_t seq, std::int64_t now) const {
    return seq > cp_seq && (seq - cp_seq >= opt.checkpoint_records || now - cp_time >= opt.checkpoint_ms);
  }

  void maybe_checkpoint(std::int64_t now) {
    if (checkpoint_due(head.seq, now)) write_checkpoint(now);
  }

  // The syncer thread (AuditFsync::group): see the file comment.
  void syncer_loop() {
    std::unique_lock lock(mu);
    std::int64_t next_start_ns = env.monotonic_ns();
    for (;;) {
      wake.wait(lock, [&] { return stop_syncer || unsynced; });
      // At most one flush per kGroupWindow: see there. (A test's clock
      // that stands still makes this one window of real time, no more.)
      if (const std::int64_t wait_ns = next_start_ns - env.monotonic_ns(); wait_ns > 0)
        wake.wait_for(lock, std::chrono::nanoseconds(std::min<std::int64_t>(wait_ns, kGroupWindow.count())),
                      [&] { return stop_syncer; });
      if (stop_syncer) return;
      next_start_ns = env.monotonic_ns() + kGroupWindow.count();
      unsynced = false;
      const AuditHead target = head;
      lock.unlock();
      const int rc = ::fdatasync(log_fd);
      const int err = errno;
      lock.lock();
      if (rc != 0) {
        ++failures;
        core::log(core::LogLevel::error, "audit",
                  opt.log_path.string() + ": fdatasync failed: " + std::strerror(err));
        continue;
      }
      if (target.seq > durable.seq) durable = target;
      bool sync_cp = false;
      try {
        sync_cp = checkpoint_durable();
      } catch (const std::exception& ex) {
        ++failures;
        core::log(core::LogLevel::error, "audit", std::string("checkpoint failed: ") + ex.what());
      }
      if (sync_cp) {
        lock.unlock();
        const int cp_rc = ::fdatasync(cp_fd);
        const int cp_err = errno;
        lock.lock();
        if (cp_rc != 0) {
          ++failures;
          core::log(core::LogLevel::error, "audit",
                    opt.checkpoint_path.string() + ": fdatasync failed: " + std::strerror(cp_err));
        }
      }
    }
  }

  // The syncer's periodic checkpoint, of the durable record, if one is due.
  // Returns whether it wrote one (whose fdatasync the caller then runs).
  // REQUIRES: mu held.
  bool checkpoint_durable() {
    std::int64_t now = env.now_ms();
    if (!checkpoint_due(durable.seq, now)) return false;
    FileLock lock(log_fd, opt.log_path);
    sync();  // another writer may have checkpointed meanwhile
    if (durable.seq <= cp_seq) return false;
    write_checkpoint_of(durable, now, /*sync_now=*/false);
    return true;
  }

  // Writes the held events: one write (and fsync) per epoch they span,
  // usually one. REQUIRES: mu held.
  void flush_held() {
    if (held.empty()) return;
    FileLock lock(log_fd, opt.log_path);
    sync();
    const std::uint64_t first = head.seq + 1;
    std::vector<const AuditEvent*> events;
    events.reserve(held.size());
    for (const AuditEvent& e : held) events.push_back(&e);
    try {
      write_events(events.data(), nullptr, events.size(), env.now_ms());
    } catch (...) {
      // Some lines may be complete (write_records re-read the head): keep
      // only the events not yet written.
      std::size_t done = head.seq >= first
                             ? std::min<std::size_t>(held.size(), head.seq - first + 1)
                             : 0;
      held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(done));
      throw;
    }
    held.clear();
  }

  // Writes `n` events (with their sources, if `sources`), one write per
  // epoch they span, and the checkpoint if due (under always and never).
  // REQUIRES: mu and the flock held, sync() done.
  void write_events(const AuditEvent* const* events, const std::string_view* sources, std::size_t n,
                    std::int64_t now) {
    std::size_t done = 0;
    while (done < n) {
      maybe_evolve(now);
      // As many as fit in this epoch. A key file whose epoch starts after
      // the head (a log put back or cut while the key went on) has used
      // none of it yet: without the guard the difference wraps and every
      // record got a write(2) of its own.
      const std::uint64_t next_seq = head.seq + 1;
      std::uint64_t used = next_seq >= key.epoch_start_seq ? next_seq - key.epoch_start_seq : 0;
      std::size_t room = used >= opt.epoch_records
                             ? 1
                             : static_cast<std::size_t>(std::min<std::uint64_t>(
                                   opt.epoch_records - used, n - done));
      write_records(events + done, sources ? sources + done : nullptr, room, now);
      done += room;
    }
    if (opt.fsync != AuditFsync::group) maybe_checkpoint(now);
  }

  // Writes `count` events under the current key. On a failed write, re-reads
  // the head (some lines may be complete) and rethrows.
  void write_records(const AuditEvent* const* events, const std::string_view* sources, std::size_t count,
                     std::int64_t now) {
    // Buffers kept across batches: a relay batch is ~1000 records of ~350
    // bytes, and a fresh buffer grew by copies and was freed whole each
    // time (memmove and malloc_consolidate in the relay's profile).
    line_buf.clear();
    std::vector<std::size_t> ends;  // of each line in buf, for the hook
    const AuditHead h = render_records(events, sources, count, head, key.epoch, now, mac,
                                       line_buf, canonical_buf, opt.hook ? &ends : nullptr);
    write_rendered(line_buf, ends, h);
  }

  // Appends `buf` (whole lines, rendered from the head by render_records,
  // ending at `h`) to the log and moves the head there. On a failed write,
  // re-reads the head (some lines may be complete) and rethrows.
  void write_rendered(std::string& buf, const std::vector<std::size_t>& ends, const AuditHead& h) {
    try {
      write_all(log_fd, buf, opt.log_path);
    } catch (...) {
      log_seen = -1;
      try {
        sync();
      } catch (...) {
      }
      throw;
    }
    log_seen += static_cast<off_t>(buf.size());
    head = h;
    unsynced = true;
    if (opt.fsync == AuditFsync::always) {
      if (::fdatasync(log_fd) != 0) {
        ++failures;
        core::log(core::LogLevel::error, "audit",
                  opt.log_path.string() + ": fdatasync failed: " + std::strerror(errno));
      } else {
        durable = head;
        unsynced = false;
      }
    } else if (opt.fsync == AuditFsync::group) {
      wake.notify_one();
    }
    if (opt.hook) {
      std::size_t begin = 0;
      for (std::size_t end : ends) {
        try {
          opt.hook(std::string_view(buf).substr(begin, end - begin));
        } catch (const std::exception& ex) {
          core::log(core::LogLevel::warn, "audit", std::string("hook failed: ") + ex.what());
        }
        begin = end + 1;
      }
    }
    if (buf.capacity() > (std::size_t{8} << 20)) std::string().swap(buf);  // a big backlog's, once
  }

  // ---- relaying outboxes (append_outbox) ----

  // Relays b.rows: what append_outbox does once it holds mu. Defined with
  // the helpers below, after AuditLog::OutboxBatch.
  std::int64_t relay_locked(OutboxBatch& b);
  template <class Write>
  OutboxCursor write_batch(OutboxBatch& b, OutboxCursor c, Write&& write);
  // Logs and counts a failed relay; returns the store's cursor as known.
  OutboxCursor relay_failed(std::string_view store, const std::exception& ex);
  std::int64_t relayed_through(const OutboxBatch& b, OutboxCursor c);

  // Notes the record's source in `cursors`, if it names a store tracked there.
  void note_source(std::string_view source) {
    auto src = parse_source(source);
    if (!src) return;
    auto it = cursors.find(src->first);
    if (it != cursors.end() && it->second < src->second) it->second = src->second;
  }

  // Reads the log's bytes [from, to) (complete lines) and notes their sources.
  void scan_forward(off_t from, off_t to) {
    std::string text(static_cast<std::size_t>(to - from), '\0');
    ssize_t n = ::pread(log_fd, text.data(), text.size(), from);
    if (n != static_cast<ssize_t>(text.size())) io_error(opt.log_path, "read failed");
    std::size_t begin = 0;
    while (begin < text.size()) {
      std::size_t end = text.find('\n', begin);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + begin, end - begin);
      if (line.find("\"src\":\"") != std::string_view::npos)
        if (auto r = audit_from_json_line(line)) note_source(r->source);
      begin = end + 1;
    }
  }

  // The store's last record in the log, reading it backwards from the end
  // until one is found (usually within the last batch; the whole log once,
  // for a store that never relayed into it). REQUIRES: the flock, sync().
  OutboxCursor scan_back(std::string_view store) {
    const std::string needle = "\"src\":\"" + std::string(store) + ":";
    std::string rest;  // bytes [pos, ...) not yet examined, ending at a line end
    off_t pos = log_seen;
    constexpr off_t kChunk = 1 << 16;
    for (;;) {
      // Examine the complete lines at the end of `rest`, last first.
      while (!rest.empty()) {
        std::size_t stop = rest.size() - 1;  // rest ends with '\n'
        std::size_t k = stop == 0 ? std::string::npos : rest.rfind('\n', stop - 1);
        if (k == std::string::npos && pos > 0) break;  // the line starts in the next chunk
        std::size_t begin = k == std::string::npos ? 0 : k + 1;
        std::string_view line(rest.data() + begin, stop - begin);
        if (line.find(needle) != std::string_view::npos) {
          if (auto r = audit_from_json_line(line)) {
            auto src = parse_source(r->source);
            if (src && src->first == store) return src->second;
          }
        }
        rest.resize(begin);
      }
      if (pos <= 0) return OutboxCursor{};
      off_t start = pos > kChunk ? pos - kChunk : 0;
      std::string chunk(static_cast<std::size_t>(pos - start), '\0');
      ssize_t n = ::pread(log_fd, chunk.data(), chunk.size(), start);
      if (n != static_cast<ssize_t>(chunk.size())) io_error(opt.log_path, "read failed");
      rest.insert(0, chunk);
      pos = start;
    }
  }

  // REQUIRES: the flock, sync().
  OutboxCursor cursor_of(std::string_view store) {
    auto it = cursors.find(store);
    if (it == cursors.end()) it = cursors.emplace(std::string(store), scan_back(store)).first;
    return it->second;
  }

  // ---- reading lines back (read_lines: the backend sink's source) ----

  // The bytes [off, off + n) of the log. REQUIRES: off + n <= log_seen.
  std::string read_at(off_t off, std::size_t n) const {
    std::string out(n, '\0');
    ssize_t got = ::pread(log_fd, out.data(), n, off);
    if (got != static_cast<ssize_t>(n)) io_error(opt.log_path, "read failed");
    return out;
  }

  // The offset of the first '\n' at or after `from`, or log_seen.
  off_t newline_at_or_after(off_t from) const {
    constexpr off_t kChunk = 4096;
    while (from < log_seen) {
      std::string chunk = read_at(from, static_cast<std::size_t>(std::min(kChunk, log_seen - from)));
      auto i = chunk.find('\n');
      if (i != std::string::npos) return from + static_cast<off_t>(i);
      from += static_cast<off_t>(chunk.size());
    }
    return log_seen;
  }

  // The first record line that starts at or after byte `off`: its start
  // and seq; {log_seen, max} when there is none. Lines that are not
  // records are passed over. REQUIRES: the flock, sync().
  std::pair<off_t, std::uint64_t> record_at_or_after(off_t off) const {
    off_t pos = off == 0 ? 0 : newline_at_or_after(off - 1) + 1;
    while (pos < log_seen) {
      off_t nl = newline_at_or_after(pos);
      if (auto r = audit_from_json_line(read_at(pos, static_cast<std::size_t>(nl - pos))))
        return {pos, r->seq};
      pos = nl + 1;
    }
    return {log_seen, std::numeric_limits<std::uint64_t>::max()};
  }

  // See AuditLog::read_lines. The writer appends in seq order, so "the
  // record found at or after byte b has seq > after_seq" is false and then
  // true as b grows: bisect on b for the first such record (a few dozen
  // small reads for any log size, instead of a scan from the start), then
  // read on. REQUIRES: mu, the flock, sync().
  std::vector<AuditChainLine> lines_after(std::uint64_t after_seq, std::size_t limit) const {
    std::vector<AuditChainLine> out;
    if (after_seq >= head.seq) return out;
    off_t lo = 0, hi = log_seen;
    while (lo < hi) {
      off_t mid = lo + (hi - lo) / 2;
      if (record_at_or_after(mid).second > after_seq)
        hi = mid;
      else
        lo = mid + 1;
    }
    off_t pos = record_at_or_after(lo).first;
    constexpr off_t kChunk = 1 << 16;
    std::string buf;  // bytes from pos on, not yet split
    while (out.size() < limit && pos < log_seen) {
      buf += read_at(pos, static_cast<std::size_t>(std::min(kChunk, log_seen - pos)));
      pos += static_cast<off_t>(std::min(kChunk, log_seen - pos));
      std::size_t begin = 0;
      for (std::size_t nl; out.size() < limit && (nl = buf.find('\n', begin)) != std::string::npos;
           begin = nl + 1) {
        std::string_view line(buf.data() + begin, nl - begin);
        auto r = audit_from_json_line(line);
        if (!r || r->seq <= after_seq) continue;
        AuditChainLine l;
        l.seq = static_cast<std::int64_t>(r->seq);
        l.text = std::string(line);
        out.push_back(std::move(l));
      }
      buf.erase(0, begin);
    }
    return out;
  }

  void try_flush() {
    try {
      flush_held();
    } catch (const std::exception& ex) {
      ++failures;
      core::log(core::LogLevel::error, "audit",
                std::string("appending audit records failed; ") + std::to_string(held.size()) +
                    " held for the next attempt: " + ex.what());
    }
  }
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::shared_ptr<AuditLog> AuditLog::open(AuditOptions options, Env& env) {
  if (options.log_path.empty() || options.checkpoint_path.empty() || options.writer_key_path.empty())
    throw InvalidArgument("audit: log_path, checkpoint_path and writer_key_path are all required");
  if (options.epoch_records < 1 || options.checkpoint_records < 1 || options.epoch_ms < 1 ||
      options.checkpoint_ms < 1)
    throw InvalidArgument("audit: epoch and checkpoint intervals must be at least 1");
  if (std::filesystem::absolute(options.log_path) == std::filesystem::absolute(options.checkpoint_path))
    throw InvalidArgument("audit: the checkpoint file must not be the log file");
  auto impl = std::make_unique<Impl>(std::move(options), env);
  Impl& m = *impl;
  m.load_key();
  m.key_id = security::audit_key_id(security::ed25519_public_from_private(m.key.sign_key.reveal()));
  m.log_fd = ::open(m.opt.log_path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (m.log_fd < 0) io_error(m.opt.log_path, "cannot open");
  m.cp_fd = ::open(m.opt.checkpoint_path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                   0600);
  if (m.cp_fd < 0) io_error(m.opt.checkpoint_path, "cannot open");
  {
    FileLock lock(m.log_fd, m.opt.log_path);
    m.sync();
  }
  if (m.cp_time == 0) m.cp_time = env.now_ms();
  std::shared_ptr<AuditLog> log(new AuditLog(std::move(impl)));
  if (m.opt.fsync == AuditFsync::group) m.syncer = std::thread([&m] { m.syncer_loop(); });
  return log;
}

AuditLog::~AuditLog() {
  try {
    close();
  } catch (...) {
  }
}

void AuditLog::append(std::span<const AuditEvent> events) {
  if (events.empty()) return;
  std::lock_guard lock(impl_->mu);
  if (impl_->closed) throw Error(errc::closed, "audit log is closed");
  auto& held = impl_->held;
  held.insert(held.end(), events.begin(), events.end());
  if (held.size() > kMaxHeld) {
    std::size_t over = held.size() - kMaxHeld;
    held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(over));
    impl_->dropped += over;
    core::log(core::LogLevel::error, "audit",
              "dropped " + std::to_string(over) + " audit events that could not be written");
  }
  impl_->try_flush();
}

// A relay batch: the rows, the events of them not yet in the chain with
// their sources, and (when render() may run apart from the lock) a copy of
// the head and of the epoch key's context as prepare_outbox found them.
struct AuditLog::OutboxBatch {
  std::string store;
  std::vector<AuditOutboxRow> owned;       // prepare_outbox's rows
  std::span<const AuditOutboxRow> rows;    // `owned`, or append_outbox's caller's
  std::vector<const AuditEvent*> events;  // into `rows`: no copy per relayed event
  // "<store>:<seq>:<index>" of each event, in one buffer (not a string
  // each: one allocation per relayed record showed in the relay's profile).
  std::string source_text;
  std::vector<std::string_view> sources;
  // For render(): set by prepare_outbox only when every event fits in the
  // current epoch and nothing waits to be written before them.
  std::optional<security::HmacSha256> mac;
  AuditHead start;
  std::uint64_t epoch = 0;
  std::int64_t now = 0;
  // render()'s result: `lines` (empty for a batch prepare_outbox left to
  // commit_outbox) through `end`. `rendered` is set last (release), so a
  // thread that reads it true (acquire) may read the rest.
  std::atomic<bool> rendered{false};
  std::string lines;
  std::vector<std::size_t> ends;
  AuditHead end;
};

namespace {

// Fills batch.events and batch.sources with the events of batch.rows after
// the cursor `c`.
void collect_after(AuditLog::OutboxBatch& b, OutboxCursor c) {
  const std::string prefix = b.store + ":";
  std::vector<std::size_t> source_ends;
  b.events.clear();
  b.source_text.clear();
  for (const AuditOutboxRow& row : b.rows) {
    for (std::size_t i = 0; i < row.events.size(); ++i) {
      OutboxCursor at{row.seq, static_cast<std::int64_t>(i)};
      if (!(c < at)) continue;  // in the chain already
      b.events.push_back(&row.events[i]);
      b.source_text += prefix;
      append_number(b.source_text, row.seq);
      b.source_text.push_back(':');
      append_number(b.source_text, static_cast<std::int64_t>(i));
      source_ends.push_back(b.source_text.size());
    }
  }
  b.sources.clear();
  b.sources.reserve(source_ends.size());
  for (std::size_t i = 0, begin = 0; i < source_ends.size(); begin = source_ends[i++])
    b.sources.emplace_back(b.source_text.data() + begin, source_ends[i] - begin);
}

void check_store(std::string_view store) {
  if (store.empty() || store.find(':') != std::string_view::npos)
    throw InvalidArgument("audit: a store id must be non-empty and hold no ':'");
}

}  // namespace

// Runs `write` (which appends b's events from the head on), then moves the
// store's cursor past them; after a failed write (logged and counted), past
// the lines that made it, as the next relay must not repeat them. Returns
// the store's cursor after it. REQUIRES: mu and the flock held, b.events
// collected after the store's cursor `c`.
template <class Write>
OutboxCursor AuditLog::Impl::write_batch(OutboxBatch& b, OutboxCursor c, Write&& write) {
  if (b.events.empty()) return c;
  const std::uint64_t first = head.seq + 1;
  try {
    write();
  } catch (const std::exception& ex) {
    if (head.seq >= first) {
      std::size_t done = std::min<std::size_t>(b.events.size(), head.seq - first + 1);
      if (done > 0) cursors[b.store] = parse_source(b.sources[done - 1])->second;
    }
    return relay_failed(b.store, ex);
  }
  c = parse_source(b.sources.back())->second;
  cursors[b.store] = c;
  return c;
}

OutboxCursor AuditLog::Impl::relay_failed(std::string_view store, const std::exception& ex) {
  ++failures;
  core::log(core::LogLevel::error, "audit",
            std::string("relaying audit records from the backend's outbox failed; they stay "
                        "there for the next relay: ") + ex.what());
  auto it = cursors.find(store);
  return it == cursors.end() ? OutboxCursor{} : it->second;
}

// Notes and returns what the relay of `b` may trim: the rows through c.seq
// are wholly in the chain, unless c is inside one of them. REQUIRES: mu held.
std::int64_t AuditLog::Impl::relayed_through(const OutboxBatch& b, OutboxCursor c) {
  std::int64_t through = c.seq;
  for (const AuditOutboxRow& row : b.rows)
    if (row.seq == c.seq && c.index + 1 < static_cast<std::int64_t>(row.events.size()))
      through = c.seq - 1;
  note_relayed(b.store, through);
  return through;
}

std::int64_t AuditLog::append_outbox(std::string_view store,
                                    std::span<const AuditOutboxRow> rows) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.closed) throw Error(errc::closed, "audit log is closed");
  check_store(store);
  m.try_flush();  // held direct events keep their place before these
  OutboxBatch b;
  b.store.assign(store);
  b.rows = rows;
  return m.relay_locked(b);
}

std::int64_t AuditLog::Impl::relay_locked(OutboxBatch& b) {
  OutboxCursor c;
  try {
    FileLock fl(log_fd, opt.log_path);
    sync();
    c = cursor_of(b.store);
    collect_after(b, c);
    c = write_batch(b, c, [&] {
      write_events(b.events.data(), b.sources.data(), b.events.size(), env.now_ms());
    });
  } catch (const std::exception& ex) {  // the flock or reading the log
    c = relay_failed(b.store, ex);
  }
  return relayed_through(b, c);
}

std::shared_ptr<AuditLog::OutboxBatch> AuditLog::prepare_outbox(std::string_view store,
                                                                 std::vector<AuditOutboxRow> rows) {
  Impl& m = *impl_;
  auto b = std::make_shared<OutboxBatch>();
  b->store.assign(store);
  b->owned = std::move(rows);
  b->rows = b->owned;
  std::lock_guard lock(m.mu);
  if (m.closed) throw Error(errc::closed, "audit log is closed");
  check_store(store);
  try {
    FileLock fl(m.log_fd, m.opt.log_path);
    m.sync();
    collect_after(*b, m.cursor_of(store));
    const std::int64_t now = m.env.now_ms();
    if (b->events.empty() || !m.held.empty() || m.epoch_due(m.head.seq + 1, now)) return b;
    m.maybe_evolve(now);  // writes a key file only on the first record of a chain
    const std::uint64_t next_seq = m.head.seq + 1;
    const std::uint64_t used = next_seq >= m.key.epoch_start_seq ? next_seq - m.key.epoch_start_seq : 0;
    if (used + b->events.size() > m.opt.epoch_records) return b;  // crosses into the next epoch
    b->mac.emplace(m.mac.clone());
    b->start = m.head;
    b->epoch = m.key.epoch;
    b->now = now;
  } catch (const std::exception&) {
    b->mac.reset();  // commit_outbox relays it under the lock, and reports what fails
  }
  return b;
}

std::span<const AuditOutboxRow> AuditLog::rows_of(const OutboxBatch& b) { return b.rows; }

void AuditLog::render(OutboxBatch& b) {
  if (!b.mac) {
    b.rendered.store(true, std::memory_order_release);
    return;
  }
  std::string canonical;
  b.lines.clear();
  b.ends.clear();
  b.end = render_records(b.events.data(), b.sources.data(), b.events.size(), b.start, b.epoch,
                         b.now, *b.mac, b.lines, canonical, &b.ends);
  b.mac.reset();  // the epoch key's copy goes as soon as it is done with
  b.rendered.store(true, std::memory_order_release);
}

bool AuditLog::rendered(const OutboxBatch& b) { return b.rendered.load(std::memory_order_acquire); }

std::int64_t AuditLog::commit_outbox(OutboxBatch& b) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.closed) throw Error(errc::closed, "audit log is closed");
  m.try_flush();
  if (b.rendered.load(std::memory_order_acquire) && !b.lines.empty()) {
    try {
      FileLock fl(m.log_fd, m.opt.log_path);
      m.sync();
      // Nothing appended, no key evolved and nothing due since
      // prepare_outbox: the lines are exactly what relay_locked would write.
      if (m.head.seq == b.start.seq && m.head.mac == b.start.mac && m.key.epoch == b.epoch &&
          m.held.empty() && !m.epoch_due(b.start.seq + 1, m.env.now_ms())) {
        const OutboxCursor c = m.write_batch(b, m.cursor_of(b.store), [&] {
          m.write_rendered(b.lines, b.ends, b.end);
          if (m.opt.fsync != AuditFsync::group) m.maybe_checkpoint(b.now);
        });
        return m.relayed_through(b, c);
      }
    } catch (const std::exception&) {
      // Relayed below, under the lock, which reports what fails.
    }
  }
  return m.relay_locked(b);
}

std::int64_t AuditLog::trimmable_through(std::string_view store) const {
  std::lock_guard lock(impl_->mu);
  return impl_->trimmable(store);
}

void AuditLog::flush() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.closed) return;  // close() made it all durable
  m.flush_or_log();
}

void AuditLog::checkpoint() {
  std::lock_guard lock(impl_->mu);
  if (impl_->closed) throw Error(errc::closed, "audit log is closed");
  FileLock fl(impl_->log_fd, impl_->opt.log_path);
  impl_->sync();
  if (impl_->head.seq > impl_->cp_seq) impl_->write_checkpoint(impl_->env.now_ms());
}

void AuditLog::tick() {
  std::lock_guard lock(impl_->mu);
  if (impl_->closed) return;
  impl_->try_flush();
  FileLock fl(impl_->log_fd, impl_->opt.log_path);
  impl_->sync();
  std::int64_t now = impl_->env.now_ms();
  impl_->maybe_evolve(now);
  impl_->maybe_checkpoint(now);
}

void AuditLog::close() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.closed) return;
    m.closed = true;  // append() refuses from here on
    m.try_flush();
  }
  m.stop();  // the syncer may hold a checkpoint to finish
  std::lock_guard lock(m.mu);
  try {
    FileLock fl(m.log_fd, m.opt.log_path);
    m.sync();
    if (m.head.seq > m.cp_seq) {
      m.write_checkpoint(m.env.now_ms());
    } else {
      m.make_log_durable();
    }
  } catch (const std::exception& ex) {
    ++m.failures;
    core::log(core::LogLevel::error, "audit", std::string("final checkpoint failed: ") + ex.what());
  }
  if (!m.held.empty()) {
    m.dropped += m.held.size();
    core::log(core::LogLevel::error, "audit",
              "closing with " + std::to_string(m.held.size()) + " unwritten audit events");
  }
  ::close(m.log_fd);
  ::close(m.cp_fd);
  m.log_fd = m.cp_fd = -1;
}

std::vector<AuditChainLine> AuditLog::read_lines(std::uint64_t after_seq,
                                                 std::size_t limit) const {
  if (limit < 1 || limit > 10000)
    throw InvalidArgument("audit: read_lines limit " + std::to_string(limit) +
                          " is outside [1, 10000]");
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.closed) throw Error(errc::closed, "audit log is closed");
  FileLock fl(m.log_fd, m.opt.log_path);
  m.sync();  // complete lines only, and what other writers appended
  return m.lines_after(after_seq, limit);
}

bool AuditLog::backend_sink() const { return impl_->opt.backend_sink; }

AuditHead AuditLog::head() const {
  std::lock_guard lock(impl_->mu);
  return impl_->head;
}

std::uint64_t AuditLog::failures() const {
  std::lock_guard lock(impl_->mu);
  return impl_->failures;
}

std::uint64_t AuditLog::dropped() const {
  std::lock_guard lock(impl_->mu);
  return impl_->dropped;
}

std::string audit_keygen(const std::filesystem::path& writer_key_path,
                         const std::filesystem::path& verify_key_path) {
  if (std::filesystem::exists(writer_key_path))
    throw Conflict(writer_key_path.string() + " already exists; refusing to overwrite it");
  if (std::filesystem::exists(verify_key_path))
    throw Conflict(verify_key_path.string() + " already exists; refusing to overwrite it");
  std::string seed = security::random_bytes(security::kAuditKeyBytes);
  security::Ed25519KeyPair pair = security::ed25519_generate();
  security::AuditVerifyKey vk;
  vk.public_key = pair.public_key;
  security::AuditWriterKey wk;
  wk.key = security::audit_epoch0_key(seed);
  wk.sign_key = std::move(pair.private_key);
  vk.seed = Secret::take(seed);
  std::string vtext = security::render_verify_key(vk);
  std::string wtext = security::render_writer_key(wk);
  try {
    security::create_private_file(verify_key_path, vtext);
    security::create_private_file(writer_key_path, wtext);
  } catch (...) {
    security::secure_wipe(vtext);
    security::secure_wipe(wtext);
    throw;
  }
  security::secure_wipe(vtext);
  security::secure_wipe(wtext);
  return security::audit_key_id(vk.public_key);
}

}  // namespace asyncmq

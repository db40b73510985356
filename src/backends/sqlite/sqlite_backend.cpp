// The SQLite backend: one WAL-mode file, safe for several processes on one
// host, with group commit.
//
// Threads. SQLite calls block, so none runs on a caller's thread. The backend
// owns two lanes, each a thread with its own connection and a queue of
// pending operations:
//   writer  every call that changes the store. It takes *all* pending
//           operations, runs them in ONE transaction (BEGIN IMMEDIATE), each
//           inside a SAVEPOINT so that a failing operation rolls back only
//           itself and receives its own exception, then COMMITs, and only
//           then completes the callers. Concurrent single enqueues from many
//           coroutines therefore share one commit (and, with sync=full, one
//           fsync), which is where the throughput comes from: a commit costs
//           far more than the rows in it.
//   reader  get, list, counts, queues, is_paused; a WAL reader never waits
//           for the writer, so dashboards do not slow the workers down.
// A caller's coroutine suspends in `async_initiate`; the lane posts the
// result back to the coroutine's executor, holding a work guard on it until
// then so that the caller's io_context.run() does not return early.
//
// Several processes. Each process's writer opens its transaction with BEGIN
// IMMEDIATE, which takes SQLite's write lock up front (waiting up to
// busy_timeout_ms), so two processes never interleave the read and the write
// of a claim: a job is claimed once. Fencing tokens come from a counter in
// the file (meta.token), so they are unique across processes too.
//
// Schema. One rowid table `jobs` with a column per Job field that an UPDATE
// changes or SQL reads (inspectable with the sqlite3 shell); the options that
// stay as inserted and that no SQL reads are packed into one blob, `opts`
// (see pack_opts: a record is rewritten whole on every UPDATE, so each column
// costs every transition). Then the unique index on the 16-byte id, and
// three partial indexes, each serving one hot query:
//   jobs_claim   (queue, priority, ord, id) WHERE state = waiting
//                ord is the FIFO key, negated for LIFO jobs, so one index
//                scan yields the claim order; the claim touches only the
//                first `max` entries.
//   jobs_timed   (queue, run_at_ms) WHERE state IN (delayed, failed)
//                promotion reads only due entries.
//   jobs_lease   (lease_expires_ms) WHERE state = active
//                reclaim reads only expired leases.
// Two more hold only the jobs of queues limited per group (group_limited),
// so they cost other queues nothing: jobs_group (queue, group_key, claim
// order) WHERE waiting, for the per-group claim, and jobs_group_active
// (queue, group_key) WHERE active, for each group's use of its limit (see
// claim_per_group).
// There is deliberately no (queue, state, id) index: it was rewritten
// (delete + insert) on every state transition, for `list` and `counts`
// only. `list` reads the partial index of its state (waiting, delayed,
// failed, active) or walks the id index (completed, dead), in id order
// either way; it is not a hot path.
// `counts` holds the number of jobs per (queue, state). Ops record their
// changes in memory (Db::count); the writer adds the sums for the whole
// batch just before COMMIT, a handful of row updates per commit however
// many jobs moved, so counting is one small read.
// `queues` records every queue that has held a job or been paused (and the
// pause flag); `meta` holds the fencing-token counter and the store's id.
// `audit_chain` is the audit table (the backend sink of the audit chain):
// one row per chain line, keyed by seq, append-only (see kAuditChain).
// `audit_outbox` holds, once a backend object's outbox is on, one row per
// write op with audit entries (the op's EventLog collects them and writes
// the row in the op's savepoint, so it commits with the transition);
// trim_audit_outbox deletes relayed rows in a later batch. The store is marked
// with PRAGMA application_id (kApplicationId) and its schema version with
// PRAGMA user_version; a file that is not SQLite, an SQLite database that
// belongs to someone else, or a store of another schema version is refused
// and never written to.
//
// Why a rowid table and not WITHOUT ROWID keyed by id: measured only ~10%
// faster on no-op jobs, and a WITHOUT ROWID b-tree keeps whole rows in its
// interior pages, so sealed payloads of a few KiB would make it deep.
#include "backends/sqlite/sqlite_backend.hpp"
#include "backends/audit_entries.hpp"
#include "core/audit_actor.hpp"
#include "core/foreign_post.hpp"
#include "backends/validate.hpp"

#include <asyncmq/env.hpp>
#include <asyncmq/error.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace asyncmq::backends {
namespace {

using boost::asio::awaitable;

// 'AQMQ': marks a file as an asyncmq store.
constexpr int kApplicationId = 0x41514d51;
// 4: group keys and per-group rate limits (jobs.group_key, group_limited,
// limits.per_group, limiter_log.grp). 5: the fixed options in one blob
// (jobs.opts). 6: audit_outbox without AUTOINCREMENT (its seqs come from
// kOutboxInsert instead). Older stores are refused, not migrated: no release
// wrote one.
constexpr int kSchemaVersion = 6;

// ---------------------------------------------------------------------------
// Errors: every SQLite result code becomes an asyncmq error here, and only
// here. Messages carry the code's name and the path, never row contents.

const char* code_name(int rc) {
  switch (rc & 0xff) {
    case SQLITE_ERROR: return "SQLITE_ERROR";
    case SQLITE_INTERNAL: return "SQLITE_INTERNAL";
    case SQLITE_PERM: return "SQLITE_PERM";
    case SQLITE_ABORT: return "SQLITE_ABORT";
    case SQLITE_BUSY: return "SQLITE_BUSY";
    case SQLITE_LOCKED: return "SQLITE_LOCKED";
    case SQLITE_NOMEM: return "SQLITE_NOMEM";
    case SQLITE_READONLY: return "SQLITE_READONLY";
    case SQLITE_INTERRUPT: return "SQLITE_INTERRUPT";
    case SQLITE_IOERR: return "SQLITE_IOERR";
    case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
    case SQLITE_NOTFOUND: return "SQLITE_NOTFOUND";
    case SQLITE_FULL: return "SQLITE_FULL";
    case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL: return "SQLITE_PROTOCOL";
    case SQLITE_SCHEMA: return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG: return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH: return "SQLITE_MISMATCH";
    case SQLITE_MISUSE: return "SQLITE_MISUSE";
    case SQLITE_NOLFS: return "SQLITE_NOLFS";
    case SQLITE_AUTH: return "SQLITE_AUTH";
    case SQLITE_RANGE: return "SQLITE_RANGE";
    case SQLITE_NOTADB: return "SQLITE_NOTADB";
    default: return "SQLITE_UNKNOWN";
  }
}

// Throws the asyncmq error for SQLite result `rc` from `what` on `path`.
// `db` may be null (then only the code is reported).
[[noreturn]] void throw_sqlite(sqlite3* db, int rc, std::string_view what, const std::string& path) {
  std::string msg = "sqlite store " + path + ": " + std::string(what) + " failed: " +
                    code_name(rc) + " (" + std::to_string(rc) + ")";
  const char* detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (detail && *detail) msg += ": " + std::string(detail);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw BackendError(errc::busy, msg);
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      throw BackendError(errc::corrupt_store, msg);
    case SQLITE_CANTOPEN: {
      int sys = db ? sqlite3_system_errno(db) : 0;
      if (sys) msg += " (" + std::string(std::strerror(sys)) + ")";
      if (sys == ENOENT || sys == ENOTDIR) throw NotFound(msg);
      if (sys == EACCES || sys == EPERM) throw BackendError(errc::permission_denied, msg);
      throw BackendError(errc::unavailable, msg);
    }
    case SQLITE_PERM:
    case SQLITE_READONLY:
      throw BackendError(errc::permission_denied, msg);
    default:
      throw BackendError(errc::backend_failure, msg);
  }
}

// ---------------------------------------------------------------------------
// A connection with a cache of prepared statements.

class Stmt;

// The audit outbox rows this backend object's writer committed, kept so
// that read_audit_outbox can serve its own decorator's relay without a
// SELECT on the reader lane (with audit on, that read ran once per relay
// round). Rows go in after their COMMIT, in seq order; a read takes the
// run that starts right after its cursor and has no gap in seq (a gap may
// be another process's row, which only the store has), and falls back to
// the SELECT otherwise. So it only ever returns rows the store holds
// committed, and a reader that finds nothing here reads the store as before.
// Thread safety: safe (the writer lane publishes, any thread takes).
class OutboxCache {
 public:
  using Row = std::pair<std::int64_t, std::string>;  // seq, stored entries

  // The writer's thread, after a commit. The rows the relay is done with
  // leave here, not in copy_after, so that their buffers are freed (or
  // reused) on the thread that allocated them: freed on the relay's thread,
  // every blob went back to the writer's malloc arena under its lock, which
  // the writer then waited for (malloc and free: 52 perf samples of its
  // thread in a 30,000-job bench without auditing, 120 with). Up to kSpare
  // of their buffers go to `spare`, for the writer's next entries.
  void publish(std::vector<Row>& rows, std::vector<std::string>& spare) {
    if (rows.empty()) return;
    std::lock_guard lock(mu_);
    // Nobody relaying (or far behind): the store has them all anyway.
    while (!rows_.empty() && (rows_.front().first <= done_ || rows_.size() >= kMaxRows)) {
      if (spare.size() < kSpare) spare.push_back(std::move(rows_.front().second));
      rows_.pop_front();
    }
    for (Row& r : rows) rows_.push_back(std::move(r));
    rows.clear();
  }

  // Copies of up to `limit` rows from seq after+1 on, consecutive; empty
  // when the cache does not hold after+1. The relay is then done with the
  // rows through the last one returned, and those count as gone from here
  // (a read from before them goes to the store).
  std::vector<Row> copy_after(std::int64_t after, std::size_t limit) {
    std::vector<Row> out;
    std::lock_guard lock(mu_);
    if (after >= done_) {
      auto it = std::find_if(rows_.begin(), rows_.end(), [&](const Row& r) { return r.first > after; });
      for (std::int64_t next = after + 1;
           out.size() < limit && it != rows_.end() && it->first == next; ++it, ++next)
        out.push_back(*it);
    }
    done_ = std::max(done_, out.empty() ? after : out.back().first);
    return out;
  }

 private:
  static constexpr std::size_t kMaxRows = 10'000;
  static constexpr std::size_t kSpare = 16;
  std::mutex mu_;
  std::deque<Row> rows_;     // GUARDED_BY(mu_)
  std::int64_t done_ = 0;    // GUARDED_BY(mu_)
};

class Db {
 public:
  Db(const std::string& path, int busy_timeout_ms) : path_(path) {
    // SQLite's memory statistics take a process-wide mutex on every
    // allocation, which the writer and reader lanes then contend for; we
    // never read them. SQLite's own list of recommended options turns them
    // off (SQLITE_DEFAULT_MEMSTATUS=0). Only possible before SQLite starts:
    // if the program already uses SQLite, this is a no-op.
    static std::once_flag memstatus_off;
    std::call_once(memstatus_off, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      // Report first, then close: the message needs the handle.
      try {
        throw_sqlite(db_, rc, "open", path_);
      } catch (...) {
        sqlite3_close_v2(db_);
        db_ = nullptr;
        throw;
      }
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, busy_timeout_ms);
  }
  ~Db() {
    for (auto& [sql, s] : cache_) sqlite3_finalize(s);
    if (db_) sqlite3_close_v2(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* handle() const { return db_; }

  // Per-(queue, state) job-count changes of the current transaction. An op
  // records into op_counts(); the lane keeps them (merge_op_counts) once the
  // op succeeded, drops them (drop_op_counts) when it was rolled back, and
  // writes the sum into `counts` just before COMMIT (flush_counts).
  struct CountDelta {
    std::string queue;
    std::array<std::int64_t, kJobStateCount> n{};
  };
  void count(std::string_view queue, JobState state, std::int64_t n) {
    if (n == 0) return;
    CountDelta* d = nullptr;
    for (auto& e : op_counts_)
      if (e.queue == queue) {
        d = &e;
        break;
      }
    if (!d) {
      op_counts_.push_back(CountDelta{std::string(queue), {}});
      d = &op_counts_.back();
    }
    d->n[static_cast<std::size_t>(state)] += n;
  }
  void merge_op_counts() {
    for (auto& o : op_counts_) {
      CountDelta* d = nullptr;
      for (auto& e : tx_counts_)
        if (e.queue == o.queue) {
          d = &e;
          break;
        }
      if (!d) {
        tx_counts_.push_back(std::move(o));
        continue;
      }
      for (std::size_t k = 0; k < o.n.size(); ++k) d->n[k] += o.n[k];
    }
    op_counts_.clear();
    for (auto& r : op_outbox_) tx_outbox_.push_back(std::move(r));
    op_outbox_.clear();
  }
  void drop_op_counts() {
    op_counts_.clear();
    op_outbox_.clear();
  }
  // The outbox rows of the current op, kept like its counts and handed to
  // `cache` (OutboxCache) once the transaction committed. Only a writer
  // given a cache keeps them.
  void keep_outbox_in(OutboxCache* cache) { outbox_cache_ = cache; }
  // Outbox rows through `*wanted` (set by trim_audit_outbox) are deleted by
  // the writer's transactions (trim_outbox), not by transactions of their
  // own: a relay trims once per batch it relays, and a commit per trim
  // nearly doubled the writer's commits with auditing on.
  void trim_outbox_to(const std::atomic<std::int64_t>* wanted) { trim_wanted_ = wanted; }
  // In a write transaction: deletes the relayed outbox rows not yet deleted,
  // once there are kTrimRows of them (or any, if `all`).
  void trim_outbox(bool all = false);
  // After COMMIT: what trim_outbox deleted is gone for good.
  void trim_committed() { trimmed_ = trimming_; }
  // After a rollback: the rows are back, to be deleted again.
  void trim_rolled_back() { trimming_ = trimmed_; }
  void note_outbox(std::int64_t seq, std::string entries) {
    if (outbox_cache_) op_outbox_.emplace_back(seq, std::move(entries));
  }
  void publish_outbox() {
    if (outbox_cache_) outbox_cache_->publish(tx_outbox_, spare_outbox_);
    tx_outbox_.clear();
  }
  // A buffer for an op's audit entries: one of a relayed row's, if any is
  // spare (see OutboxCache::publish), so that entries rarely allocate.
  std::string outbox_buffer() {
    if (spare_outbox_.empty()) return {};
    std::string b = std::move(spare_outbox_.back());
    spare_outbox_.pop_back();
    return b;
  }
  // Changes to (queue, state) made in this transaction and not yet in `counts`.
  std::int64_t pending_count(std::string_view queue, JobState state) const {
    std::int64_t n = 0;
    for (const auto* v : {&op_counts_, &tx_counts_})
      for (const auto& e : *v)
        if (e.queue == queue) n += e.n[static_cast<std::size_t>(state)];
    return n;
  }
  void drop_tx_counts() {
    op_counts_.clear();
    tx_counts_.clear();
    op_outbox_.clear();
    tx_outbox_.clear();
  }
  void flush_counts();
  // The store's follow lease (Backend::follow_events, meta key
  // 'events_until'): events of times before it are recorded. Read once per
  // transaction, as another process may have moved it since the last one.
  std::int64_t events_followed_until();
  void set_events_followed_until(std::int64_t until_ms) { followed_until_ = until_ms; }
  // At BEGIN: the lease read in an earlier transaction may be stale.
  void forget_events_followed_until() { followed_until_ = -1; }
  const std::string& path() const { return path_; }

  [[noreturn]] void fail(int rc, std::string_view what) const { throw_sqlite(db_, rc, what, path_); }

  // Runs statements without results (schema, pragmas).
  void exec(const char* sql) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) fail(rc, "statement");
  }

  // The cached statement for `sql`, reset and unbound. `sql` must be a
  // string literal: the cache is keyed by its address.
  sqlite3_stmt* prepare(const char* sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second;
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) fail(rc, "prepare");
    cache_.emplace(sql, s);
    return s;
  }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
  std::vector<CountDelta> op_counts_, tx_counts_;
  OutboxCache* outbox_cache_ = nullptr;
  std::vector<OutboxCache::Row> op_outbox_, tx_outbox_;
  std::vector<std::string> spare_outbox_;
  const std::atomic<std::int64_t>* trim_wanted_ = nullptr;
  std::int64_t followed_until_ = -1;  // -1: not read in this transaction
  std::int64_t trimmed_ = 0;   // committed deletes reached this seq
  std::int64_t trimming_ = 0;  // this transaction's delete reaches this seq
};

// One use of a cached statement: binds, steps, and resets on scope exit so
// that a statement never holds a read snapshot past its use.
class Stmt {
 public:
  Stmt(Db& db, const char* sql) : db_(db), s_(db.prepare(sql)) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  Stmt& bind_double(int i, double v) {
    check(sqlite3_bind_double(s_, i, v));
    return *this;
  }
  // A null pointer would bind SQL NULL; an empty value must stay a value.
  Stmt& bind_blob(int i, std::string_view v) {
    check(sqlite3_bind_blob(s_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                            SQLITE_STATIC));
    return *this;
  }
  Stmt& bind_text(int i, std::string_view v) {
    check(sqlite3_bind_text(s_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                            SQLITE_STATIC));
    return *this;
  }
  Stmt& bind_id(int i, const JobId& id) {
    check(sqlite3_bind_blob(s_, i, id.bytes().data(), 16, SQLITE_STATIC));
    return *this;
  }

  // True while there is a row; throws on error.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_.fail(rc, "step");
  }
  // Like step, but returns the raw code for callers that handle some codes
  // (constraint violations) themselves.
  int step_rc() { return sqlite3_step(s_); }
  void run() {
    while (step()) {
    }
  }

  std::int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double dbl(int c) const { return sqlite3_column_double(s_, c); }
  std::string str(int c) const {
    const void* p = sqlite3_column_blob(s_, c);
    int n = sqlite3_column_bytes(s_, c);
    return p ? std::string(static_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
  }
  // Valid until the next step or reset of this statement.
  std::string_view view(int c) const {
    const void* p = sqlite3_column_blob(s_, c);
    int n = sqlite3_column_bytes(s_, c);
    return p ? std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(n))
             : std::string_view();
  }
  JobId id(int c) const {
    std::array<std::uint8_t, 16> b{};
    const void* p = sqlite3_column_blob(s_, c);
    if (p && sqlite3_column_bytes(s_, c) == 16) std::memcpy(b.data(), p, 16);
    return JobId(b);
  }

  sqlite3_stmt* raw() const { return s_; }
  const std::string& path() const { return db_.path(); }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) db_.fail(rc, "bind");
  }
  Db& db_;
  sqlite3_stmt* s_;
};

// Why kTrimRows: a relay round takes a few rows (one per audited op), and a
// delete of those few dirtied outbox pages that the next rows' inserts
// dirtied again, one commit later: deleting at every round put 5.9k more
// frames into the WAL of a 30,000-job audited bench, one per 64 rows 3.4k
// fewer. Relayed rows waiting for their trim are not read again (reads
// start after the relay's cursor) and are relayed at most once anyway.
constexpr std::int64_t kTrimRows = 64;

void Db::trim_outbox(bool all) {
  if (!trim_wanted_) return;
  const std::int64_t wanted = trim_wanted_->load();
  if (wanted <= trimming_ || (!all && wanted - trimming_ < kTrimRows)) return;
  // A failed delete fails no op: the rows wait for the next transaction.
  try {
    // The floor of kOutboxInsert first, as the delete may take the newest
    // row: a floor without its delete only skips seqs.
    Stmt floor(*this,
               "INSERT INTO meta(key, value) VALUES('outbox_floor', ?1) "
               "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)");
    floor.bind(1, wanted).run();
    Stmt del(*this, "DELETE FROM audit_outbox WHERE seq <= ?1");
    del.bind(1, wanted).run();
    trimming_ = wanted;
  } catch (const std::exception&) {
  }
}

std::int64_t Db::events_followed_until() {
  if (followed_until_ < 0) {
    Stmt s(*this, "SELECT value FROM meta WHERE key = 'events_until'");
    followed_until_ = s.step() ? s.i64(0) : 0;
  }
  return followed_until_;
}

void Db::flush_counts() {
  merge_op_counts();
  std::vector<CountDelta> deltas;
  deltas.swap(tx_counts_);
  for (const auto& d : deltas) {
    for (std::size_t k = 0; k < d.n.size(); ++k) {
      if (d.n[k] == 0) continue;
      Stmt s(*this,
             "INSERT INTO counts(queue, state, n) VALUES(?1, ?2, ?3) "
             "ON CONFLICT(queue, state) DO UPDATE SET n = n + excluded.n");
      s.bind_text(1, d.queue).bind(2, static_cast<std::int64_t>(k)).bind(3, d.n[k]).run();
    }
  }
}

// ---------------------------------------------------------------------------
// Schema and row mapping.

constexpr const char* kSchema = R"sql(
CREATE TABLE jobs (
  id BLOB NOT NULL UNIQUE,
  queue TEXT NOT NULL,
  task TEXT NOT NULL,
  state INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  ord INTEGER NOT NULL,
  opts BLOB NOT NULL,
  idempotency_key BLOB NOT NULL,
  subject BLOB NOT NULL,
  payload BLOB NOT NULL,
  result BLOB NOT NULL,
  error BLOB NOT NULL,
  attempts_made INTEGER NOT NULL,
  stalls INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  run_at_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  lease_token INTEGER NOT NULL,
  lease_owner TEXT NOT NULL,
  lease_expires_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  parent BLOB,
  children INTEGER NOT NULL,
  pending_children INTEGER NOT NULL,
  progress BLOB NOT NULL,
  cancel_requested INTEGER NOT NULL,
  group_key BLOB NOT NULL,
  group_limited INTEGER NOT NULL
);
CREATE INDEX jobs_claim ON jobs(queue, priority, ord, id) WHERE state = 0;
CREATE INDEX jobs_timed ON jobs(queue, run_at_ms) WHERE state IN (1, 4);
CREATE INDEX jobs_lease ON jobs(lease_expires_ms) WHERE state = 2;
CREATE INDEX jobs_ttl ON jobs(expires_ms) WHERE expires_ms > 0;
CREATE INDEX jobs_parent ON jobs(parent) WHERE parent IS NOT NULL;
CREATE INDEX jobs_group ON jobs(queue, group_key, priority, ord, id)
  WHERE state = 0 AND group_limited = 1;
CREATE INDEX jobs_group_active ON jobs(queue, group_key) WHERE state = 2 AND group_limited = 1;
CREATE TABLE idempotency (queue TEXT NOT NULL, key BLOB NOT NULL, job BLOB NOT NULL,
                          until_ms INTEGER NOT NULL, PRIMARY KEY(queue, key)) WITHOUT ROWID;
CREATE TABLE logs (job BLOB NOT NULL, time_ms INTEGER NOT NULL, text BLOB NOT NULL);
CREATE INDEX logs_job ON logs(job);
CREATE TABLE events (seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, type INTEGER NOT NULL,
                     queue TEXT NOT NULL, jobs BLOB NOT NULL, detail TEXT NOT NULL);
CREATE TABLE limits (queue TEXT PRIMARY KEY, max INTEGER NOT NULL,
                     interval_ms INTEGER NOT NULL, per_group INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE limiter_log (queue TEXT NOT NULL, grp BLOB NOT NULL, finished_ms INTEGER NOT NULL);
CREATE INDEX limiter_log_q ON limiter_log(queue, finished_ms);
CREATE INDEX limiter_log_g ON limiter_log(queue, grp, finished_ms);
CREATE TABLE repeatables (queue TEXT NOT NULL, name TEXT NOT NULL, task TEXT NOT NULL,
                          payload BLOB NOT NULL, options TEXT NOT NULL, cron TEXT NOT NULL,
                          time_zone TEXT NOT NULL, every_ms INTEGER NOT NULL,
                          catch_up INTEGER NOT NULL, paused INTEGER NOT NULL,
                          next_fire_ms INTEGER NOT NULL, last_fire_ms INTEGER NOT NULL,
                          created_ms INTEGER NOT NULL, PRIMARY KEY(queue, name)) WITHOUT ROWID;
CREATE TABLE counts (queue TEXT NOT NULL, state INTEGER NOT NULL, n INTEGER NOT NULL,
                     PRIMARY KEY(queue, state)) WITHOUT ROWID;
CREATE TABLE queues (name TEXT PRIMARY KEY, paused INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE audit_outbox (seq INTEGER PRIMARY KEY, entries BLOB NOT NULL);
)sql";

// An outbox row's seq: one past the newest row, and past every seq a trim
// deleted (meta 'outbox_floor', see Db::trim_outbox), so that a seq is never
// reused, which the chain's cursor needs (a reused seq would read as already
// relayed). Not AUTOINCREMENT: that rewrites its sqlite_sequence page in
// every commit with an outbox row, one more page in the WAL per commit (a
// 30,000-job audited bench: 4.5k of its 44.6k WAL frames, and COMMIT's time
// 410 ms against 330 ms without auditing). The floor is one read here and a
// write only in a trim.
constexpr const char* kOutboxInsert =
    "INSERT INTO audit_outbox(seq, entries) VALUES(max(coalesce((SELECT max(seq) FROM "
    "audit_outbox), 0), coalesce((SELECT value FROM meta WHERE key = 'outbox_floor'), 0)) + 1, "
    "?1)";

// The column list every job read uses; read_job decodes it from column 0.
#define ASYNCMQ_JOB_COLS                                                                  \
  "id, queue, task, state, priority, opts, idempotency_key, subject, payload, result, "  \
  "error, attempts_made, stalls, created_ms, run_at_ms, started_ms, finished_ms, "      \
  "lease_token, lease_owner, lease_expires_ms, parent, children, pending_children, "    \
  "progress, cancel_requested, group_key"

// jobs.opts: the options a job keeps unchanged from insert on and that no
// SQL expression, index or WHERE clause reads, in one blob. SQLite rewrites
// the whole record on every UPDATE (each claim and finish), so every column
// costs every transition. Packing these 11 (39 columns -> 29) measured, in
// sqlite3_step totals of a 30,000-job bench (medians of 5 runs): claim
// UPDATE -6 %, finish UPDATE -9 %, the claim's SELECT -19 %, COMMIT -4 %.
// Format: a version byte (kOptsVersion), a varint mask of the fields that
// differ from their implicit value, then those fields in bit order: LEB128
// varints (zigzag for the signed ones), the jitter as its 8 IEEE 754 bytes
// (little endian), lifo as its bit alone. The implicit values are
// JobOptions' defaults, so default options store 2 bytes, but they belong
// to the format: changing a default in JobOptions must not change what a
// stored row means.
constexpr char kOptsVersion = 1;
enum OptsBit : unsigned {
  kOptDelay,         // delay_ms, implicit 0
  kOptAttempts,      // attempts
  kOptBackoffKind,   // backoff.kind
  kOptBackoffDelay,  // backoff.delay_ms
  kOptBackoffMax,    // backoff.max_delay_ms
  kOptJitter,        // backoff.jitter
  kOptTimeout,       // timeout_ms, implicit 0
  kOptLifo,          // lifo, implicit false
  kOptIdemWindow,    // idempotency_window_ms, implicit 0
  kOptTtl,           // ttl_ms, implicit 0
  kOptOnFailure,     // on_failure, implicit fail_parent
  kOptBits
};
constexpr std::int64_t kImplicitAttempts = 1;
constexpr std::uint8_t kImplicitBackoffKind = static_cast<std::uint8_t>(Backoff::Kind::exponential);
constexpr std::int64_t kImplicitBackoffDelay = 1000;
constexpr std::int64_t kImplicitBackoffMax = 3'600'000;
constexpr std::uint64_t kImplicitJitterBits = std::bit_cast<std::uint64_t>(0.2);

void put_varint(std::string& out, std::uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<char>(v | 0x80));
  out.push_back(static_cast<char>(v));
}

std::uint64_t zigzag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}

std::int64_t unzigzag(std::uint64_t v) {
  return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

std::string pack_opts(const JobOptions& o, ChildFailure on_failure) {
  std::uint64_t mask = 0;
  std::string fields;
  auto put = [&](OptsBit bit, std::uint64_t v, std::uint64_t implicit) {
    if (v == implicit) return;
    mask |= std::uint64_t{1} << bit;
    put_varint(fields, v);
  };
  auto put_signed = [&](OptsBit bit, std::int64_t v, std::int64_t implicit) {
    put(bit, zigzag(v), zigzag(implicit));
  };
  const Backoff& b = o.backoff;
  put_signed(kOptDelay, o.delay_ms, 0);
  put_signed(kOptAttempts, o.attempts, kImplicitAttempts);
  put(kOptBackoffKind, static_cast<std::uint8_t>(b.kind), kImplicitBackoffKind);
  put_signed(kOptBackoffDelay, b.delay_ms, kImplicitBackoffDelay);
  put_signed(kOptBackoffMax, b.max_delay_ms, kImplicitBackoffMax);
  // Compared as bits, so that -0.0 and NaN come back as they went in.
  if (const auto bits = std::bit_cast<std::uint64_t>(b.jitter); bits != kImplicitJitterBits) {
    mask |= std::uint64_t{1} << kOptJitter;
    for (int k = 0; k < 8; ++k) fields.push_back(static_cast<char>(bits >> (8 * k)));
  }
  put_signed(kOptTimeout, o.timeout_ms, 0);
  if (o.lifo) mask |= std::uint64_t{1} << kOptLifo;
  put_signed(kOptIdemWindow, o.idempotency_window_ms, 0);
  put_signed(kOptTtl, o.ttl_ms, 0);
  put(kOptOnFailure, static_cast<std::uint8_t>(on_failure),
      static_cast<std::uint8_t>(ChildFailure::fail_parent));
  std::string out(1, kOptsVersion);
  put_varint(out, mask);
  return out + fields;
}

// Decodes the opts of job `id` into `o` and `on_failure`. Accepts exactly
// what pack_opts writes, as far as a value's range goes; anything else
// (another version, a truncated or overlong varint, an unknown field, a
// value out of its field's range, trailing bytes) throws
// BackendError(corrupt_store) naming the job.
void unpack_opts(std::string_view blob, const JobId& id, const std::string& path, JobOptions& o,
                 ChildFailure& on_failure) {
  auto corrupt = [&](const std::string& what) {
    return BackendError(errc::corrupt_store, "sqlite store " + path + ": job " + id.str() +
                                                 ": malformed options blob (" + what + ")");
  };
  if (blob.empty()) throw corrupt("empty");
  if (blob[0] != kOptsVersion)
    throw corrupt("version " + std::to_string(static_cast<unsigned char>(blob[0])) +
                  ", expected " + std::to_string(kOptsVersion));
  std::size_t at = 1;
  auto varint = [&] {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (at == blob.size()) throw corrupt("truncated varint at byte " + std::to_string(at));
      const auto c = static_cast<unsigned char>(blob[at++]);
      if (shift == 63 && c > 1) throw corrupt("varint over 64 bits");
      v |= static_cast<std::uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
  };
  auto in_range = [&](std::int64_t v, std::int64_t lo, std::int64_t hi, const char* name) {
    if (v < lo || v > hi) throw corrupt(std::string(name) + " " + std::to_string(v) + " out of range");
    return v;
  };
  const std::uint64_t mask = varint();
  if (mask >> kOptBits) throw corrupt("unknown fields");
  auto has = [&](OptsBit bit) { return ((mask >> bit) & 1) != 0; };
  auto get_signed = [&](OptsBit bit, std::int64_t implicit) {
    return has(bit) ? unzigzag(varint()) : implicit;
  };
  // Enum fields hold any value of their 8-bit type, as a JobOptions can.
  auto get_u8 = [&](OptsBit bit, std::uint8_t implicit, const char* name) {
    return has(bit) ? static_cast<std::uint8_t>(
                          in_range(static_cast<std::int64_t>(varint()), 0, 255, name))
                    : implicit;
  };
  Backoff& b = o.backoff;
  o.delay_ms = get_signed(kOptDelay, 0);
  o.attempts = static_cast<std::int32_t>(in_range(get_signed(kOptAttempts, kImplicitAttempts),
                                                  std::numeric_limits<std::int32_t>::min(),
                                                  std::numeric_limits<std::int32_t>::max(),
                                                  "attempts"));
  b.kind = static_cast<Backoff::Kind>(get_u8(kOptBackoffKind, kImplicitBackoffKind, "backoff kind"));
  b.delay_ms = get_signed(kOptBackoffDelay, kImplicitBackoffDelay);
  b.max_delay_ms = get_signed(kOptBackoffMax, kImplicitBackoffMax);
  std::uint64_t jitter = kImplicitJitterBits;
  if (has(kOptJitter)) {
    if (blob.size() - at < 8) throw corrupt("truncated jitter");
    jitter = 0;
    for (int k = 0; k < 8; ++k)
      jitter |= static_cast<std::uint64_t>(static_cast<unsigned char>(blob[at++])) << (8 * k);
  }
  b.jitter = std::bit_cast<double>(jitter);
  o.timeout_ms = get_signed(kOptTimeout, 0);
  o.lifo = has(kOptLifo);
  o.idempotency_window_ms = get_signed(kOptIdemWindow, 0);
  o.ttl_ms = get_signed(kOptTtl, 0);
  on_failure = static_cast<ChildFailure>(
      get_u8(kOptOnFailure, static_cast<std::uint8_t>(ChildFailure::fail_parent), "on_failure"));
  if (at != blob.size())
    throw corrupt(std::to_string(blob.size() - at) + " trailing bytes");
}

// What jobs.opts holds: the packed fields of `options` (the others stay
// default) and on_failure.
struct StoredOpts {
  JobOptions options;
  ChildFailure on_failure = ChildFailure::fail_parent;
};

// Column `c` of `s`, the opts of job `id`, unpacked.
StoredOpts read_opts(const Stmt& s, int c, const JobId& id) {
  StoredOpts r;
  unpack_opts(s.view(c), id, s.path(), r.options, r.on_failure);
  return r;
}

// Decodes ASYNCMQ_JOB_COLS starting at column `o`.
Job read_job(const Stmt& s, int o = 0) {
  Job j;
  j.id = s.id(o + 0);
  j.queue = s.str(o + 1);
  j.task = s.str(o + 2);
  j.state = static_cast<JobState>(s.i64(o + 3));
  j.options.priority = static_cast<std::int32_t>(s.i64(o + 4));
  unpack_opts(s.view(o + 5), j.id, s.path(), j.options, j.on_failure);
  j.options.idempotency_key = s.str(o + 6);
  j.options.subject = s.str(o + 7);
  j.payload = s.str(o + 8);
  j.result = s.str(o + 9);
  j.error = s.str(o + 10);
  j.attempts_made = static_cast<std::int32_t>(s.i64(o + 11));
  j.stalls = static_cast<std::int32_t>(s.i64(o + 12));
  j.created_ms = s.i64(o + 13);
  j.run_at_ms = s.i64(o + 14);
  j.started_ms = s.i64(o + 15);
  j.finished_ms = s.i64(o + 16);
  j.lease.token = static_cast<std::uint64_t>(s.i64(o + 17));
  j.lease.owner = s.str(o + 18);
  j.lease.expires_ms = s.i64(o + 19);
  j.parent = s.id(o + 20);
  j.children = static_cast<std::int32_t>(s.i64(o + 21));
  j.pending_children = static_cast<std::int32_t>(s.i64(o + 22));
  j.progress = s.str(o + 23);
  j.cancel_requested = s.i64(o + 24) != 0;
  j.options.group = s.str(o + 25);
  return j;
}

// Claim order key within a priority: FIFO by id time, LIFO newest first.
std::int64_t ord_of(const Job& j) {
  return j.options.lifo ? -j.id.order_key() : j.id.order_key();
}

bool is_timed(JobState s) { return s == JobState::delayed || s == JobState::failed; }

// Refuses files that are not ours before anything is written: a garbage file
// fails the first read with SQLITE_NOTADB; an SQLite database with tables
// but without our application_id belongs to someone else. Creates the schema
// in an empty database. Safe against a second process doing the same at the
// same moment: the check is repeated under the write lock.
void open_store(Db& db, Env& env) {
  auto inspect = [&](bool& empty) {
    std::int64_t app = 0, version = 0, tables = 0;
    {
      Stmt s(db, "PRAGMA application_id");
      if (s.step()) app = s.i64(0);
    }
    {
      Stmt s(db, "PRAGMA user_version");
      if (s.step()) version = s.i64(0);
    }
    {
      Stmt s(db, "SELECT count(*) FROM sqlite_schema");
      if (s.step()) tables = s.i64(0);
    }
    empty = app == 0 && version == 0 && tables == 0;
    if (empty) return;
    if (app != kApplicationId) {
      throw BackendError(errc::corrupt_store,
                         "sqlite store " + db.path() +
                             ": is an SQLite database but not an asyncmq store "
                             "(application_id " + std::to_string(app) + "); refusing to use it");
    }
    if (version != kSchemaVersion) {
      throw BackendError(errc::corrupt_store,
                         "sqlite store " + db.path() + ": schema version " +
                             std::to_string(version) + " is not supported (expected " +
                             std::to_string(kSchemaVersion) + ")");
    }
  };
  bool empty = false;
  inspect(empty);
  // WAL: readers never block the writer and a commit is one append. The
  // mode is persistent in the file; setting it again is a no-op.
  {
    Stmt s(db, "PRAGMA journal_mode=WAL");
    std::string mode = s.step() ? s.str(0) : std::string();
    if (mode != "wal") {
      throw BackendError(errc::backend_failure, "sqlite store " + db.path() +
                                                    ": cannot switch to WAL mode (got '" +
                                                    mode + "')");
    }
  }
  if (!empty) return;
  db.exec("BEGIN IMMEDIATE");
  try {
    inspect(empty);
    if (empty) {
      db.exec(kSchema);
      Stmt s(db, "INSERT INTO meta(key, value) VALUES('token', ?1)");
      // A random start keeps tokens of a recreated store from repeating
      // those of an old one.
      s.bind(1, static_cast<std::int64_t>(env.random_u64() >> 4)).run();
      db.exec(("PRAGMA application_id=" + std::to_string(kApplicationId)).c_str());
      db.exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
    }
    db.exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void configure(Db& db, bool sync_full) {
  db.exec(sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  db.exec("PRAGMA temp_store=MEMORY");
  // 64 MiB of page cache: the hot index pages stay in memory.
  db.exec("PRAGMA cache_size=-65536");
  // Checkpoint every 8192 pages (32 MiB of WAL) rather than SQLite's 1000:
  // each checkpoint fsyncs, and at 1000 pages a busy queue checkpointed
  // every few dozen commits (measured: commit time 3-5x lower). The WAL is
  // truncated back to 64 MiB at most after a checkpoint.
  db.exec("PRAGMA wal_autocheckpoint=8192");
  db.exec("PRAGMA journal_size_limit=67108864");
}

// ---------------------------------------------------------------------------
// Lanes: a thread, its connection and its queue of operations.

struct Unit {};

class Op {
 public:
  virtual ~Op() = default;
  // Runs on the lane's thread; catches everything into the op.
  virtual void execute(Db& db) = 0;
  // Records a failure that happened outside execute (BEGIN, COMMIT).
  virtual void fail(std::exception_ptr e) = 0;
  // Posts the result to the caller's executor. Called once, after commit.
  virtual void complete() = 0;
  // True if execute threw.
  virtual bool failed() const = 0;
};

template <class T>
using Value = std::conditional_t<std::is_void_v<T>, Unit, T>;
template <class T>
struct SignatureOf {
  using type = void(std::exception_ptr, T);
};
template <>
struct SignatureOf<void> {
  using type = void(std::exception_ptr);
};
template <class T>
using Signature = typename SignatureOf<T>::type;

template <class T, class Fn, class Handler>
class OpImpl final : public Op {
 public:
  OpImpl(Fn fn, Handler handler)
      : fn_(std::move(fn)),
        handler_(std::move(handler)),
        work_(boost::asio::make_work_guard(boost::asio::get_associated_executor(handler_))) {}

  void execute(Db& db) override {
    try {
      if constexpr (std::is_void_v<T>) {
        fn_(db);
      } else {
        value_ = fn_(db);
      }
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  void fail(std::exception_ptr e) override {
    error_ = e;
    value_ = Value<T>{};
  }
  bool failed() const override { return error_ != nullptr; }
  // The work guard travels with the result and is released on the caller's
  // thread. Releasing it here, after the post, raced with the caller: its
  // io_context could finish the handler and be destroyed while this thread
  // still touched it (ASan: heap-use-after-free under load). For the same
  // reason the post itself waits for this thread to leave it (see
  // core/foreign_post.hpp; TSan: pthread_cond_signal vs ~posix_event).
  // The error moves out too: an exception_ptr left here made this thread
  // drop what could be the exception's last reference while the caller
  // read it (the refcount is atomic, but inside uninstrumented libstdc++,
  // so TSan reported ~Error vs what()); now the caller's thread frees it.
  void complete() override {
    auto ex = work_.get_executor();
    if constexpr (std::is_void_v<T>) {
      core::post_from_foreign_thread(
          ex, [h = std::move(handler_), e = std::move(error_), w = std::move(work_)]() mutable {
            w.reset();
            std::move(h)(e);
          });
    } else {
      core::post_from_foreign_thread(ex, [h = std::move(handler_), e = std::move(error_),
                                          v = std::move(value_), w = std::move(work_)]() mutable {
        w.reset();
        std::move(h)(e, std::move(v));
      });
    }
  }

 private:
  Fn fn_;
  Handler handler_;
  boost::asio::executor_work_guard<boost::asio::associated_executor_t<Handler>> work_;
  Value<T> value_{};
  std::exception_ptr error_;
};

class Lane {
 public:
  // A lane with `transactional` false runs each op on its own, outside any
  // transaction (for statements SQLite refuses inside one: checkpoints).
  Lane(std::unique_ptr<Db> db, bool writer, bool transactional = true)
      : db_(std::move(db)), writer_(writer), transactional_(transactional) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Lane() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  void submit(std::unique_ptr<Op> op) {
    bool wake;
    {
      std::lock_guard lock(mu_);
      wake = pending_.empty();
      pending_.push_back(std::move(op));
    }
    if (wake) cv_.notify_one();
  }

 private:
  void loop() {
    std::vector<std::unique_ptr<Op>> batch;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
        if (pending_.empty()) return;  // stop_ and drained
        batch.assign(std::make_move_iterator(pending_.begin()),
                     std::make_move_iterator(pending_.end()));
        pending_.clear();
      }
      run_batch(batch);
      for (auto& op : batch) op->complete();
      batch.clear();
    }
  }

  // One transaction for the whole batch. A writer uses a savepoint per op
  // (skipped for a lone op: the transaction itself is its savepoint).
  void run_batch(std::vector<std::unique_ptr<Op>>& batch) {
    Db& db = *db_;
    if (!transactional_) {
      for (auto& op : batch) op->execute(db);
      return;
    }
    auto fail_all = [&](std::exception_ptr e) {
      for (auto& op : batch) op->fail(e);
    };
    db.drop_tx_counts();
    db.forget_events_followed_until();
    try {
      Stmt(db, writer_ ? "BEGIN IMMEDIATE" : "BEGIN").run();
    } catch (...) {
      fail_all(std::current_exception());
      return;
    }
    bool single = batch.size() == 1;
    bool use_savepoints = writer_ && !single;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& op = batch[i];
      if (use_savepoints) {
        try {
          Stmt(db, "SAVEPOINT op").run();
        } catch (...) {
          op->fail(std::current_exception());
          continue;
        }
      }
      op->execute(db);
      if (op->failed())
        db.drop_op_counts();
      else
        db.merge_op_counts();
      if (use_savepoints) {
        // Cached statements: sqlite3_exec would parse these once per op.
        // Errors are ignored here as before; the autocommit check below
        // catches a transaction that SQLite rolled back.
        if (op->failed()) {
          Stmt rb(db, "ROLLBACK TO op");
          (void)rb.step_rc();
        }
        Stmt rel(db, "RELEASE op");
        (void)rel.step_rc();
      }
      // Some errors (I/O, disk full) make SQLite roll back the whole
      // transaction: the ops before this one are lost, so every op fails.
      if (sqlite3_get_autocommit(db.handle())) {
        std::exception_ptr e;
        try {
          db.fail(SQLITE_ABORT, "transaction (rolled back by an earlier error)");
        } catch (...) {
          e = std::current_exception();
        }
        for (std::size_t k = 0; k < batch.size(); ++k)
          if (k != i || !batch[k]->failed()) batch[k]->fail(e);
        db.drop_tx_counts();
        return;
      }
    }
    if (writer_ && single && batch[0]->failed()) {
      sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
      return;
    }
    try {
      if (writer_) {
        db.flush_counts();
        db.trim_outbox();
      }
      Stmt(db, "COMMIT").run();
      db.trim_committed();
      db.publish_outbox();
    } catch (...) {
      auto e = std::current_exception();
      db.drop_tx_counts();
      db.trim_rolled_back();
      sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
      if (writer_) fail_all(e);
    }
  }

  std::unique_ptr<Db> db_;
  bool writer_;
  bool transactional_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Op>> pending_;
  bool stop_ = false;
  std::thread thread_;
};

// Returns an awaitable that, when awaited, suspends the calling coroutine
// until `lane` has run `fn(Db&) -> T` (and, for the writer, committed it),
// then resumes it on its own executor with the value or the exception.
//
// The public methods below are plain functions returning this awaitable, not
// coroutines: the arguments move straight into the operation, and there is
// no coroutine frame of ours whose parameters a lambda would capture (GCC 12
// miscompiles some init-captures of coroutine parameters: double frees).
template <class T, class Fn>
awaitable<T> run_on(Lane& lane, Fn&& fn) {
  using F = std::decay_t<Fn>;
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, Signature<T>>(
      [&lane](auto handler, F f) {
        using H = decltype(handler);
        lane.submit(std::make_unique<OpImpl<T, F, H>>(std::move(f), std::move(handler)));
      },
      boost::asio::use_awaitable, std::forward<Fn>(fn));
}

// ---------------------------------------------------------------------------
// The operations. Each runs on a lane's thread inside its transaction.

const char* const kInsert =
    "INSERT INTO jobs(id, queue, task, state, priority, ord, opts, idempotency_key, subject, "
    "payload, result, error, attempts_made, stalls, created_ms, run_at_ms, started_ms, "
    "finished_ms, lease_token, lease_owner, lease_expires_ms, expires_ms, parent, children, "
    "pending_children, progress, cancel_requested, group_key, group_limited) VALUES(?1, ?2, ?3, "
    "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, "
    "?24, ?25, ?26, ?27, ?28, ?29)";

// Events of one operation, written as few rows as possible: consecutive
// events of one type, queue and time without detail share a row whose
// `jobs` holds their 16-byte ids (at most kIdsPerRow). A row's events get
// seq = rowid * kIdsPerRow + index, so seqs increase across rows.
constexpr std::int64_t kIdsPerRow = 4096;
std::int64_t event_seq(std::int64_t rowid, std::int64_t index) {
  return rowid * kIdsPerRow + index;
}

class EventLog {
 public:
  EventLog() = default;
  // `audit_actor`: the backend's outbox actor, or null when its outbox is off.
  EventLog(Db& db, const std::string* audit_actor) : audit_(audit_actor) {
    if (audit_actor) audit_.reuse(db.outbox_buffer());
  }

  // The transaction's audit entries (see backends/audit_entries.hpp).
  AuditEntries& audit() { return audit_; }

  void add(EventType type, std::string_view queue, const JobId& id, std::int64_t now_ms,
           std::string detail = {}) {
    if (detail.empty() && !rows_.empty()) {
      Row& r = rows_.back();
      if (r.type == type && r.queue == queue && r.time_ms == now_ms && r.detail.empty() &&
          r.jobs.size() < 16 * static_cast<std::size_t>(kIdsPerRow)) {
        r.jobs.append(reinterpret_cast<const char*>(id.bytes().data()), 16);
        return;
      }
    }
    Row r{type, std::string(queue), now_ms, std::string(), std::move(detail)};
    r.jobs.assign(reinterpret_cast<const char*>(id.bytes().data()), 16);
    rows_.push_back(std::move(r));
  }
  // Writes the rows (only while the store is followed: see
  // Db::events_followed_until), and the audit entries as one outbox row; the
  // op's savepoint or transaction covers them.
  void write(Db& db) {
    const std::int64_t until = rows_.empty() ? 0 : db.events_followed_until();
    for (const Row& r : rows_) {
      if (r.time_ms >= until) continue;
      Stmt s(db, "INSERT INTO events(time_ms, type, queue, jobs, detail) VALUES(?1, ?2, ?3, ?4, ?5)");
      s.bind(1, r.time_ms).bind(2, static_cast<int>(r.type)).bind_text(3, r.queue)
          .bind_blob(4, r.jobs).bind_text(5, r.detail).run();
    }
    rows_.clear();
    if (!audit_.empty()) {
      std::string entries = audit_.take_encoded();
      Stmt s(db, kOutboxInsert);
      s.bind_blob(1, entries).run();
      db.note_outbox(sqlite3_last_insert_rowid(db.handle()), std::move(entries));
    }
  }

 private:
  struct Row {
    EventType type;
    std::string queue;
    std::int64_t time_ms;
    std::string jobs;
    std::string detail;
  };
  std::vector<Row> rows_;
  AuditEntries audit_;
};

std::int64_t ttl_deadline(const Job& j) {
  return j.options.ttl_ms > 0 && j.attempts_made == 0 ? j.created_ms + j.options.ttl_ms : 0;
}

std::string system_error(std::string text) { return std::string(1, kSystemError) + text; }

// `group_limited`: the queue's limit is per group (see jobs_group).
void insert_job(Db& db, const Job& j, JobState state, bool group_limited) {
  const std::string opts = pack_opts(j.options, j.on_failure);  // bound until `s` resets
  Stmt s(db, kInsert);
  s.bind_id(1, j.id)
      .bind_text(2, j.queue)
      .bind_text(3, j.task)
      .bind(4, static_cast<int>(state))
      .bind(5, j.options.priority)
      .bind(6, ord_of(j))
      .bind_blob(7, opts)
      .bind_blob(8, j.options.idempotency_key)
      .bind_blob(9, j.options.subject)
      .bind_blob(10, j.payload)
      .bind_blob(11, j.result)
      .bind_blob(12, j.error)
      .bind(13, j.attempts_made)
      .bind(14, j.stalls)
      .bind(15, j.created_ms)
      .bind(16, j.run_at_ms)
      .bind(17, j.started_ms)
      .bind(18, j.finished_ms)
      .bind(19, static_cast<std::int64_t>(j.lease.token))
      .bind_text(20, j.lease.owner)
      .bind(21, j.lease.expires_ms)
      .bind(22, ttl_deadline(j));
  if (!j.parent.is_nil()) s.bind_id(23, j.parent);  // else NULL
  s.bind(24, j.children)
      .bind(25, j.pending_children)
      .bind_blob(26, j.progress)
      .bind(27, j.cancel_requested ? 1 : 0)
      .bind_blob(28, j.options.group)
      .bind(29, group_limited ? 1 : 0);
  int rc = s.step_rc();
  if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    throw Conflict("job id " + j.id.str() + " already exists");
  if (rc != SQLITE_DONE) db.fail(rc, "enqueue");
}

bool job_exists(Db& db, const JobId& id) {
  Stmt s(db, "SELECT 1 FROM jobs WHERE id = ?1");
  s.bind_id(1, id);
  return s.step();
}

RateLimit read_limit(Db& db, std::string_view queue);

// `via`, if not empty, is the detail of the audit entries (a repeatable's
// tick), else "delayed" for a delayed job.
std::vector<JobId> do_enqueue(Db& db, const std::vector<Job>& jobs, EventLog& ev,
                              std::string_view via = {}) {
  std::vector<JobId> ids;
  ids.reserve(jobs.size());
  const std::string* last_queue = nullptr;
  bool group_limited = false;
  for (const Job& j : jobs) {
    if (!last_queue || *last_queue != j.queue) {
      Stmt q(db, "INSERT OR IGNORE INTO queues(name, paused) VALUES(?1, 0)");
      q.bind_text(1, j.queue).run();
      last_queue = &j.queue;
      // One small read per queue of the batch (the limits table holds only
      // limited queues).
      group_limited = read_limit(db, j.queue).per_group;
    }
    bool flow = !j.parent.is_nil() || j.children > 0;
    if (!j.options.idempotency_key.empty() && !flow) {
      std::optional<JobId> existing;
      {
        Stmt s(db, "SELECT job, until_ms FROM idempotency WHERE queue = ?1 AND key = ?2");
        s.bind_text(1, j.queue).bind_blob(2, j.options.idempotency_key);
        if (s.step()) {
          JobId id = s.id(0);
          std::int64_t until = s.i64(1);
          if (until > j.created_ms || job_exists(db, id)) existing = id;
        }
      }
      if (existing) {
        ids.push_back(*existing);
        ev.add(EventType::deduplicated, j.queue, *existing, j.created_ms, j.id.str());
        ev.audit().deduplicated(j, *existing);
        continue;
      }
      Stmt s(db, "INSERT OR REPLACE INTO idempotency(queue, key, job, until_ms) VALUES(?1, ?2, ?3, 0)");
      s.bind_text(1, j.queue).bind_blob(2, j.options.idempotency_key).bind_id(3, j.id).run();
    }
    JobState state = j.state == JobState::waiting_children ? j.state
                     : is_timed(j.state)                   ? j.state
                                                           : JobState::waiting;
    insert_job(db, j, state, group_limited);
    db.count(j.queue, state, 1);
    ev.add(state == JobState::waiting   ? EventType::waiting
           : state == JobState::delayed ? EventType::delayed
           : state == JobState::waiting_children ? EventType::waiting_children
                                                 : EventType::failed,
           j.queue, j.id, j.created_ms);
    ev.audit().added(j, j.state == JobState::delayed, via);
    ids.push_back(j.id);
  }
  return ids;
}

// Moves the queue's delayed and failed jobs that are due to waiting, each
// with a `waiting` event. Still one UPDATE per queue, not per job: the ids
// for the events come from the read that counts the due jobs (an index range
// read of jobs_timed, usually empty, which already visited each due row for
// its state), and the events of one promotion share an event row (EventLog
// groups detail-less events of one type, queue and time).
std::size_t promote_queue(Db& db, const std::string& queue, std::int64_t now_ms, EventLog& ev) {
  std::int64_t due[2] = {0, 0};
  std::vector<JobId> ids;
  {
    Stmt s(db, "SELECT state, id FROM jobs WHERE queue = ?1 AND state IN (1, 4) AND run_at_ms <= ?2");
    s.bind_text(1, queue).bind(2, now_ms);
    while (s.step()) {
      ++due[s.i64(0) == 1 ? 0 : 1];
      ids.push_back(s.id(1));
    }
  }
  if (ids.empty()) return 0;
  Stmt s(db,
         "UPDATE jobs SET state = 0 WHERE queue = ?1 AND state IN (1, 4) AND run_at_ms <= ?2");
  s.bind_text(1, queue).bind(2, now_ms).run();
  db.count(queue, JobState::delayed, -due[0]);
  db.count(queue, JobState::failed, -due[1]);
  db.count(queue, JobState::waiting, due[0] + due[1]);
  for (const JobId& id : ids) ev.add(EventType::waiting, queue, id, now_ms);
  return static_cast<std::size_t>(sqlite3_changes(db.handle()));
}

bool paused(Db& db, std::string_view queue) {
  Stmt s(db, "SELECT paused FROM queues WHERE name = ?1");
  s.bind_text(1, queue);
  return s.step() && s.i64(0) != 0;
}

// Reserves `n` fresh fencing tokens; returns the first.
std::uint64_t take_tokens(Db& db, std::size_t n) {
  Stmt s(db, "UPDATE meta SET value = value + ?1 WHERE key = 'token' RETURNING value");
  s.bind(1, static_cast<std::int64_t>(n));
  if (!s.step()) db.fail(SQLITE_CORRUPT, "fencing-token counter missing");
  return static_cast<std::uint64_t>(s.i64(0)) - n;
}

RateLimit read_limit(Db& db, std::string_view queue) {
  Stmt s(db, "SELECT max, interval_ms, per_group FROM limits WHERE queue = ?1");
  s.bind_text(1, queue);
  RateLimit l;
  if (s.step()) {
    l.max = s.i64(0);
    l.interval_ms = s.i64(1);
    l.per_group = s.i64(2) != 0;
  }
  return l;
}

std::int64_t committed_count(Db& db, std::string_view queue, JobState state) {
  Stmt s(db, "SELECT n FROM counts WHERE queue = ?1 AND state = ?2");
  s.bind_text(1, queue).bind(2, static_cast<int>(state));
  return s.step() ? s.i64(0) : 0;
}

void prune_limiter_log(Db& db, std::string_view queue, const RateLimit& l, std::int64_t now_ms) {
  Stmt d(db, "DELETE FROM limiter_log WHERE queue = ?1 AND finished_ms <= ?2");
  d.bind_text(1, queue).bind(2, now_ms - l.interval_ms).run();
}

// How many jobs the queue's limit lets start at now_ms (-1: no limit);
// also prunes the finish log. `oldest` receives the oldest finish time
// still inside the window (0 if none).
std::int64_t allowance(Db& db, std::string_view queue, const RateLimit& l, std::int64_t now_ms,
                       bool prune, std::int64_t* oldest = nullptr) {
  if (l.max <= 0) return -1;
  if (prune) prune_limiter_log(db, queue, l, now_ms);
  std::int64_t recent = 0;
  {
    Stmt s(db,
           "SELECT count(*), min(finished_ms) FROM limiter_log WHERE queue = ?1 AND "
           "finished_ms > ?2");
    s.bind_text(1, queue).bind(2, now_ms - l.interval_ms);
    if (s.step()) {
      recent = s.i64(0);
      if (oldest) *oldest = s.i64(1);
    }
  }
  std::int64_t active =
      committed_count(db, queue, JobState::active) + db.pending_count(queue, JobState::active);
  return std::max<std::int64_t>(0, l.max - active - recent);
}

// Logged with the job's group in either mode, so that switching modes counts
// the same finishes.
void log_finish(Db& db, std::string_view queue, std::string_view group, std::int64_t now_ms) {
  Stmt s(db, "INSERT INTO limiter_log(queue, grp, finished_ms) VALUES(?1, ?2, ?3)");
  s.bind_text(1, queue).bind_blob(2, group).bind(3, now_ms).run();
}

// ----- Per-group limits (RateLimit::per_group) -----
//
// The jobs of a queue limited per group carry group_limited = 1 (set on
// insert, and rewritten for the whole queue when its mode changes), which
// puts its waiting jobs in jobs_group, (queue, group_key) then claim order,
// and its active ones in jobs_group_active. Jobs of other queues are in
// neither index, so the feature costs them nothing.
//
// A group's use at now_ms is its active jobs plus its finishes within the
// window (limiter_log_g): two index range counts, O(log n + use).

// The group's use; `oldest` receives its oldest finish within the window
// (0 if none).
std::int64_t group_used(Db& db, std::string_view queue, std::string_view group,
                        const RateLimit& l, std::int64_t now_ms, std::int64_t* oldest) {
  std::int64_t used = 0;
  {
    Stmt s(db,
           "SELECT count(*) FROM jobs WHERE queue = ?1 AND group_key = ?2 AND state = 2 AND "
           "group_limited = 1");
    s.bind_text(1, queue).bind_blob(2, group);
    if (s.step()) used += s.i64(0);
  }
  Stmt s(db,
         "SELECT count(*), min(finished_ms) FROM limiter_log WHERE queue = ?1 AND grp = ?2 AND "
         "finished_ms > ?3");
  s.bind_text(1, queue).bind_blob(2, group).bind(3, now_ms - l.interval_ms);
  if (s.step()) {
    used += s.i64(0);
    if (oldest) *oldest = s.i64(1);
  }
  return used;
}

// The groups of the queue's waiting jobs, in key order: one jobs_group seek
// per group, however many jobs each holds.
class WaitingGroups {
 public:
  WaitingGroups(Db& db, std::string_view queue) : db_(db), queue_(queue) {}
  // The next group, or false after the last.
  bool next(std::string& group) {
    Stmt s(db_, first_
                    ? "SELECT group_key FROM jobs WHERE queue = ?1 AND state = 0 AND "
                      "group_limited = 1 ORDER BY queue, group_key LIMIT 1"
                    : "SELECT group_key FROM jobs WHERE queue = ?1 AND group_key > ?2 AND "
                      "state = 0 AND group_limited = 1 ORDER BY queue, group_key LIMIT 1");
    s.bind_text(1, queue_);
    if (!first_) s.bind_blob(2, last_);
    if (!s.step()) return false;
    first_ = false;
    last_ = s.str(0);
    group = last_;
    return true;
  }

 private:
  Db& db_;
  std::string queue_;
  std::string last_;
  bool first_ = true;
};

// Slots each group has left in one claim: computed on first sight, then
// counted down as the claim takes jobs.
class GroupSlots {
 public:
  GroupSlots(Db& db, std::string_view queue, const RateLimit& l, std::int64_t now_ms)
      : db_(db), queue_(queue), limit_(l), now_ms_(now_ms) {}
  std::int64_t left(std::string_view group) {
    auto it = left_.find(group);
    if (it == left_.end()) {
      std::int64_t used = group_used(db_, queue_, group, limit_, now_ms_, nullptr);
      it = left_.emplace(std::string(group), std::max<std::int64_t>(0, limit_.max - used)).first;
      fresh_.emplace(it->first, it->second);
    }
    return it->second;
  }
  void take(std::string_view group) { --left_.find(group)->second; }
  // Forgets what was taken (the claim starts over).
  void reset() { left_ = fresh_; }

 private:
  Db& db_;
  std::string queue_;
  RateLimit limit_;
  std::int64_t now_ms_;
  std::map<std::string, std::int64_t, std::less<>> left_, fresh_;
};

// A flow child reached a final state: count its parent down or act on the
// child's on_failure.
void child_ended(Db& db, const JobId& child, const JobId& parent, ChildFailure on_failure,
                 JobState child_state, bool ok, std::int64_t now_ms, EventLog& ev);

void expire_row(Db& db, std::int64_t rowid, const Job& j, std::int64_t now_ms, EventLog& ev) {
  Stmt s(db,
         "UPDATE jobs SET state = 6, error = ?1, finished_ms = ?2, expires_ms = 0 WHERE rowid = ?3");
  s.bind_blob(1, system_error("expired: not started within its TTL of " +
                              std::to_string(j.options.ttl_ms) + " ms"))
      .bind(2, now_ms)
      .bind(3, rowid)
      .run();
  db.count(j.queue, j.state, -1);
  db.count(j.queue, JobState::expired, 1);
  ev.add(EventType::expired, j.queue, j.id, now_ms);
  ev.audit().job("expired", j.id, j.queue, j.options.subject, "ttl");
  if (!j.parent.is_nil())
    child_ended(db, j.id, j.parent, j.on_failure, JobState::expired, false, now_ms, ev);
}

// Moves the claimed rows (`out[i]` is row `rowids[i]`) to active under new
// leases.
void activate(Db& db, const ClaimRequest& r, std::vector<Job>& out,
              const std::vector<std::int64_t>& rowids, EventLog& ev) {
  if (out.empty()) return;
  std::uint64_t token = take_tokens(db, out.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    Job& j = out[i];
    // Only a job with a TTL deadline (expires_ms > 0, set at insert) has one
    // to clear; leaving expires_ms out of the others' UPDATE keeps jobs_ttl
    // out of it, which measured about 3 % of a claim-heavy bench.
    const bool had_deadline = ttl_deadline(j) > 0;
    j.state = JobState::active;
    j.attempts_made++;
    j.started_ms = r.now_ms;
    j.lease = Lease{token++, r.worker_id, r.now_ms + r.lease_ms};
    Stmt s(db, had_deadline
                   ? "UPDATE jobs SET state = 2, attempts_made = ?1, started_ms = ?2, "
                     "lease_token = ?3, lease_owner = ?4, lease_expires_ms = ?5, expires_ms = 0 "
                     "WHERE rowid = ?6"
                   : "UPDATE jobs SET state = 2, attempts_made = ?1, started_ms = ?2, "
                     "lease_token = ?3, lease_owner = ?4, lease_expires_ms = ?5 WHERE rowid = ?6");
    s.bind(1, j.attempts_made)
        .bind(2, j.started_ms)
        .bind(3, static_cast<std::int64_t>(j.lease.token))
        .bind_text(4, j.lease.owner)
        .bind(5, j.lease.expires_ms)
        .bind(6, rowids[i])
        .run();
    ev.add(EventType::active, r.queue, j.id, r.now_ms);
    ev.audit().claimed(j, r.worker_id);
  }
  db.count(r.queue, JobState::waiting, -static_cast<std::int64_t>(out.size()));
  db.count(r.queue, JobState::active, static_cast<std::int64_t>(out.size()));
}

std::optional<Job> job_at(Db& db, std::int64_t rowid) {
  Stmt s(db, "SELECT " ASYNCMQ_JOB_COLS " FROM jobs WHERE rowid = ?1");
  s.bind(1, rowid);
  if (!s.step()) return std::nullopt;
  return read_job(s);
}

// How many rows of the claim order a per-group claim reads before it turns
// to the groups' heads, beyond twice the jobs it wants.
constexpr std::int64_t kGroupScanSlack = 256;

// A claim on a queue limited per group: the first `want` waiting jobs in
// claim order whose groups have slots left, at most that many per group.
//
// Two ways to the same answer. First it reads the claim order (jobs_claim)
// for at most 2 * want + kGroupScanSlack rows, skipping jobs of groups at
// their limit: enough unless busy groups hold the head of the queue. If that
// runs out before filling the claim, it takes the heads of each group with
// slots left instead (WaitingGroups: a seek per waiting group; groups at
// their limit cost that seek, not their backlog) and merges them in claim
// order. Cost: O(want + slack) rows, else O(G log n) for G groups with
// waiting jobs, plus a use count (group_used) per group looked at. Jobs past
// their TTL met on the way are expired and take no slot.
std::vector<Job> claim_per_group(Db& db, const ClaimRequest& r, const RateLimit& l,
                                 EventLog& ev) {
  prune_limiter_log(db, r.queue, l, r.now_ms);
  const auto want = static_cast<std::int64_t>(std::min<std::size_t>(r.max, 1u << 30));
  GroupSlots slots(db, r.queue, l, r.now_ms);
  std::vector<std::int64_t> picks, stale;
  bool complete = false;
  {
    const std::int64_t budget = 2 * want + kGroupScanSlack;
    std::int64_t scanned = 0;
    Stmt s(db,
           "SELECT rowid, group_key, expires_ms FROM jobs WHERE queue = ?1 AND state = 0 "
           "ORDER BY priority, ord, id LIMIT ?2");
    s.bind_text(1, r.queue).bind(2, budget);
    while (static_cast<std::int64_t>(picks.size()) < want && s.step()) {
      ++scanned;
      std::int64_t expires = s.i64(2);
      if (expires > 0 && expires <= r.now_ms) {
        stale.push_back(s.i64(0));
      } else if (std::string_view g = s.view(1); slots.left(g) > 0) {
        slots.take(g);
        picks.push_back(s.i64(0));
      }
    }
    complete = static_cast<std::int64_t>(picks.size()) == want || scanned < budget;
  }
  if (!complete) {
    picks.clear();
    slots.reset();
    struct Head {
      std::int64_t priority, ord;
      JobId id;
      std::int64_t rowid;
    };
    std::vector<Head> heads;
    WaitingGroups groups(db, r.queue);
    std::string g;
    while (groups.next(g)) {
      std::int64_t n = std::min(slots.left(g), want);
      if (n == 0) continue;
      Stmt h(db,
             "SELECT rowid, priority, ord, id, expires_ms FROM jobs WHERE queue = ?1 AND "
             "group_key = ?2 AND state = 0 AND group_limited = 1 ORDER BY priority, ord, id");
      h.bind_text(1, r.queue).bind_blob(2, g);
      while (n > 0 && h.step()) {
        std::int64_t expires = h.i64(4);
        if (expires > 0 && expires <= r.now_ms) {
          stale.push_back(h.i64(0));
          continue;
        }
        heads.push_back(Head{h.i64(1), h.i64(2), h.id(3), h.i64(0)});
        --n;
      }
    }
    auto order = [](const Head& a, const Head& b) {
      return std::tie(a.priority, a.ord, a.id) < std::tie(b.priority, b.ord, b.id);
    };
    std::size_t n = std::min(heads.size(), static_cast<std::size_t>(want));
    std::partial_sort(heads.begin(), heads.begin() + static_cast<std::ptrdiff_t>(n), heads.end(),
                      order);
    for (std::size_t i = 0; i < n; ++i) picks.push_back(heads[i].rowid);
  }
  std::sort(stale.begin(), stale.end());
  stale.erase(std::unique(stale.begin(), stale.end()), stale.end());
  for (std::int64_t rowid : stale)
    if (auto j = job_at(db, rowid)) expire_row(db, rowid, *j, r.now_ms, ev);
  std::vector<Job> out;
  out.reserve(picks.size());
  for (std::int64_t rowid : picks) out.push_back(*job_at(db, rowid));
  activate(db, r, out, picks, ev);
  return out;
}

std::vector<Job> do_claim(Db& db, const ClaimRequest& r, EventLog& ev) {
  std::vector<Job> out;
  promote_queue(db, r.queue, r.now_ms, ev);
  if (r.max == 0 || paused(db, r.queue)) return out;
  std::int64_t limit = static_cast<std::int64_t>(std::min<std::size_t>(r.max, 1u << 30));
  RateLimit rl = read_limit(db, r.queue);
  if (rl.max > 0 && rl.per_group) return claim_per_group(db, r, rl, ev);
  if (std::int64_t a = allowance(db, r.queue, rl, r.now_ms, true); a >= 0) limit = std::min(limit, a);
  if (limit == 0) return out;
  // Read the claimable rows in claim order straight off jobs_claim, then
  // flip each by rowid. (UPDATE ... RETURNING per row measured ~3x slower:
  // SQLite materialises RETURNING rows through an ephemeral table.) Rows
  // past their TTL are expired on the way and the read repeated.
  std::vector<std::int64_t> rowids;
  for (int round = 0; round < 16; ++round) {
    out.clear();
    rowids.clear();
    std::vector<std::pair<std::int64_t, Job>> stale;
    {
      Stmt s(db,
             "SELECT rowid, " ASYNCMQ_JOB_COLS " FROM jobs WHERE queue = ?1 AND state = 0 "
             "ORDER BY priority, ord, id LIMIT ?2");
      s.bind_text(1, r.queue).bind(2, limit);
      while (s.step()) {
        Job j = read_job(s, 1);
        std::int64_t d = ttl_deadline(j);
        if (d > 0 && d <= r.now_ms) {
          stale.emplace_back(s.i64(0), std::move(j));
        } else {
          rowids.push_back(s.i64(0));
          out.push_back(std::move(j));
        }
      }
    }
    for (auto& [rowid, j] : stale) expire_row(db, rowid, j, r.now_ms, ev);
    if (stale.empty()) break;
  }
  activate(db, r, out, rowids, ev);
  return out;
}

std::vector<LeaseStatus> do_heartbeat(Db& db, const std::vector<LeaseRef>& leases,
                                      std::int64_t expires_ms) {
  std::vector<LeaseStatus> ok(leases.size(), LeaseStatus::lost);
  for (std::size_t i = 0; i < leases.size(); ++i) {
    Stmt s(db,
           "UPDATE jobs SET lease_expires_ms = ?1 WHERE id = ?2 AND state = 2 AND lease_token = ?3 "
           "RETURNING cancel_requested");
    s.bind(1, expires_ms).bind_id(2, leases[i].id).bind(3, static_cast<std::int64_t>(leases[i].token));
    if (s.step()) ok[i] = s.i64(0) ? LeaseStatus::cancel_requested : LeaseStatus::held;
  }
  return ok;
}

// Per-queue rate-limit lookups within one op.
class LimitCache {
 public:
  bool limited(Db& db, std::string_view queue) {
    for (auto& [q, on] : seen_)
      if (q == queue) return on;
    seen_.emplace_back(std::string(queue), read_limit(db, queue).max > 0);
    return seen_.back().second;
  }

 private:
  std::vector<std::pair<std::string, bool>> seen_;
};

std::vector<bool> do_finish(Db& db, const std::vector<Outcome>& outcomes, EventLog& ev) {
  std::vector<bool> ok(outcomes.size());
  LimitCache limits;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const Outcome& o = outcomes[i];
    // The job's rowid and queue, if it is still active under this lease
    // (the queue names the count that moves), and its flow parent.
    Stmt f(db,
           "SELECT rowid, queue, parent, opts, attempts_made, group_key, subject, "
           "lease_owner FROM jobs WHERE id = ?1 AND state = 2 AND lease_token = ?2");
    f.bind_id(1, o.id).bind(2, static_cast<std::int64_t>(o.token));
    if (!f.step()) continue;
    const char* sql = nullptr;
    JobState to = JobState::completed;
    switch (o.kind) {
      case Outcome::Kind::completed:
        sql = "UPDATE jobs SET state = 3, result = ?1, finished_ms = ?2, lease_token = 0, "
              "lease_owner = '', lease_expires_ms = 0, cancel_requested = 0 WHERE rowid = ?3";
        break;
      case Outcome::Kind::retry:
        to = JobState::failed;
        sql = "UPDATE jobs SET state = 4, error = ?1, run_at_ms = ?2, lease_token = 0, "
              "lease_owner = '', lease_expires_ms = 0, cancel_requested = 0 WHERE rowid = ?3";
        break;
      case Outcome::Kind::dead:
        to = JobState::dead;
        sql = "UPDATE jobs SET state = 5, error = ?1, finished_ms = ?2, lease_token = 0, "
              "lease_owner = '', lease_expires_ms = 0, cancel_requested = 0 WHERE rowid = ?3";
        break;
      case Outcome::Kind::cancelled:
        to = JobState::cancelled;
        sql = "UPDATE jobs SET state = 7, error = ?1, finished_ms = ?2, lease_token = 0, "
              "lease_owner = '', lease_expires_ms = 0, cancel_requested = 0 WHERE rowid = ?3";
        break;
    }
    Stmt s(db, sql);
    s.bind_blob(1, o.kind == Outcome::Kind::completed ? o.result : o.error)
        .bind(2, o.kind == Outcome::Kind::retry ? o.run_at_ms : o.now_ms)
        .bind(3, f.i64(0));
    s.run();
    std::string queue(f.view(1));
    if (ev.audit().on()) ev.audit().finished(o.kind, o.id, queue, f.view(6), o.run_at_ms, f.view(7));
    db.count(queue, JobState::active, -1);
    db.count(queue, to, 1);
    if (limits.limited(db, queue)) log_finish(db, queue, f.view(5), o.now_ms);
    switch (to) {
      case JobState::completed: ev.add(EventType::completed, queue, o.id, o.now_ms); break;
      case JobState::failed:
        ev.add(EventType::failed, queue, o.id, o.now_ms, std::to_string(f.i64(4)));
        break;
      case JobState::dead: ev.add(EventType::dead, queue, o.id, o.now_ms); break;
      default: ev.add(EventType::cancelled, queue, o.id, o.now_ms); break;
    }
    if (sqlite3_column_type(f.raw(), 2) != SQLITE_NULL && to != JobState::failed) {
      JobId parent = f.id(2);
      const ChildFailure policy = read_opts(f, 3, o.id).on_failure;
      child_ended(db, o.id, parent, policy, to, to == JobState::completed, o.now_ms, ev);
    }
    ok[i] = true;
  }
  return ok;
}

void child_ended(Db& db, const JobId& child, const JobId& parent, ChildFailure on_failure,
                 JobState child_state, bool ok, std::int64_t now_ms, EventLog& ev) {
  std::int64_t rowid, pending, run_at;
  std::string queue;
  JobId grandparent;
  bool has_grandparent;
  ChildFailure parent_policy;
  {
    Stmt s(db,
           "SELECT rowid, pending_children, run_at_ms, queue, parent, opts FROM jobs "
           "WHERE id = ?1 AND state = 8");
    s.bind_id(1, parent);
    if (!s.step()) return;
    rowid = s.i64(0);
    pending = s.i64(1);
    run_at = s.i64(2);
    queue = s.str(3);
    has_grandparent = sqlite3_column_type(s.raw(), 4) != SQLITE_NULL;
    grandparent = s.id(4);
    parent_policy = read_opts(s, 5, parent).on_failure;
  }
  if (ok || on_failure == ChildFailure::ignore) {
    if (--pending > 0) {
      Stmt u(db, "UPDATE jobs SET pending_children = ?1 WHERE rowid = ?2");
      u.bind(1, pending).bind(2, rowid).run();
      return;
    }
    JobState to = run_at > now_ms ? JobState::delayed : JobState::waiting;
    Stmt u(db, "UPDATE jobs SET pending_children = 0, state = ?1 WHERE rowid = ?2");
    u.bind(1, static_cast<int>(to)).bind(2, rowid).run();
    db.count(queue, JobState::waiting_children, -1);
    db.count(queue, to, 1);
    ev.add(to == JobState::waiting ? EventType::waiting : EventType::delayed, queue, parent, now_ms);
  } else if (on_failure == ChildFailure::fail_parent) {
    {
      // Scoped: the recursion below uses the same cached statement.
      Stmt u(db, "UPDATE jobs SET state = 5, error = ?1, finished_ms = ?2 WHERE rowid = ?3");
      u.bind_blob(1, system_error("child " + child.str() + " ended " +
                                  std::string(to_string(child_state))))
          .bind(2, now_ms)
          .bind(3, rowid)
          .run();
    }
    db.count(queue, JobState::waiting_children, -1);
    db.count(queue, JobState::dead, 1);
    ev.add(EventType::dead, queue, parent, now_ms);
    if (has_grandparent)
      child_ended(db, parent, grandparent, parent_policy, JobState::dead, false, now_ms, ev);
  }
}

std::size_t do_promote_due(Db& db, std::int64_t now_ms, EventLog& ev) {
  std::vector<std::string> names;
  {
    Stmt s(db, "SELECT name FROM queues");
    while (s.step()) names.push_back(s.str(0));
  }
  std::size_t n = 0;
  for (const auto& q : names) n += promote_queue(db, q, now_ms, ev);
  return n;
}

ReclaimResult do_reclaim(Db& db, std::int64_t now_ms, int max_stalls, EventLog& ev) {
  struct Expired {
    JobId id;
    std::int64_t rowid;
    std::int64_t stalls;
    std::string queue;
    bool has_parent;
    JobId parent;
    ChildFailure on_failure;
    std::string group;
    std::string subject;
  };
  std::vector<Expired> expired;
  {
    Stmt s(db,
           "SELECT id, rowid, stalls, queue, parent, opts, group_key, subject FROM jobs "
           "WHERE state = 2 AND lease_expires_ms < ?1");
    s.bind(1, now_ms);
    while (s.step()) {
      const JobId id = s.id(0);
      expired.push_back({id, s.i64(1), s.i64(2), s.str(3),
                         sqlite3_column_type(s.raw(), 4) != SQLITE_NULL, s.id(4),
                         read_opts(s, 5, id).on_failure,
                         s.str(6), s.str(7)});
    }
  }
  std::sort(expired.begin(), expired.end(),
            [](const Expired& a, const Expired& b) { return a.id < b.id; });
  ReclaimResult out;
  LimitCache limits;
  for (const auto& e : expired) {
    db.count(e.queue, JobState::active, -1);
    if (limits.limited(db, e.queue)) log_finish(db, e.queue, e.group, now_ms);
    std::int64_t stalls = e.stalls + 1;
    if (stalls > max_stalls) {
      Stmt s(db,
             "UPDATE jobs SET state = 5, stalls = ?1, error = ?2, finished_ms = ?3, "
             "lease_token = 0, lease_owner = '', lease_expires_ms = 0, cancel_requested = 0 "
             "WHERE rowid = ?4");
      std::string error = system_error("stalled: lease expired " + std::to_string(stalls) + " times");
      s.bind(1, stalls).bind_blob(2, error).bind(3, now_ms).bind(4, e.rowid).run();
      out.dead.push_back(e.id);
      db.count(e.queue, JobState::dead, 1);
      ev.add(EventType::dead, e.queue, e.id, now_ms);
      ev.audit().job("dead", e.id, e.queue, e.subject, "stalled");
      if (e.has_parent)
        child_ended(db, e.id, e.parent, e.on_failure, JobState::dead, false, now_ms, ev);
    } else {
      Stmt s(db,
             "UPDATE jobs SET state = 0, stalls = ?1, lease_token = 0, lease_owner = '', "
             "lease_expires_ms = 0, cancel_requested = 0 WHERE rowid = ?2");
      s.bind(1, stalls).bind(2, e.rowid).run();
      out.requeued.push_back(e.id);
      db.count(e.queue, JobState::waiting, 1);
      ev.add(EventType::stalled, e.queue, e.id, now_ms);
      ev.audit().job("stalled", e.id, e.queue, e.subject, "lease expired");
    }
  }
  return out;
}

std::optional<Job> do_get(Db& db, const JobId& id) {
  Stmt s(db, "SELECT " ASYNCMQ_JOB_COLS " FROM jobs WHERE id = ?1");
  s.bind_id(1, id);
  if (!s.step()) return std::nullopt;
  return read_job(s);
}

void check_limit(const char* what, std::size_t limit, std::size_t max) {
  if (limit < 1 || limit > max)
    throw InvalidArgument(std::string(what) + " " + std::to_string(limit) + " is outside [1, " +
                          std::to_string(max) + "]");
}

JobPage do_list(Db& db, const ListRequest& r) {
  check_limit("list limit", r.limit, 1000);
  JobPage page;
  Stmt s(db,
         "SELECT " ASYNCMQ_JOB_COLS
         " FROM jobs WHERE queue = ?1 AND state = ?2 AND id > ?3 ORDER BY id LIMIT ?4");
  s.bind_text(1, r.queue).bind(2, static_cast<int>(r.state));
  if (r.after)
    s.bind_id(3, *r.after);
  else
    s.bind_blob(3, std::string_view());  // the empty blob sorts before every id
  s.bind(4, static_cast<std::int64_t>(r.limit) + 1);
  while (s.step()) {
    if (page.jobs.size() == r.limit) {
      page.next = page.jobs.back().id;
      break;
    }
    page.jobs.push_back(read_job(s));
  }
  return page;
}

StateCounts do_counts(Db& db, const std::string& queue) {
  StateCounts c{};
  Stmt s(db, "SELECT state, n FROM counts WHERE queue = ?1");
  s.bind_text(1, queue);
  while (s.step()) {
    auto st = s.i64(0);
    if (st >= 0 && st < kJobStateCount) c[static_cast<std::size_t>(st)] = static_cast<std::uint64_t>(s.i64(1));
  }
  return c;
}

std::vector<std::string> do_queues(Db& db) {
  std::vector<std::string> out;
  Stmt s(db, "SELECT name FROM queues ORDER BY name");
  while (s.step()) out.push_back(s.str(0));
  return out;
}

struct Located {
  std::int64_t rowid;
  JobState state;
  std::string queue;
  std::string subject;
};

// The job's rowid, state, queue and subject, or NotFound.
Located locate(Db& db, const JobId& id) {
  Stmt s(db, "SELECT rowid, state, queue, subject FROM jobs WHERE id = ?1");
  s.bind_id(1, id);
  if (!s.step()) throw NotFound("job " + id.str() + " not found");
  return {s.i64(0), static_cast<JobState>(s.i64(1)), s.str(2), s.str(3)};
}

// Deletes one job that is not active, with its log lines, and lets its
// idempotency key live on for the key's window.
void erase_job(Db& db, const JobId& id, std::int64_t now_ms, EventLog& ev) {
  std::int64_t rowid, finished, window;
  JobState state;
  std::string queue, key;
  {
    Stmt s(db,
           "SELECT rowid, state, queue, idempotency_key, finished_ms, opts FROM jobs "
           "WHERE id = ?1");
    s.bind_id(1, id);
    if (!s.step()) return;
    rowid = s.i64(0);
    state = static_cast<JobState>(s.i64(1));
    queue = s.str(2);
    key = s.str(3);
    finished = s.i64(4);
    window = read_opts(s, 5, id).options.idempotency_window_ms;
  }
  {
    Stmt d(db, "DELETE FROM jobs WHERE rowid = ?1");
    d.bind(1, rowid).run();
  }
  {
    Stmt d(db, "DELETE FROM logs WHERE job = ?1");
    d.bind_id(1, id).run();
  }
  if (!key.empty()) {
    if (window > 0 && finished > 0 && finished + window > now_ms) {
      Stmt u(db, "UPDATE idempotency SET until_ms = ?1 WHERE queue = ?2 AND key = ?3 AND job = ?4");
      u.bind(1, finished + window).bind_text(2, queue).bind_blob(3, key).bind_id(4, id).run();
    } else {
      Stmt d(db, "DELETE FROM idempotency WHERE queue = ?1 AND key = ?2 AND job = ?3");
      d.bind_text(1, queue).bind_blob(2, key).bind_id(3, id).run();
    }
  }
  db.count(queue, state, -1);
  ev.add(EventType::removed, queue, id, now_ms);
}

void do_remove(Db& db, const JobId& id, std::int64_t now_ms, EventLog& ev) {
  Located top = locate(db, id);  // NotFound
  // The job and its unfinished descendants; refuse if any is active.
  std::vector<JobId> doomed{id};
  for (std::size_t i = 0; i < doomed.size(); ++i) {
    const JobId current = doomed[i];  // bound by pointer; push_back below reallocates
    {
      Stmt s(db, "SELECT state FROM jobs WHERE id = ?1");
      s.bind_id(1, current);
      if (s.step() && static_cast<JobState>(s.i64(0)) == JobState::active)
        throw Conflict("job " + current.str() + " is active; it can be removed once it finishes");
    }
    Stmt c(db, "SELECT id FROM jobs WHERE parent = ?1 AND state NOT IN (3, 5, 6, 7)");
    c.bind_id(1, current);
    while (c.step()) doomed.push_back(c.id(0));
  }
  for (const JobId& d : doomed) erase_job(db, d, now_ms, ev);
  ev.audit().job("removed", id, top.queue, top.subject);
}

void do_retry(Db& db, const JobId& id, std::int64_t now_ms, EventLog& ev) {
  auto [rowid, state, queue, subject] = locate(db, id);
  if (state != JobState::failed && state != JobState::dead && state != JobState::expired &&
      state != JobState::cancelled)
    throw Conflict("job " + id.str() + " is " + std::string(to_string(state)) +
                   "; only failed, dead, expired or cancelled jobs can be retried");
  // Retried by hand, the job has no TTL any more (as in the memory backend):
  // its opts are written again without one.
  StoredOpts stored;
  {
    Stmt r(db, "SELECT opts FROM jobs WHERE rowid = ?1");
    r.bind(1, rowid).step();  // the row locate just found
    stored = read_opts(r, 0, id);
  }
  stored.options.ttl_ms = 0;
  const std::string packed = pack_opts(stored.options, stored.on_failure);
  Stmt s(db,
         "UPDATE jobs SET state = 0, attempts_made = 0, stalls = 0, run_at_ms = ?1, "
         "finished_ms = 0, opts = ?2, expires_ms = 0 WHERE rowid = ?3");
  s.bind(1, now_ms).bind_blob(2, packed).bind(3, rowid).run();
  db.count(queue, state, -1);
  db.count(queue, JobState::waiting, 1);
  ev.add(EventType::waiting, queue, id, now_ms);
  ev.audit().job("retried", id, queue, subject, "manual");
}

void do_set_paused(Db& db, const std::string& queue, bool paused, EventLog& ev) {
  Stmt s(db,
         "INSERT INTO queues(name, paused) VALUES(?1, ?2) "
         "ON CONFLICT(name) DO UPDATE SET paused = excluded.paused");
  s.bind_text(1, queue).bind(2, paused ? 1 : 0).run();
  ev.audit().queue(paused ? "paused" : "resumed", queue);
}

// ----- issue 4: TTL, cancel, progress, logs, flows, housekeeping, limits,
// repeatables, events

std::vector<JobId> do_expire_due(Db& db, std::int64_t now_ms, EventLog& ev) {
  std::vector<std::pair<std::int64_t, Job>> due;
  {
    Stmt s(db,
           "SELECT rowid, " ASYNCMQ_JOB_COLS " FROM jobs WHERE expires_ms > 0 AND expires_ms <= ?1 "
           "AND state IN (0, 1) ORDER BY id");
    s.bind(1, now_ms);
    while (s.step()) due.emplace_back(s.i64(0), read_job(s, 1));
  }
  std::vector<JobId> out;
  for (auto& [rowid, j] : due) {
    expire_row(db, rowid, j, now_ms, ev);
    out.push_back(j.id);
  }
  // Keep the event log bounded; this runs on every maintenance pass.
  Stmt t(db, "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?1");
  t.bind(1, kEventRetention).run();
  return out;
}

JobState do_cancel(Db& db, const JobId& id, std::int64_t now_ms, EventLog& ev) {
  std::optional<Job> j = do_get(db, id);
  if (!j) throw NotFound("job " + id.str() + " not found");
  if (is_final(j->state))
    throw Conflict("job " + id.str() + " is already " + std::string(to_string(j->state)));
  if (j->state == JobState::active) {
    Stmt s(db, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1");
    s.bind_id(1, id).run();
    ev.audit().job("cancelled", id, j->queue, j->options.subject, "requested");
    return JobState::active;
  }
  Stmt s(db, "UPDATE jobs SET state = 7, finished_ms = ?1, expires_ms = 0 WHERE id = ?2");
  s.bind(1, now_ms).bind_id(2, id).run();
  db.count(j->queue, j->state, -1);
  db.count(j->queue, JobState::cancelled, 1);
  ev.add(EventType::cancelled, j->queue, id, now_ms);
  ev.audit().job("cancelled", id, j->queue, j->options.subject);
  if (!j->parent.is_nil())
    child_ended(db, id, j->parent, j->on_failure, JobState::cancelled, false, now_ms, ev);
  return JobState::cancelled;
}

// The queue of the job if it is active under `lease`.
std::optional<std::string> leased_queue(Db& db, const LeaseRef& lease) {
  Stmt s(db, "SELECT queue FROM jobs WHERE id = ?1 AND state = 2 AND lease_token = ?2");
  s.bind_id(1, lease.id).bind(2, static_cast<std::int64_t>(lease.token));
  if (!s.step()) return std::nullopt;
  return s.str(0);
}

bool do_set_progress(Db& db, const LeaseRef& lease, const std::string& progress,
                     std::int64_t now_ms, EventLog& ev) {
  auto queue = leased_queue(db, lease);
  if (!queue) return false;
  Stmt s(db, "UPDATE jobs SET progress = ?1 WHERE id = ?2");
  s.bind_blob(1, progress).bind_id(2, lease.id).run();
  ev.add(EventType::progress, *queue, lease.id, now_ms);  // no detail: see EventType
  return true;
}

bool do_append_logs(Db& db, const LeaseRef& lease, const std::vector<LogLine>& lines) {
  if (!leased_queue(db, lease)) return false;
  for (const LogLine& l : lines) {
    Stmt s(db, "INSERT INTO logs(job, time_ms, text) VALUES(?1, ?2, ?3)");
    s.bind_id(1, lease.id).bind(2, l.time_ms).bind_blob(3, l.text).run();
  }
  return true;
}

std::vector<LogLine> do_logs(Db& db, const JobId& id, std::size_t limit) {
  std::vector<LogLine> out;
  Stmt s(db, "SELECT time_ms, text FROM logs WHERE job = ?1 ORDER BY rowid LIMIT ?2");
  s.bind_id(1, id).bind(2, static_cast<std::int64_t>(limit));
  while (s.step()) out.push_back({s.i64(0), s.str(1)});
  return out;
}

std::vector<Job> do_children(Db& db, const JobId& parent) {
  std::vector<Job> out;
  Stmt s(db, "SELECT " ASYNCMQ_JOB_COLS " FROM jobs WHERE parent = ?1 ORDER BY id");
  s.bind_id(1, parent);
  while (s.step()) out.push_back(read_job(s));
  return out;
}

std::vector<JobId> do_clean(Db& db, const std::string& queue, JobState state,
                            std::int64_t before_ms, std::size_t limit, std::int64_t now_ms,
                            EventLog& ev) {
  std::vector<JobId> ids;
  {
    Stmt s(db, is_final(state)
                   ? "SELECT id FROM jobs WHERE queue = ?1 AND state = ?2 AND finished_ms < ?3 "
                     "ORDER BY finished_ms, id LIMIT ?4"
                   : "SELECT id FROM jobs WHERE queue = ?1 AND state = ?2 AND created_ms < ?3 "
                     "ORDER BY created_ms, id LIMIT ?4");
    s.bind_text(1, queue).bind(2, static_cast<int>(state)).bind(3, before_ms)
        .bind(4, static_cast<std::int64_t>(limit));
    while (s.step()) ids.push_back(s.id(0));
  }
  for (const JobId& id : ids) {
    erase_job(db, id, now_ms, ev);
    ev.audit().job("cleaned", id, queue, "", "state=" + std::string(to_string(state)));
  }
  return ids;
}

std::size_t do_drain(Db& db, const std::string& queue, std::int64_t now_ms, EventLog& ev) {
  std::vector<JobId> ids;
  {
    Stmt s(db,
           "SELECT id FROM jobs WHERE queue = ?1 AND state IN (0, 1) AND parent IS NULL AND "
           "children = 0");
    s.bind_text(1, queue);
    while (s.step()) ids.push_back(s.id(0));
  }
  for (const JobId& id : ids) erase_job(db, id, now_ms, ev);
  ev.audit().queue("drained", queue, "removed=" + std::to_string(ids.size()));
  return ids.size();
}

std::size_t do_obliterate(Db& db, const std::string& queue, bool force) {
  if (!force) {
    Stmt s(db, "SELECT count(*) FROM jobs WHERE queue = ?1 AND state = 2");
    s.bind_text(1, queue);
    if (s.step() && s.i64(0) > 0)
      throw Conflict("queue " + queue + " has " + std::to_string(s.i64(0)) +
                     " active jobs; stop its workers first or force");
  }
  {
    Stmt d(db, "DELETE FROM logs WHERE job IN (SELECT id FROM jobs WHERE queue = ?1)");
    d.bind_text(1, queue).run();
  }
  std::size_t n;
  {
    Stmt d(db, "DELETE FROM jobs WHERE queue = ?1");
    d.bind_text(1, queue).run();
    n = static_cast<std::size_t>(sqlite3_changes(db.handle()));
  }
  for (const char* sql : {"DELETE FROM idempotency WHERE queue = ?1",
                          "DELETE FROM counts WHERE queue = ?1", "DELETE FROM queues WHERE name = ?1",
                          "DELETE FROM limits WHERE queue = ?1",
                          "DELETE FROM limiter_log WHERE queue = ?1",
                          "DELETE FROM repeatables WHERE queue = ?1"}) {
    Stmt d(db, sql);
    d.bind_text(1, queue).run();
  }
  return n;
}

void do_set_rate_limit(Db& db, const std::string& queue, const RateLimit& l) {
  bool was_per_group = read_limit(db, queue).per_group;
  bool per_group = l.max > 0 && l.per_group;
  if (per_group != was_per_group) {
    // Puts the queue's jobs into (or takes them out of) the per-group
    // indexes: one pass over the jobs table, on this rare call only.
    Stmt u(db, "UPDATE jobs SET group_limited = ?2 WHERE queue = ?1 AND group_limited <> ?2");
    u.bind_text(1, queue).bind(2, per_group ? 1 : 0).run();
  }
  if (l.max == 0) {
    Stmt d(db, "DELETE FROM limits WHERE queue = ?1");
    d.bind_text(1, queue).run();
    Stmt d2(db, "DELETE FROM limiter_log WHERE queue = ?1");
    d2.bind_text(1, queue).run();
    return;
  }
  Stmt s(db,
         "INSERT INTO limits(queue, max, interval_ms, per_group) VALUES(?1, ?2, ?3, ?4) "
         "ON CONFLICT(queue) DO UPDATE SET max = excluded.max, interval_ms = excluded.interval_ms, "
         "per_group = excluded.per_group");
  s.bind_text(1, queue).bind(2, l.max).bind(3, l.interval_ms).bind(4, per_group ? 1 : 0).run();
  Stmt q(db, "INSERT OR IGNORE INTO queues(name, paused) VALUES(?1, 0)");
  q.bind_text(1, queue).run();
}

// Per group: 0 as soon as one waiting job's group has a slot (or nothing
// waits), else the earliest time one of those groups frees one. Cost: a
// seek and a use count per waiting group.
std::int64_t rate_limited_until_per_group(Db& db, const std::string& queue, const RateLimit& l,
                                          std::int64_t now_ms) {
  std::int64_t until = 0;
  WaitingGroups groups(db, queue);
  std::string g;
  while (groups.next(g)) {
    std::int64_t oldest = 0;
    if (group_used(db, queue, g, l, now_ms, &oldest) < l.max) return 0;
    std::int64_t t = oldest > 0 ? std::max(oldest + l.interval_ms, now_ms + 1)
                                : now_ms + l.interval_ms;
    until = until == 0 ? t : std::min(until, t);
  }
  return until;
}

std::int64_t do_rate_limited_until(Db& db, const std::string& queue, std::int64_t now_ms) {
  RateLimit l = read_limit(db, queue);
  if (l.max <= 0) return 0;
  if (l.per_group) return rate_limited_until_per_group(db, queue, l, now_ms);
  std::int64_t oldest = 0;
  if (allowance(db, queue, l, now_ms, false, &oldest) > 0) return 0;
  return oldest > 0 ? std::max(oldest + l.interval_ms, now_ms + 1) : now_ms + l.interval_ms;
}

// Repeatable options travel as a small JSON object (inspectable in the shell).
std::string options_to_json(const JobOptions& o) {
  boost::json::object v;
  v["priority"] = o.priority;
  v["attempts"] = o.attempts;
  v["backoff_kind"] = static_cast<int>(o.backoff.kind);
  v["backoff_delay_ms"] = o.backoff.delay_ms;
  v["backoff_max_delay_ms"] = o.backoff.max_delay_ms;
  v["backoff_jitter"] = o.backoff.jitter;
  v["timeout_ms"] = o.timeout_ms;
  v["lifo"] = o.lifo;
  v["ttl_ms"] = o.ttl_ms;
  v["subject"] = o.subject;
  v["group"] = o.group;
  return boost::json::serialize(v);
}

JobOptions options_from_json(std::string_view text) {
  JobOptions o;
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) throw IntegrityError("stored repeatable options are not valid JSON");
  const auto& obj = v.as_object();
  auto num = [&](const char* k) -> std::int64_t {
    auto* p = obj.if_contains(k);
    return p && p->is_int64() ? p->as_int64() : 0;
  };
  o.priority = static_cast<std::int32_t>(num("priority"));
  o.attempts = static_cast<std::int32_t>(num("attempts"));
  o.backoff.kind = static_cast<Backoff::Kind>(num("backoff_kind"));
  o.backoff.delay_ms = num("backoff_delay_ms");
  o.backoff.max_delay_ms = num("backoff_max_delay_ms");
  if (auto* p = obj.if_contains("backoff_jitter"); p && p->is_number())
    o.backoff.jitter = p->to_number<double>();
  o.timeout_ms = num("timeout_ms");
  if (auto* p = obj.if_contains("lifo"); p && p->is_bool()) o.lifo = p->as_bool();
  o.ttl_ms = num("ttl_ms");
  if (auto* p = obj.if_contains("subject"); p && p->is_string()) o.subject = p->as_string().c_str();
  if (auto* p = obj.if_contains("group"); p && p->is_string()) o.group = std::string(p->as_string());
  return o;
}

#define ASYNCMQ_REPEAT_COLS                                                                  \
  "queue, name, task, payload, options, cron, time_zone, every_ms, catch_up, paused, "      \
  "next_fire_ms, last_fire_ms, created_ms"

Repeatable read_repeatable(const Stmt& s) {
  Repeatable r;
  r.queue = s.str(0);
  r.name = s.str(1);
  r.task = s.str(2);
  r.payload = s.str(3);
  r.options = options_from_json(s.view(4));
  r.cron = s.str(5);
  r.time_zone = s.str(6);
  r.every_ms = s.i64(7);
  r.catch_up = s.i64(8) != 0;
  r.paused = s.i64(9) != 0;
  r.next_fire_ms = s.i64(10);
  r.last_fire_ms = s.i64(11);
  r.created_ms = s.i64(12);
  return r;
}

void do_upsert_repeatable(Db& db, const Repeatable& r) {
  Stmt s(db, "INSERT OR REPLACE INTO repeatables(" ASYNCMQ_REPEAT_COLS
             ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
  std::string options = options_to_json(r.options);
  s.bind_text(1, r.queue).bind_text(2, r.name).bind_text(3, r.task).bind_blob(4, r.payload)
      .bind_text(5, options).bind_text(6, r.cron).bind_text(7, r.time_zone).bind(8, r.every_ms)
      .bind(9, r.catch_up ? 1 : 0).bind(10, r.paused ? 1 : 0).bind(11, r.next_fire_ms)
      .bind(12, r.last_fire_ms).bind(13, r.created_ms).run();
  Stmt q(db, "INSERT OR IGNORE INTO queues(name, paused) VALUES(?1, 0)");
  q.bind_text(1, r.queue).run();
}

[[noreturn]] void repeatable_not_found(std::string_view queue, std::string_view name) {
  throw NotFound("repeatable " + std::string(name) + " not found in queue " + std::string(queue));
}

void do_remove_repeatable(Db& db, const std::string& queue, const std::string& name) {
  Stmt s(db, "DELETE FROM repeatables WHERE queue = ?1 AND name = ?2");
  s.bind_text(1, queue).bind_text(2, name).run();
  if (sqlite3_changes(db.handle()) == 0) repeatable_not_found(queue, name);
}

void do_set_repeatable_paused(Db& db, const std::string& queue, const std::string& name,
                              bool paused, std::int64_t next_fire_ms) {
  Stmt s(db, "UPDATE repeatables SET paused = ?1, "
             "next_fire_ms = CASE WHEN ?1 THEN next_fire_ms ELSE ?4 END "
             "WHERE queue = ?2 AND name = ?3");
  s.bind(1, paused ? 1 : 0).bind_text(2, queue).bind_text(3, name).bind(4, next_fire_ms).run();
  if (sqlite3_changes(db.handle()) == 0) repeatable_not_found(queue, name);
}

std::vector<Repeatable> do_repeatables(Db& db, const std::string& queue) {
  std::vector<Repeatable> out;
  Stmt s(db, "SELECT " ASYNCMQ_REPEAT_COLS " FROM repeatables WHERE ?1 = '' OR queue = ?1 "
             "ORDER BY queue, name");
  s.bind_text(1, queue);
  while (s.step()) out.push_back(read_repeatable(s));
  return out;
}

bool do_fire_repeatable(Db& db, const std::string& queue, const std::string& name,
                        std::int64_t expected, std::int64_t next, const Job& job, EventLog& ev) {
  {
    Stmt s(db,
           "UPDATE repeatables SET next_fire_ms = ?1, last_fire_ms = ?2 WHERE queue = ?3 AND "
           "name = ?4 AND paused = 0 AND next_fire_ms = ?2");
    s.bind(1, next).bind(2, expected).bind_text(3, queue).bind_text(4, name).run();
    if (sqlite3_changes(db.handle()) == 0) return false;
  }
  std::vector<Job> batch{job};
  do_enqueue(db, batch, ev, "repeatable=" + name);
  return true;
}

// The seq of the newest event recorded (0: none), as do_read_events numbers
// them.
std::int64_t do_newest_event_seq(Db& db) {
  Stmt s(db, "SELECT seq, length(jobs) FROM events ORDER BY seq DESC LIMIT 1");
  if (!s.step()) return 0;
  return event_seq(s.i64(0), s.i64(1) / 16 - 1);
}

std::vector<Event> do_read_events(Db& db, std::int64_t after_seq, std::size_t limit) {
  std::vector<Event> out;
  auto expand = [&](const Stmt& s, std::int64_t skip_through) {
    std::int64_t rowid = s.i64(0);
    std::string_view jobs = s.view(4);
    std::size_t n = jobs.size() / 16;
    for (std::size_t i = 0; i < n; ++i) {
      std::int64_t seq = event_seq(rowid, static_cast<std::int64_t>(i));
      if (seq <= skip_through) continue;
      Event e;
      e.seq = seq;
      e.time_ms = s.i64(1);
      e.type = static_cast<EventType>(s.i64(2));
      e.queue = s.str(3);
      std::array<std::uint8_t, 16> b{};
      std::memcpy(b.data(), jobs.data() + 16 * i, 16);
      e.job = JobId(b);
      e.detail = s.str(5);
      out.push_back(std::move(e));
    }
  };
  if (after_seq < 0) {
    // The newest rows holding at least `limit` events, then the tail of them.
    std::vector<Event> all;
    {
      Stmt s(db, "SELECT seq, time_ms, type, queue, jobs, detail FROM events ORDER BY seq DESC "
                 "LIMIT ?1");
      s.bind(1, static_cast<std::int64_t>(limit));
      std::vector<std::vector<Event>> rows;
      while (s.step()) {
        out.clear();
        expand(s, -1);
        rows.push_back(std::move(out));
      }
      out.clear();
      for (auto it = rows.rbegin(); it != rows.rend(); ++it)
        for (auto& e : *it) all.push_back(std::move(e));
    }
    if (all.size() > limit) all.erase(all.begin(), all.end() - static_cast<std::ptrdiff_t>(limit));
    return all;
  }
  Stmt s(db, "SELECT seq, time_ms, type, queue, jobs, detail FROM events WHERE seq >= ?1 "
             "ORDER BY seq LIMIT ?2");
  s.bind(1, after_seq / kIdsPerRow).bind(2, static_cast<std::int64_t>(limit));
  while (s.step() && out.size() < limit) expand(s, after_seq);
  if (out.size() > limit) out.resize(limit);
  return out;
}

// ---------------------------------------------------------------------------
// Data protection (issue 5): the walk of key rotation, the compare-and-set
// that re-seals, and erasure by subject.

// Finds a subject's jobs without a table scan. Partial: jobs without a
// subject (most of them) cost nothing on insert. Created on open if missing
// (older stores of the same schema version get it then).
constexpr const char* kSubjectIndex =
    "CREATE INDEX IF NOT EXISTS jobs_subject ON jobs(subject) WHERE subject <> x''";

// The audit table (backend.hpp "Audit table"): one row per chain line,
// keyed by the record's seq. Created on open if missing, like the outbox, so
// the schema version stays. The triggers hold asyncmq's own statements to
// the append-only contract (nothing here updates or deletes a line); they
// are no defence against whoever can write the file (who can drop them):
// the chain's MACs and the signed checkpoints are (`audit verify
// --from-backend`).
constexpr const char* kAuditChain = R"sql(
CREATE TABLE IF NOT EXISTS audit_chain (seq INTEGER PRIMARY KEY, line TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_chain_no_update BEFORE UPDATE ON audit_chain
  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_chain_no_delete BEFORE DELETE ON audit_chain
  BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
)sql";

// Inside the op's savepoint: a conflict thrown here stores nothing of the batch.
void do_append_audit_chain(Db& db, const std::vector<AuditChainLine>& lines) {
  for (const AuditChainLine& l : lines) {
    {
      Stmt s(db, "INSERT INTO audit_chain(seq, line) VALUES(?1, ?2) ON CONFLICT(seq) DO NOTHING");
      s.bind(1, l.seq).bind_text(2, l.text).run();
    }
    if (sqlite3_changes(db.handle()) > 0) continue;
    Stmt q(db, "SELECT line FROM audit_chain WHERE seq = ?1");
    q.bind(1, l.seq);
    if (!q.step() || q.view(0) != l.text) throw audit_chain_conflict(l.seq);
  }
}

std::vector<AuditChainLine> do_read_audit_chain(Db& db, std::int64_t after_seq, std::size_t limit) {
  std::vector<AuditChainLine> out;
  Stmt s(db, "SELECT seq, line FROM audit_chain WHERE seq > ?1 ORDER BY seq LIMIT ?2");
  s.bind(1, after_seq).bind(2, static_cast<std::int64_t>(limit));
  while (s.step()) {
    AuditChainLine l;
    l.seq = s.i64(0);
    l.text = s.str(1);
    out.push_back(std::move(l));
  }
  return out;
}

// The store's random id (meta 'store_id'), made by the first opener.
std::string read_store_id(Db& db, Env& env) {
  auto read = [&db]() -> std::optional<std::int64_t> {
    Stmt s(db, "SELECT value FROM meta WHERE key = 'store_id'");
    if (!s.step()) return std::nullopt;
    return s.i64(0);
  };
  std::optional<std::int64_t> id = read();
  if (!id) {
    Stmt s(db, "INSERT OR IGNORE INTO meta(key, value) VALUES('store_id', ?1)");
    s.bind(1, static_cast<std::int64_t>(env.random_u64() >> 1)).run();
    id = read();  // another opener's, if it was first
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(id.value_or(0)));
  return hex;
}

JobPage do_scan(Db& db, const std::optional<JobId>& after, std::size_t limit) {
  if (limit < 1 || limit > 1000)
    throw InvalidArgument("scan limit " + std::to_string(limit) + " is outside [1, 1000]");
  JobPage page;
  Stmt s(db, "SELECT " ASYNCMQ_JOB_COLS " FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2");
  if (after)
    s.bind_id(1, *after);
  else
    s.bind_blob(1, std::string_view());  // the empty blob sorts before every id
  s.bind(2, static_cast<std::int64_t>(limit) + 1);
  while (s.step()) {
    if (page.jobs.size() == limit) {
      page.next = page.jobs.back().id;
      break;
    }
    page.jobs.push_back(read_job(s));
  }
  if (page.jobs.empty()) return page;
  // The page's log lines in one range read of logs_job (job, rowid): the
  // page's jobs are exactly the ids in (after, last], and the reader's
  // transaction sees the same jobs the read above did. With no line in the
  // range this is one index seek that finds nothing.
  Stmt l(db, "SELECT job, time_ms, text FROM logs WHERE job > ?1 AND job <= ?2 "
             "ORDER BY job, rowid");
  if (after)
    l.bind_id(1, *after);
  else
    l.bind_blob(1, std::string_view());
  l.bind_id(2, page.jobs.back().id);
  while (l.step()) {
    JobId job = l.id(0);
    if (page.logs.empty() || page.logs.back().id != job) page.logs.push_back(JobLogLines{job, {}});
    page.logs.back().lines.push_back(LogLine{l.i64(1), l.str(2)});
  }
  return page;
}

// The rowids of job `w.id`'s first w.expected_logs.size() log lines into
// `rows`, if their texts are still exactly w.expected_logs; false if not (or
// the job has fewer lines). Lines after them are not read.
bool first_log_rows(Db& db, const SealedRewrite& w, std::vector<std::int64_t>& rows) {
  rows.clear();
  if (w.expected_logs.empty()) return true;
  Stmt s(db, "SELECT rowid, text FROM logs WHERE job = ?1 ORDER BY rowid LIMIT ?2");
  s.bind_id(1, w.id).bind(2, static_cast<std::int64_t>(w.expected_logs.size()));
  while (s.step()) {
    if (s.view(1) != w.expected_logs[rows.size()]) return false;
    rows.push_back(s.i64(0));
  }
  return rows.size() == w.expected_logs.size();
}

std::vector<bool> do_rewrite_sealed(Db& db, const std::vector<SealedRewrite>& rewrites) {
  validate_log_rewrites(rewrites);
  std::vector<bool> ok(rewrites.size());
  std::vector<std::int64_t> log_rows;
  for (std::size_t i = 0; i < rewrites.size(); ++i) {
    const SealedRewrite& w = rewrites[i];
    // Log lines are compared first: the row's UPDATE is the last check, and
    // once it matched, the rest of the item is written unconditionally.
    if (!first_log_rows(db, w, log_rows)) continue;
    Stmt s(db,
           "UPDATE jobs SET payload = ?1, result = ?2, error = ?3, progress = ?8 WHERE id = ?4 "
           "AND payload = ?5 AND result = ?6 AND error = ?7 AND progress = ?9");
    s.bind_blob(1, w.payload)
        .bind_blob(2, w.result)
        .bind_blob(3, w.error)
        .bind_id(4, w.id)
        .bind_blob(5, w.expected_payload)
        .bind_blob(6, w.expected_result)
        .bind_blob(7, w.expected_error)
        .bind_blob(8, w.progress)
        .bind_blob(9, w.expected_progress);
    s.run();
    if (sqlite3_changes(db.handle()) == 0) continue;
    for (std::size_t k = 0; k < log_rows.size(); ++k) {
      Stmt u(db, "UPDATE logs SET text = ?1 WHERE rowid = ?2");
      u.bind_blob(1, w.logs[k]).bind(2, log_rows[k]).run();
    }
    ok[i] = true;
  }
  return ok;
}

// Deletes with secure_delete on, so the freed cells and pages are zeroed in
// this transaction's pages; the caller then scrubs the file (do_scrub).
std::uint64_t do_purge_subject(Db& db, const std::string& subject) {
  db.exec("PRAGMA secure_delete=ON");
  struct Restore {
    Db& db;
    ~Restore() { sqlite3_exec(db.handle(), "PRAGMA secure_delete=FAST", nullptr, nullptr, nullptr); }
  } restore{db};
  std::vector<std::pair<std::string, JobState>> gone;
  {
    Stmt s(db, "SELECT queue, state FROM jobs WHERE subject = ?1 AND subject <> x''");
    s.bind_blob(1, subject);
    while (s.step()) gone.emplace_back(s.str(0), static_cast<JobState>(s.i64(1)));
  }
  if (gone.empty()) return 0;
  {
    // The subject's log lines (sealed) and idempotency keys go with its jobs.
    Stmt l(db, "DELETE FROM logs WHERE job IN (SELECT id FROM jobs WHERE subject = ?1 AND "
               "subject <> x'')");
    l.bind_blob(1, subject).run();
    Stmt k(db, "DELETE FROM idempotency WHERE job IN (SELECT id FROM jobs WHERE subject = ?1 AND "
               "subject <> x'')");
    k.bind_blob(1, subject).run();
  }
  Stmt d(db, "DELETE FROM jobs WHERE subject = ?1 AND subject <> x''");
  d.bind_blob(1, subject).run();
  for (const auto& [queue, state] : gone) db.count(queue, state, -1);
  return gone.size();
}

// True if the WAL was checkpointed completely and truncated to zero bytes.
bool do_checkpoint_truncate(Db& db) {
  Stmt s(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  return s.step() && s.i64(0) == 0;
}

// After a purge: true if no copy of deleted bytes is left in the files.
// secure_delete zeroes a deleted cell, but an earlier page split or merge
// can have left a copy of it in the unallocated middle of another page,
// which no pragma reaches (seen: a purged payload that survived in a page
// of live rows, with secure_delete on for every write). VACUUM rebuilds
// every page from the live rows; the checkpoint then writes them over the
// old ones and truncates the WAL, which held the older page images. Cost:
// a pass over the whole store, holding the write lock, on this rare call.
// False (retry later) if another connection kept either from completing.
bool do_scrub(Db& db) {
  int rc = sqlite3_exec(db.handle(), "VACUUM", nullptr, nullptr, nullptr);
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) return false;
  if (rc != SQLITE_OK) db.fail(rc, "vacuum");
  return do_checkpoint_truncate(db);
}

// ---------------------------------------------------------------------------

class SqliteBackend final : public Backend {
 public:
  ~SqliteBackend() override {
    // The writer lane runs what is queued before its thread ends.
    if (writer_ && trim_wanted_.load() > 0) writer_->submit(std::make_unique<TrimAtClose>());
  }

  SqliteBackend(const SqliteOptions& o, Env& env)
      : env_(env), display_(o.uri_for_display.empty() ? "sqlite://" + o.path : o.uri_for_display) {
    auto wdb = std::make_unique<Db>(o.path, o.busy_timeout_ms);
    open_store(*wdb, env);
    configure(*wdb, o.sync_full);
    auto rdb = std::make_unique<Db>(o.path, o.busy_timeout_ms);
    configure(*rdb, o.sync_full);
    wdb->exec(kSubjectIndex);
    wdb->exec(kAuditChain);
    store_id_ = read_store_id(*wdb, env);
    // FAST: deleted and overwritten cells are zeroed when their page is
    // written anyway (no extra I/O), so old sealed bytes do not linger in
    // live pages; a purge turns it fully on for its own deletions.
    wdb->exec("PRAGMA secure_delete=FAST");
    wdb->keep_outbox_in(&outbox_cache_);
    wdb->trim_outbox_to(&trim_wanted_);
    writer_ = std::make_unique<Lane>(std::move(wdb), true);
    reader_ = std::make_unique<Lane>(std::move(rdb), false);
    path_ = o.path;
    busy_timeout_ms_ = o.busy_timeout_ms;
  }

  awaitable<std::vector<JobId>> enqueue(std::vector<Job> jobs) override {
    return run_on<std::vector<JobId>>(*writer_, [jobs = std::move(jobs), audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      auto ids = do_enqueue(db, jobs, ev);
      ev.write(db);
      return ids;
    });
  }

  awaitable<std::vector<Job>> claim(const ClaimRequest& request) override {
    return run_on<std::vector<Job>>(*writer_, [r = request, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      auto jobs = do_claim(db, r, ev);
      ev.write(db);
      return jobs;
    });
  }

  awaitable<std::vector<LeaseStatus>> heartbeat(std::vector<LeaseRef> leases,
                                                std::int64_t expires_ms) override {
    return run_on<std::vector<LeaseStatus>>(*writer_,
                                            [leases = std::move(leases), expires_ms](Db& db) {
                                              return do_heartbeat(db, leases, expires_ms);
                                            });
  }

  awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) override {
    return run_on<std::vector<bool>>(*writer_, [o = std::move(outcomes), audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      auto ok = do_finish(db, o, ev);
      ev.write(db);
      return ok;
    });
  }

  awaitable<std::size_t> promote_due(std::int64_t now_ms) override {
    return run_on<std::size_t>(*writer_, [now_ms](Db& db) {
      EventLog ev;
      std::size_t n = do_promote_due(db, now_ms, ev);
      ev.write(db);
      return n;
    });
  }

  awaitable<ReclaimResult> reclaim_expired(std::int64_t now_ms, int max_stalls) override {
    return run_on<ReclaimResult>(*writer_, [now_ms, max_stalls, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      auto r = do_reclaim(db, now_ms, max_stalls, ev);
      ev.write(db);
      return r;
    });
  }

  awaitable<std::optional<Job>> get(const JobId& id) override {
    return run_on<std::optional<Job>>(*reader_, [id](Db& db) { return do_get(db, id); });
  }

  awaitable<JobPage> list(const ListRequest& request) override {
    return run_on<JobPage>(*reader_, [r = request](Db& db) { return do_list(db, r); });
  }

  awaitable<StateCounts> counts(std::string_view queue) override {
    return run_on<StateCounts>(*reader_,
                               [q = std::string(queue)](Db& db) { return do_counts(db, q); });
  }

  awaitable<std::vector<std::string>> queues() override {
    return run_on<std::vector<std::string>>(*reader_, [](Db& db) { return do_queues(db); });
  }

  awaitable<void> remove(const JobId& id) override {
    return run_on<void>(*writer_, [id, now = env_.now_ms(), audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      do_remove(db, id, now, ev);
      ev.write(db);
    });
  }

  awaitable<void> retry(const JobId& id, std::int64_t now_ms) override {
    return run_on<void>(*writer_, [id, now_ms, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      do_retry(db, id, now_ms, ev);
      ev.write(db);
    });
  }

  awaitable<void> set_paused(std::string_view queue, bool paused) override {
    return run_on<void>(*writer_, [q = std::string(queue), paused, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      do_set_paused(db, q, paused, ev);
      ev.write(db);
    });
  }

  awaitable<bool> is_paused(std::string_view queue) override {
    return run_on<bool>(*reader_, [q = std::string(queue)](Db& db) { return paused(db, q); });
  }

  awaitable<std::vector<JobId>> expire_due(std::int64_t now_ms) override {
    return run_on<std::vector<JobId>>(*writer_, [now_ms, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      auto ids = do_expire_due(db, now_ms, ev);
      ev.write(db);
      return ids;
    });
  }

  awaitable<JobState> cancel(const JobId& id, std::int64_t now_ms) override {
    return run_on<JobState>(*writer_, [id, now_ms, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      auto st = do_cancel(db, id, now_ms, ev);
      ev.write(db);
      return st;
    });
  }

  awaitable<bool> set_progress(LeaseRef lease, std::string progress,
                               std::int64_t now_ms) override {
    return run_on<bool>(*writer_, [lease, p = std::move(progress), now_ms, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      bool ok = do_set_progress(db, lease, p, now_ms, ev);
      ev.write(db);
      return ok;
    });
  }

  awaitable<bool> append_logs(LeaseRef lease, std::vector<LogLine> lines) override {
    return run_on<bool>(*writer_, [lease, l = std::move(lines)](Db& db) {
      return do_append_logs(db, lease, l);
    });
  }

  awaitable<std::vector<LogLine>> logs(const JobId& id, std::size_t limit) override {
    check_limit("log limit", limit, 10000);
    return run_on<std::vector<LogLine>>(*reader_,
                                        [id, limit](Db& db) { return do_logs(db, id, limit); });
  }

  awaitable<std::vector<Job>> children(const JobId& parent) override {
    return run_on<std::vector<Job>>(*reader_, [parent](Db& db) { return do_children(db, parent); });
  }

  awaitable<std::vector<JobId>> clean(std::string_view queue, JobState state,
                                      std::int64_t before_ms, std::size_t limit) override {
    check_limit("clean limit", limit, 10000);
    if (state == JobState::active)
      throw InvalidArgument("active jobs cannot be cleaned; cancel them first");
    return run_on<std::vector<JobId>>(
        *writer_, [q = std::string(queue), state, before_ms, limit, now = env_.now_ms(), audit = audit_actor()](Db& db) {
          EventLog ev(db, audit.get());
          auto ids = do_clean(db, q, state, before_ms, limit, now, ev);
          ev.write(db);
          return ids;
        });
  }

  awaitable<std::size_t> drain(std::string_view queue) override {
    return run_on<std::size_t>(*writer_, [q = std::string(queue), now = env_.now_ms(), audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      auto n = do_drain(db, q, now, ev);
      ev.write(db);
      return n;
    });
  }

  awaitable<std::size_t> obliterate(std::string_view queue, bool force) override {
    return run_on<std::size_t>(*writer_, [q = std::string(queue), force,
                                          audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      std::size_t n = do_obliterate(db, q, force);
      ev.audit().queue("obliterated", q, "removed=" + std::to_string(n));
      ev.write(db);
      return n;
    });
  }

  awaitable<void> set_rate_limit(std::string_view queue, RateLimit limit) override {
    validate_limit(limit);
    return run_on<void>(*writer_, [q = std::string(queue), limit, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      do_set_rate_limit(db, q, limit);
      ev.audit().queue("rate-limited", q, AuditEntries::rate_limit_detail(limit));
      ev.write(db);
    });
  }

  awaitable<RateLimit> rate_limit(std::string_view queue) override {
    return run_on<RateLimit>(*reader_, [q = std::string(queue)](Db& db) { return read_limit(db, q); });
  }

  awaitable<std::int64_t> rate_limited_until(std::string_view queue, std::int64_t now_ms) override {
    return run_on<std::int64_t>(*reader_, [q = std::string(queue), now_ms](Db& db) {
      return do_rate_limited_until(db, q, now_ms);
    });
  }

  awaitable<void> upsert_repeatable(Repeatable r) override {
    return run_on<void>(*writer_, [r = std::move(r), audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      do_upsert_repeatable(db, r);
      ev.audit().queue("repeatable-set", r.queue, "name=" + r.name);
      ev.write(db);
    });
  }

  awaitable<void> remove_repeatable(std::string_view queue, std::string_view name) override {
    return run_on<void>(*writer_, [q = std::string(queue), n = std::string(name),
                                   audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      do_remove_repeatable(db, q, n);
      ev.audit().queue("repeatable-removed", q, "name=" + n);
      ev.write(db);
    });
  }

  awaitable<void> set_repeatable_paused(std::string_view queue, std::string_view name,
                                        bool paused, std::int64_t next_fire_ms) override {
    return run_on<void>(*writer_, [q = std::string(queue), n = std::string(name), paused,
                                   next_fire_ms, audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      do_set_repeatable_paused(db, q, n, paused, next_fire_ms);
      ev.audit().queue(paused ? "repeatable-paused" : "repeatable-resumed", q, "name=" + n);
      ev.write(db);
    });
  }

  awaitable<std::vector<Repeatable>> repeatables(std::string_view queue) override {
    return run_on<std::vector<Repeatable>>(
        *reader_, [q = std::string(queue)](Db& db) { return do_repeatables(db, q); });
  }

  awaitable<bool> fire_repeatable(std::string_view queue, std::string_view name,
                                  std::int64_t expected_fire_ms, std::int64_t next_fire_ms,
                                  Job job) override {
    return run_on<bool>(*writer_, [q = std::string(queue), n = std::string(name),
                                   expected_fire_ms, next_fire_ms, j = std::move(job), audit = audit_actor()](Db& db) {
      EventLog ev(db, audit.get());
      bool fired = do_fire_repeatable(db, q, n, expected_fire_ms, next_fire_ms, j, ev);
      ev.write(db);
      return fired;
    });
  }

  awaitable<std::int64_t> follow_events(std::int64_t until_ms) override {
    return run_on<std::int64_t>(*writer_, [until_ms](Db& db) {
      Stmt s(db,
             "INSERT INTO meta(key, value) VALUES('events_until', ?1) ON CONFLICT(key) "
             "DO UPDATE SET value = max(value, excluded.value) RETURNING value");
      s.bind(1, until_ms);
      if (!s.step()) db.fail(SQLITE_ERROR, "follow events");
      db.set_events_followed_until(s.i64(0));
      return do_newest_event_seq(db);
    });
  }

  awaitable<EventPage> read_events(std::int64_t after_seq, std::size_t limit) override {
    check_limit("event limit", limit, 10000);
    return run_on<EventPage>(*reader_, [after_seq, limit](Db& db) {
      EventPage page;
      page.events = do_read_events(db, after_seq, limit);
      if (!page.events.empty()) page.last_seq = page.events.back().seq;
      return page;
    });
  }

  std::string describe() const override { return display_; }

  // ---- Data protection (issue 5) ----------------------------------------

  awaitable<JobPage> scan(std::optional<JobId> after, std::size_t limit) override {
    return run_on<JobPage>(*reader_, [after, limit](Db& db) { return do_scan(db, after, limit); });
  }

  awaitable<std::vector<bool>> rewrite_sealed(std::vector<SealedRewrite> rewrites) override {
    return run_on<std::vector<bool>>(
        *writer_, [w = std::move(rewrites)](Db& db) { return do_rewrite_sealed(db, w); });
  }

  awaitable<PurgeResult> purge_subject(std::string subject) override {
    if (subject.empty()) throw InvalidArgument("purge needs a subject");
    return purge_then_checkpoint(this, std::move(subject));
  }

  // ---- Audit outbox (issue 6) ---------------------------------------------

  void enable_audit_outbox(std::string actor) override {
    std::lock_guard lock(audit_mu_);
    if (!audit_actor_) audit_actor_ = std::make_shared<const std::string>(std::move(actor));
  }

  awaitable<std::vector<AuditOutboxRow>> read_audit_outbox(std::int64_t after_seq,
                                                          std::size_t limit) override {
    check_limit("outbox limit", limit, 10000);
    if (auto mine = outbox_cache_.copy_after(after_seq, limit); !mine.empty()) {
      std::vector<AuditOutboxRow> out;
      out.reserve(mine.size());
      for (auto& [seq, entries] : mine) {
        AuditOutboxRow r;
        r.seq = seq;
        r.events = decode_audit_entries(entries);
        out.push_back(std::move(r));
      }
      return ready_rows(std::move(out));
    }
    return run_on<std::vector<AuditOutboxRow>>(*reader_, [after_seq, limit](Db& db) {
      std::vector<AuditOutboxRow> out;
      Stmt s(db, "SELECT seq, entries FROM audit_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2");
      s.bind(1, after_seq).bind(2, static_cast<std::int64_t>(limit));
      while (s.step()) {
        AuditOutboxRow r;
        r.seq = s.i64(0);
        r.events = decode_audit_entries(s.view(1));
        out.push_back(std::move(r));
      }
      return out;
    });
  }

  static awaitable<std::vector<AuditOutboxRow>> ready_rows(std::vector<AuditOutboxRow> rows) {
    co_return rows;
  }

  // Nothing is written now: the writer's next transaction deletes the rows
  // (Db::trim_outbox), and nobody waits for it; the destructor runs one
  // last transaction for what is left.
  void trim_audit_outbox(std::int64_t through_seq) override {
    std::int64_t seen = trim_wanted_.load();
    while (seen < through_seq && !trim_wanted_.compare_exchange_weak(seen, through_seq)) {
    }
  }

  std::string store_id() const override { return store_id_; }

  // ---- Audit table (issue 6) ------------------------------------------------

  // One op of the writer: its own savepoint inside the batch's transaction.
  awaitable<void> append_audit_chain(std::vector<AuditChainLine> lines) override {
    validate_audit_chain(lines);
    return run_on<void>(*writer_,
                        [l = std::move(lines)](Db& db) { do_append_audit_chain(db, l); });
  }

  awaitable<std::vector<AuditChainLine>> read_audit_chain(std::int64_t after_seq,
                                                         std::size_t limit) override {
    check_limit("audit table limit", limit, 10000);
    return run_on<std::vector<AuditChainLine>>(
        *reader_, [after_seq, limit](Db& db) { return do_read_audit_chain(db, after_seq, limit); });
  }

  awaitable<std::int64_t> audit_chain_head() override {
    return run_on<std::int64_t>(*reader_, [](Db& db) {
      Stmt s(db, "SELECT max(0, coalesce(max(seq), 0)) FROM audit_chain");
      return s.step() ? s.i64(0) : std::int64_t{0};
    });
  }

 private:
  // The outbox actor for a write being submitted now (null: the outbox is
  // off): the calling decorator's (core/audit_actor.hpp), else the default.
  std::shared_ptr<const std::string> audit_actor() const {
    std::shared_ptr<const std::string> actor;
    {
      std::lock_guard lock(audit_mu_);
      actor = audit_actor_;
    }
    const std::string* now = core::current_audit_actor();
    if (!actor || !now || *now == *actor) return actor;
    return std::make_shared<const std::string>(*now);
  }

  // A transaction of its own for the outbox rows relayed since the last
  // trim, however few (see Db::trim_outbox).
  class TrimAtClose final : public Op {
   public:
    void execute(Db& db) override { db.trim_outbox(true); }
    void fail(std::exception_ptr) override {}  // the rows stay; relayed at most once
    void complete() override {}
    bool failed() const override { return false; }
  };

  mutable std::mutex audit_mu_;
  std::shared_ptr<const std::string> audit_actor_;  // GUARDED_BY(audit_mu_)
  std::atomic<std::int64_t> trim_wanted_{0};  // read by the writer's Db
  std::string store_id_;

  // A coroutine with plain value parameters (see run_on about GCC 12). The
  // scrub runs on its own connection, outside any transaction.
  static awaitable<PurgeResult> purge_then_checkpoint(SqliteBackend* self, std::string subject) {
    auto purge = [subject](Db& db) { return do_purge_subject(db, subject); };
    PurgeResult out;
    out.jobs = co_await run_on<std::uint64_t>(*self->writer_, std::move(purge));
    auto scrub = [](Db& db) { return do_scrub(db); };
    out.scrubbed = co_await run_on<bool>(self->maintenance_lane(), std::move(scrub));
    co_return out;
  }

  Lane& maintenance_lane() {
    std::lock_guard lock(maintenance_mu_);
    if (!maintenance_)
      maintenance_ = std::make_unique<Lane>(std::make_unique<Db>(path_, busy_timeout_ms_), false,
                                            /*transactional=*/false);
    return *maintenance_;
  }

  std::string path_;
  int busy_timeout_ms_ = 0;
  std::mutex maintenance_mu_;
  std::unique_ptr<Lane> maintenance_;  // created by the first purge

 private:
  Env& env_;
  std::string display_;
  OutboxCache outbox_cache_;  // before the lanes: the writer's Db points here
  // Declared last: destroyed first, draining their queues and joining.
  std::unique_ptr<Lane> writer_;
  std::unique_ptr<Lane> reader_;
};

}  // namespace

std::shared_ptr<Backend> make_sqlite_backend(const SqliteOptions& options, Env& env) {
  return std::make_shared<SqliteBackend>(options, env);
}

}  // namespace asyncmq::backends

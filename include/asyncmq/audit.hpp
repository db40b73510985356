// The audit trail: a tamper-evident, forward-secure log of every job event
// and administrative act.
//
//   auto audit = asyncmq::AuditLog::open(asyncmq::AuditOptions::in_dir("/var/lib/asyncmq/audit"),
//                                        env);
//   asyncmq::ClientOptions o;
//   o.audit = audit;          // every Queue and Worker made from this client
//   o.actor = "billing-api";  // is audited through an auditing Backend
//   auto client = asyncmq::Client::open("sqlite:///var/lib/asyncmq.db", env, o);
//
// Records. Each record holds a sequence number (1, 2, 3, ... with no gaps),
// the time (Env::now_ms), the epoch of the key that MACed it, the actor, the
// action, the job id, the queue, the data subject's blind index, a short
// detail, the previous record's MAC and its own MAC:
//
//   MAC = HMAC-SHA-256(k_epoch, canonical encoding)
//   canonical encoding = "asyncmq-audit-record-v1"
//                        || u64be(seq) || i64be(time_ms) || u64be(epoch)
//                        || lp(actor) || lp(action) || lp(job) || lp(queue)
//                        || lp(subject) || lp(detail) || lp(prev_mac)
//   lp(x) = u32be(byte length of x) || x
//
// Every field is length-prefixed, so no two different records share an
// encoding. The first record's prev_mac is empty.
//
// A record relayed from a backend's audit outbox (append_outbox) also names
// its source, "<store id>:<outbox row seq>:<index in the row>", and is
// MACed as
//   "asyncmq-audit-record-v2" || ...the same fields... || lp(detail)
//                             || lp(source) || lp(prev_mac)
// (the other domain string keeps the two layouts apart); its JSON line has
// "src" after "detail". The chain thereby remembers which outbox rows it
// holds, and that memory is as tamper-evident as the rest.
//
// What a record never holds: a payload, a result, an error text, a subject
// in the clear, a credential. The subject field holds the subject only when
// it is a blind index (64 lowercase hex characters, what the sealing codec
// stores); any other stored subject is written as "unindexed". Details are
// fixed words and numbers (attempt counts, times), never caller text.
//
// Actions of job and queue transitions (the table in
// src/security/audit_backend.hpp): added, deduplicated, claimed, completed,
// retried (an attempt failed and the job will run again; also a manual
// retry, detail "manual"), dead, stalled (a lease expired and the job went
// back to waiting), removed, paused, resumed, expired, cancelled, cleaned,
// drained, obliterated, rate-limited, repeatable-set/-removed/-paused/
// -resumed; and, written by other parts of asyncmq through
// AuditLog::append: purged, key and apikey changes, policy-reload, denied.
//
// Forward security (Schneier-Kelsey, as systemd's Forward Secure Sealing).
// The verifier holds a random 32-byte seed, the verification key. The
// writer never holds it: it starts with k_0 = HMAC(seed, "asyncmq-audit-epoch0")
// and holds only the current epoch's key. Every `epoch_records` records or
// `epoch_ms` of time it moves to
//   k_{e+1} = HMAC-SHA-256(k_e, "asyncmq-audit-evolve" || u64be(e)),
// wipes k_e from memory (OPENSSL_cleanse) and replaces the writer key file
// (write to a temporary file, fsync, rename, fsync the directory). HMAC is
// one-way, so whoever steals the writer's state in epoch e can forge records
// of epoch e and later but cannot re-MAC any record of an earlier epoch. The
// verifier re-derives every k_e from the seed. (The file system may keep the
// replaced file's old blocks until they are reused; the rename is atomic, an
// in-place overwrite would not be.)
//
// Checkpoints. A hash chain cannot show that its tail was cut off. So every
// `checkpoint_records` records or `checkpoint_ms` of time, and on close, the
// head (seq, time, epoch, mac) is signed with an Ed25519 key and appended
// to a separate checkpoint file:
//   signed message = "asyncmq-audit-checkpoint-v1" || u64be(seq)
//                    || i64be(time_ms) || u64be(epoch) || lp(mac) || lp(key_id)
// A checkpoint is also written just before every key evolution, and the
// verifier refuses a record whose epoch is later than that of a checkpoint
// at or after it: so a thief of k_e cannot relabel a record of an earlier
// epoch as one of epoch e and re-MAC it. What a thief of k_e can forge is
// limited to records after the last checkpoint.
// The writer only ever appends to it; deploy it where the writer's user
// cannot rewrite it (another host, a log shipper, `chattr +a`). The verifier
// checks every checkpoint against the log, so a log shorter than any
// checkpoint, or a checkpointed record that changed, is detected.
//
// Files (one line per record, JSON, fixed field order, nothing else):
//   log         {"seq":1,"time":..,"epoch":0,"actor":"..","action":"..","job":"..",
//                "queue":"..","subject":"..","detail":"..","prev":"<hex>","mac":"<hex>"}
//   checkpoints {"seq":..,"time":..,"epoch":..,"mac":"<hex>","key":"<hex key id>",
//                "sig":"<base64>"}
//   writer key  text, mode 0600: epoch, epoch start, k_epoch, Ed25519 private key
//   verify key  text, mode 0600: the seed and the Ed25519 public key; keep it
//               off the hosts that run writers.
//
// Several processes may share one log: each batch is appended under an
// exclusive flock(2) on the log file, and a process that finds the log grown
// (or the epoch advanced) by another one re-reads the head and the key file
// first.
//
// Durability: when append() returns, its records are in the log file
// (one write(2)): a crash of the process loses none of them. When they are
// on disk is AuditOptions::fsync's choice (below).
//
// The backend sink (AuditOptions::backend_sink, off by default). The chain
// can also live in the store: the auditing Backend copies every line of the
// log, exactly as written, into the backend's own append-only audit table
// (Backend::append_audit_chain), keyed by seq, in each relay round after
// the log write. The copy is idempotent by seq (a line already there is
// skipped, a different one under the same seq is refused), so a crash
// between the log write and the copy only delays it: the next relay copies
// whatever the table lacks, read from the log (AuditLog::read_lines). The
// table is verified like the file (verify_audit with an AuditLineReader:
// `asyncmq audit verify --from-backend`), against the same checkpoint file,
// which stays where the writer cannot rewrite it. One store holds one
// chain: writers of two different chains into one store are refused at the
// first seq they disagree on (logged and counted, never thrown to the
// caller of the transition).
//
// Job transitions are not appended after the fact: the auditing Backend
// (src/security/audit_backend.hpp) has the backend write their entries into
// its outbox in the transition's own transaction, and relays them here with
// append_outbox, which appends each exactly once. So a crash at any point
// (before the commit, between the commit and the append, between the
// append and the outbox trim, inside the append) neither loses a committed
// transition's record nor writes one twice: what was committed and not yet
// relayed is relayed by the next relay of any process sharing the store.
// Only administrative acts with no backend transaction (key changes,
// policy reloads, denials, purges) are appended directly.
//
// A checkpoint only ever names a record that is already on disk (under
// `never`, that the OS was given): the log is fdatasync'd before a
// checkpoint naming its head is written. So a machine crash can lose the
// tail of the log, as the fsync policy allows, but never leaves a
// checkpoint pointing past what survived (which `audit verify` would report
// as a cut tail).
//
// Thread safety: AuditLog is safe for concurrent use. Lifetime: shared; the
// Env given to open() must outlive it.
#pragma once

#include <asyncmq/error.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace asyncmq {

class Env;

// What a caller appends: one event.
struct AuditEvent {
  AuditEvent() {}  // not an aggregate (GCC 12 and co_await; see job.hpp)
  AuditEvent(std::string action_, std::string actor_, std::string job_, std::string queue_,
             std::string subject_ = {}, std::string detail_ = {})
      : action(std::move(action_)),
        actor(std::move(actor_)),
        job(std::move(job_)),
        queue(std::move(queue_)),
        subject(std::move(subject_)),
        detail(std::move(detail_)) {}
  std::string action;
  std::string actor;    // principal name, "worker:<id>", "cli"
  std::string job;      // job id, or empty for queue and administrative acts
  std::string queue;    // or empty
  std::string subject;  // blind index only (see above)
  std::string detail;   // fixed words and numbers; never caller data
};

// One transaction's audit entries in a backend's outbox (see "Audit
// outbox" in backend.hpp and AuditLog::append_outbox).
struct AuditOutboxRow {
  std::int64_t seq = 0;  // increasing in commit order, never reused by the store
  std::vector<AuditEvent> events;  // in the order the transaction made them
};

// One line of the chain as a sink stores it: the record's seq and its JSON
// line exactly as the writer rendered it (no newline).
struct AuditChainLine {
  std::int64_t seq = 0;
  std::string text;
  bool operator==(const AuditChainLine&) const = default;
};

// One record as stored.
struct AuditRecord {
  std::uint64_t seq = 0;
  std::int64_t time_ms = 0;
  std::uint64_t epoch = 0;
  AuditEvent event;
  // "<store id>:<outbox seq>:<index>" for a record relayed from a backend's
  // outbox (AuditLog::append_outbox), else empty.
  std::string source;
  std::string prev_mac;  // raw bytes (32), empty for the first record
  std::string mac;       // raw bytes (32)
};

// The record's canonical encoding (above) and its JSON line (no newline).
std::string audit_canonical(const AuditRecord& r);
std::string audit_to_json_line(const AuditRecord& r);
// Parses a log line; nullopt if it is not a well-formed record line.
std::optional<AuditRecord> audit_from_json_line(std::string_view line);

// When the log reaches the disk. All three keep the chain, the MACs and the
// checkpoints exactly as verifiable; they differ in what a crash of the
// machine (not of the process) can lose, and in what a batch costs.
enum class AuditFsync : std::uint8_t {
  // Leave it to the OS (it writes dirty pages back within about 30 s on
  // Linux): a machine crash may lose that much. Checkpoints are still
  // fdatasync'd.
  never,
  // Group commit (the default). A background thread of the AuditLog runs
  // fdatasync on the log once records were written, at most one flush
  // starting per 10 ms; each covers every record written before it began.
  // A record is on disk within about 10 ms plus two fdatasync times after
  // append() returns; a machine crash loses at most the records of that
  // window that were appended directly (denials, key changes): a relayed
  // record's outbox row is trimmed only once a flush covers the record
  // (trimmable_through), so it is relayed again. append() never waits for
  // the disk, so an auditing Backend adds no disk wait to a worker's event
  // loop. Periodic checkpoints are written by that thread, after its
  // fdatasync (so they anchor the last durable record, a few milliseconds
  // behind the head).
  group,
  // fdatasync after each appended batch, before append() returns: a record
  // is on disk when append() returns. One disk flush per batch, on the
  // caller's thread (a worker's event loop stalls for it).
  always,
};

struct AuditOptions {
  // The record log (created if missing, only ever appended to).
  std::filesystem::path log_path;
  // The checkpoint sink; put it where the writer cannot rewrite it.
  std::filesystem::path checkpoint_path;
  // The writer's key state, from `asyncmq audit keygen` (mode 0600).
  std::filesystem::path writer_key_path;

  // ---- behaviour ----
  // The key evolves after this many records ...
  std::uint64_t epoch_records = 10'000;
  // ... or when the epoch is this old at the next append (ms). A shorter
  // epoch narrows what a stolen key can forge; each evolution costs one
  // fsync'd key-file replacement.
  std::int64_t epoch_ms = 3'600'000;
  // A signed checkpoint after this many records since the last one ...
  std::uint64_t checkpoint_records = 1'000;
  // ... or when the last one is this old at the next append (ms), and always
  // on close. A tail cut off after the last checkpoint goes unnoticed, so
  // this bounds what a truncation can hide.
  std::int64_t checkpoint_ms = 60'000;
  // See AuditFsync.
  AuditFsync fsync = AuditFsync::group;

  // ---- external systems ----
  // Called with each record's JSON line (no newline), in sequence order,
  // after the batch is in the log (ELK, Splunk, a socket). Called under the
  // log's lock: it must not call back into the AuditLog, and should be fast.
  // An exception from it is logged and ignored.
  std::function<void(std::string_view json_line)> hook;
  // Also keep the chain in the backend's own audit table (see "The backend
  // sink" above): every auditing Backend made with this log copies the
  // log's lines into its store in each relay round. Off by default: the
  // copy is one more write transaction per relay round (and a read of the
  // log's new lines), on the path of every audited call, which would about
  // double what auditing costs a worker on sqlite://; turn it on where the
  // log's disk may not outlive the host, or to export from the store.
  // Setting audit.backend_sink, env ASYNCMQ_AUDIT_BACKEND_SINK.
  bool backend_sink = false;

  // log_path dir/audit.log, checkpoint_path dir/checkpoints.log,
  // writer_key_path dir/writer.key.
  static AuditOptions in_dir(const std::filesystem::path& dir);
};

struct AuditHead {
  std::uint64_t seq = 0;  // 0: empty log
  std::uint64_t epoch = 0;
  std::string mac;        // raw
};

// The writer side of the audit trail.
// Errors: open() throws NotFound for a missing writer key file,
// Error(errc::permission_denied) for one readable by group or others,
// InvalidArgument for a malformed one, IntegrityError if the log's head was
// written under a later epoch than the key file can reach (a key file from
// another chain). append() never throws for an I/O failure: see append().
class AuditLog {
 public:
  static std::shared_ptr<AuditLog> open(AuditOptions options, Env& env);
  ~AuditLog();  // close()
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends `events` as consecutive records, in order, with one write (and
  // one fdatasync under AuditFsync::always; under group, the background
  // thread's next one covers them). Evolves the key and writes a checkpoint
  // when due (under group, the periodic one is the background thread's). If the write fails (disk full, I/O error), the failure is logged
  // and counted, the events are kept in memory (at most 100'000; beyond that
  // the oldest are dropped and counted) and written before the next batch:
  // an audit problem never undoes or hides a job transition that a backend
  // already committed.
  void append(std::span<const AuditEvent> events);
  void append(const AuditEvent& event) { append(std::span<const AuditEvent>(&event, 1)); }

  // Relays the rows of a backend's audit outbox (Backend::read_audit_outbox)
  // into the chain, exactly once however many processes relay the same
  // store into this log and whatever crashed before: under the log's flock,
  // it finds the last record it relayed from `store` (each relayed record
  // carries its source "<store>:<row seq>:<index>", covered by its MAC) and
  // appends, in order, only the events after it; events already in the
  // chain are skipped. `rows` must be every committed row after some seq
  // (what read_audit_outbox returns), in seq order.
  // Returns the seq through which every row of `store` is wholly in the
  // chain (what the caller may trim), also when nothing was appended.
  // Never throws for an I/O failure: the failure is logged and counted and
  // the rows not written stay for the next relay (they are not held in
  // memory like append()'s). Throws Error(errc::closed) after close(),
  // InvalidArgument for an empty store id or one holding ':'.
  // Cost: a store new to this log makes each process's first relay read the
  // log backwards to its start; after that it reads nothing but what other
  // processes appended since its last batch.
  std::int64_t append_outbox(std::string_view store, std::span<const AuditOutboxRow> rows);

  // append_outbox in three steps, so that the records' HMACs and JSON lines
  // (nearly all of a relay's CPU time) can be rendered on another thread,
  // at low priority, without holding the log:
  //   prepare_outbox: under the log's lock, picks the events not yet in
  //     the chain and copies the head and the current epoch key's context
  //     (when the batch fits in the epoch and nothing else waits to be
  //     written; otherwise it leaves the batch to commit_outbox);
  //   render: no lock, any one thread; touches only the batch, and wipes
  //     the key copy when done;
  //   commit_outbox: under the lock, writes the rendered lines if the chain
  //     has not moved since prepare_outbox (no record appended, no key
  //     evolved, no epoch due), else relays the rows as append_outbox does.
  // commit_outbox returns and guarantees what append_outbox would: every
  // event exactly once, in order. A batch that is never rendered may be
  // committed, and one abandoned mid-render may be relayed again with
  // append_outbox (render only reads the rows). Errors: as append_outbox.
  struct OutboxBatch;
  std::shared_ptr<OutboxBatch> prepare_outbox(std::string_view store,
                                              std::vector<AuditOutboxRow> rows);
  static void render(OutboxBatch& batch);
  std::int64_t commit_outbox(OutboxBatch& batch);
  // Whether render() has returned for the batch (safe from any thread).
  static bool rendered(const OutboxBatch& batch);
  // The rows a batch holds (for a caller that gives up on render).
  static std::span<const AuditOutboxRow> rows_of(const OutboxBatch& batch);
  // The seq through which the rows of `store` that this object relayed
  // (append_outbox) are in the chain and on disk: what the relay may trim
  // from the outbox, so that a machine crash loses no record whose
  // transition the store kept (a record still only in the page cache is
  // still in the outbox). Under AuditFsync::always that is what
  // append_outbox returned; under group it follows the background
  // thread's flushes; under never (no promise) it is what was relayed.
  std::int64_t trimmable_through(std::string_view store) const;
  // fdatasyncs the log now if records were written since the last one
  // (nothing under AuditFsync::never). A failure is logged and counted.
  void flush();

  // Writes a signed checkpoint of the current head now (if there is a record
  // not yet checkpointed).
  void checkpoint();
  // Evolves the key now if the epoch is due by time (appends check this too;
  // a quiet writer may call it from a timer).
  void tick();
  // Retries held events, stops the background thread, fdatasyncs the log
  // (unless AuditFsync::never) and writes a final checkpoint: after it,
  // every record appended is on disk and anchored. Idempotent; append()
  // after close() throws Error(errc::closed). The destructor calls it.
  void close();

  // Up to `limit` (1..10000) complete lines of the log with seq >
  // after_seq, in log order, as written (what the backend sink copies). Finds
  // the first by bisecting the file on seq (the writer appends in seq order),
  // so a call costs a few reads whatever the log's size. Lines that are not
  // records are left out (verify reports them). Throws InvalidArgument for
  // a bad limit, Error(errc::closed) after close(), Error(backend_failure)
  // for a read error.
  std::vector<AuditChainLine> read_lines(std::uint64_t after_seq, std::size_t limit) const;
  // AuditOptions::backend_sink as opened.
  bool backend_sink() const;

  AuditHead head() const;
  std::uint64_t failures() const;  // failed writes so far
  std::uint64_t dropped() const;   // events dropped from the held queue

  struct Impl;

 private:
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Creates a new chain's keys: a random seed and Ed25519 key pair. Writes the
// writer key file (k_0, epoch 0, the Ed25519 private key) and the verify key
// file (the seed, the Ed25519 public key), both mode 0600, refusing to
// overwrite either (Conflict). Returns the checkpoint key id (hex).
std::string audit_keygen(const std::filesystem::path& writer_key_path,
                         const std::filesystem::path& verify_key_path);

struct AuditVerifyOptions {
  std::filesystem::path log_path;
  std::filesystem::path checkpoint_path;
  std::filesystem::path verify_key_path;
  // Start at this checkpoint (1-based, in file order), trusting the log up
  // to it: records before its seq are not checked (they may be archived);
  // the record at its seq, if present, must match it.
  std::optional<std::size_t> from_checkpoint;
  // Accept valid records after the last checkpoint (a live log). Off by
  // default: such a tail could have been cut and nobody would know.
  bool allow_unanchored = false;
};

struct AuditProblem {
  enum class Kind : std::uint8_t {
    changed,        // the record's content or MAC does not verify
    removed,        // records missing from the middle
    inserted,       // a record that does not belong to the chain
    reordered,      // records out of sequence order
    unreadable,     // a line that is not a record
    truncated,      // a checkpoint names a record the log does not reach
    unanchored,     // valid records after the last checkpoint
    bad_checkpoint, // a checkpoint with a bad signature or out of order
  };
  Kind kind;
  std::uint64_t seq = 0;  // the first bad sequence number
  std::string message;    // names seq, line and what is wrong; no secrets
};
std::string_view to_string(AuditProblem::Kind k);

struct AuditVerifyReport {
  bool intact = false;
  std::uint64_t records = 0;      // records checked and found good
  std::uint64_t checkpoints = 0;  // checkpoints checked and found good
  std::uint64_t last_seq = 0;     // last good record
  std::uint64_t anchored_seq = 0; // highest seq a good checkpoint covers
  std::optional<AuditProblem> problem;  // the first one
  std::vector<std::string> notes;       // further findings, one line each
};

// Walks the chain. Throws (NotFound, InvalidArgument, permission_denied) only
// for an unusable verify key or a missing log; everything found in the log
// is in the report.
AuditVerifyReport verify_audit(const AuditVerifyOptions& options);

// Where verify_audit reads the lines from when they are not in a file: the
// stored lines with seq > after_seq in seq order, at most `limit`; empty at
// the end (Backend::read_audit_chain, run to completion). It is called
// with the lowest int64 first (every stored line counts, whatever its
// seq), then with the last seq it returned.
using AuditLineReader =
    std::function<std::vector<AuditChainLine>(std::int64_t after_seq, std::size_t limit)>;

// The same walk and checks over lines from `lines` (options.log_path is not
// used): a line's text is checked like a line of the file, and a genuine
// record stored under a seq that is not its own counts as changed. Messages
// name a line by the seq it is stored under ("row 7"). Throws as above, and
// whatever `lines` throws.
AuditVerifyReport verify_audit(const AuditVerifyOptions& options, const AuditLineReader& lines);

}  // namespace asyncmq

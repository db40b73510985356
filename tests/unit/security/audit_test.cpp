// The audit trail: records, the forward-secure key, checkpoints, the
// verifier's findings for each kind of tampering, and the auditing backend.
// Time comes from FakeEnv; nothing sleeps.
#include <asyncmq/audit.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>
#include <asyncmq/worker.hpp>

#include "security/audit_crypto.hpp"
#include "security/crypto.hpp"
#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace asyncmq::testing {
namespace {

namespace fs = std::filesystem;
using Kind = AuditProblem::Kind;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

void write_lines(const fs::path& p, const std::vector<std::string>& lines) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  for (const auto& l : lines) out << l << '\n';
}

class AuditTest : public ::testing::Test {
 protected:
  AuditTest() {
    audit_keygen(writer_key(), verify_key());
    options_ = AuditOptions::in_dir(dir_.path());
    options_.epoch_records = 5;
    options_.checkpoint_records = 8;
    options_.checkpoint_ms = 1'000'000'000;
    options_.epoch_ms = 1'000'000'000;
  }
  fs::path writer_key() const { return dir_.file("writer.key"); }
  fs::path verify_key() const { return dir_.file("verify.key"); }
  fs::path log_path() const { return options_.log_path; }
  fs::path cp_path() const { return options_.checkpoint_path; }

  std::shared_ptr<AuditLog> open() { return AuditLog::open(options_, env_); }
  // A new chain under new keys, written with `policy`.
  void start_over(AuditFsync policy) {
    fs::remove(log_path());
    fs::remove(cp_path());
    fs::remove(writer_key());
    fs::remove(verify_key());
    audit_keygen(writer_key(), verify_key());
    options_.fsync = policy;
  }

  // n records, one per batch, "added" for job-i on queue q.
  void write(std::size_t n, std::size_t start = 1) {
    auto log = open();
    for (std::size_t i = start; i < start + n; ++i) {
      log->append(AuditEvent("added", "cli", "job-" + std::to_string(i), "q"));
      env_.advance(10);
    }
    log->close();
  }

  AuditVerifyReport verify(bool allow_unanchored = false, std::optional<std::size_t> from = {}) {
    AuditVerifyOptions o;
    o.log_path = log_path();
    o.checkpoint_path = cp_path();
    o.verify_key_path = verify_key();
    o.allow_unanchored = allow_unanchored;
    o.from_checkpoint = from;
    return verify_audit(o);
  }

  // verify() over a backend's audit table (seq -> line), paged as
  // Backend::read_audit_chain pages it.
  using Table = std::map<std::int64_t, std::string>;
  AuditVerifyReport verify_table(const Table& table, bool allow_unanchored = false) {
    AuditVerifyOptions o;
    o.checkpoint_path = cp_path();
    o.verify_key_path = verify_key();
    o.allow_unanchored = allow_unanchored;
    return verify_audit(o, [&table](std::int64_t after, std::size_t limit) {
      std::vector<AuditChainLine> page;
      for (auto it = table.upper_bound(after); it != table.end() && page.size() < limit; ++it)
        page.push_back({it->first, it->second});
      return page;
    });
  }
  // The log's lines keyed by their seq, as the backend sink stores them.
  Table table_of_log() const {
    Table t;
    for (const auto& l : read_lines(log_path())) t[static_cast<std::int64_t>(audit_from_json_line(l)->seq)] = l;
    return t;
  }

  // The line index (0-based) holding record `seq`.
  static std::size_t index_of(const std::vector<std::string>& lines, std::uint64_t seq) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      auto r = audit_from_json_line(lines[i]);
      if (r && r->seq == seq) return i;
    }
    ADD_FAILURE() << "no record " << seq;
    return 0;
  }

  void expect_problem(const AuditVerifyReport& r, Kind kind, std::uint64_t seq) {
    EXPECT_FALSE(r.intact);
    ASSERT_TRUE(r.problem.has_value());
    EXPECT_EQ(r.problem->kind, kind) << r.problem->message;
    EXPECT_EQ(r.problem->seq, seq) << r.problem->message;
    EXPECT_NE(r.problem->message.find(std::to_string(seq)), std::string::npos) << r.problem->message;
  }

  TempDir dir_;
  FakeEnv env_;
  AuditOptions options_;
};

TEST_F(AuditTest, CanonicalEncodingIsLengthPrefixed) {
  AuditRecord a, b;
  a.event.actor = "ab";
  a.event.action = "c";
  b.event.actor = "a";
  b.event.action = "bc";
  EXPECT_NE(audit_canonical(a), audit_canonical(b));
  a.seq = 7;
  a.mac = std::string(32, '\x01');
  auto back = audit_from_json_line(audit_to_json_line(a));
  ASSERT_TRUE(back);
  EXPECT_EQ(audit_to_json_line(*back), audit_to_json_line(a));
}

TEST_F(AuditTest, IntactChainVerifiesAcrossEpochsAndCheckpoints) {
  write(20);
  auto lines = read_lines(log_path());
  ASSERT_EQ(lines.size(), 20u);
  auto last = audit_from_json_line(lines.back());
  ASSERT_TRUE(last);
  EXPECT_EQ(last->seq, 20u);
  EXPECT_EQ(last->epoch, 3u);  // 5 records per epoch
  auto r = verify();
  EXPECT_TRUE(r.intact) << (r.problem ? r.problem->message : "");
  EXPECT_EQ(r.records, 20u);
  EXPECT_EQ(r.last_seq, 20u);
  EXPECT_EQ(r.anchored_seq, 20u);  // the close checkpoint
  EXPECT_GE(r.checkpoints, 4u);    // before each of 3 evolutions, every 8, on close
}

TEST_F(AuditTest, ReopenedWriterContinuesTheChain) {
  write(7);
  write(6, 8);
  auto r = verify();
  EXPECT_TRUE(r.intact) << (r.problem ? r.problem->message : "");
  EXPECT_EQ(r.records, 13u);
}

TEST_F(AuditTest, TwoWritersOnOneLogInterleave) {
  auto a = open();
  auto b = open();
  for (int i = 0; i < 12; ++i) {
    (i % 3 ? a : b)->append(AuditEvent("claimed", "worker:w" + std::to_string(i % 3), "j", "q"));
  }
  a->close();
  b->close();
  auto r = verify();
  EXPECT_TRUE(r.intact) << (r.problem ? r.problem->message : "");
  EXPECT_EQ(r.records, 12u);
}

// Every fsync policy writes the same verifiable chain: the policy decides
// when the disk has it, never what is written.
TEST_F(AuditTest, EveryFsyncPolicyKeepsTheChainVerifiable) {
  for (AuditFsync policy : {AuditFsync::never, AuditFsync::group, AuditFsync::always}) {
    SCOPED_TRACE(static_cast<int>(policy));
    start_over(policy);
    write(20);
    auto r = verify();
    EXPECT_TRUE(r.intact) << (r.problem ? r.problem->message : "");
    EXPECT_EQ(r.records, 20u);
    EXPECT_EQ(r.anchored_seq, 20u);
    EXPECT_GE(r.checkpoints, 4u);
  }
}

// Group commit: threads append while the background thread syncs and
// writes its checkpoints; the chain stays whole and in order, the
// checkpoints in sequence order (the verifier refuses any out of order),
// and close() anchors the last record.
TEST_F(AuditTest, GroupCommitWithConcurrentAppenders) {
  options_.fsync = AuditFsync::group;
  options_.checkpoint_records = 16;
  options_.epoch_records = 100;
  auto log = open();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < 150; ++i) {
        std::vector<AuditEvent> batch;
        for (int k = 0; k <= i % 3; ++k)
          batch.emplace_back("claimed", "worker:w" + std::to_string(t), "j" + std::to_string(i), "q");
        log->append(batch);
      }
    });
  }
  for (auto& th : threads) th.join();
  log->close();
  EXPECT_EQ(log->failures(), 0u);
  EXPECT_EQ(log->head().seq, 1200u);
  auto r = verify();
  EXPECT_TRUE(r.intact) << (r.problem ? r.problem->message : "");
  EXPECT_EQ(r.records, 1200u);  // 4 threads x 50 x (1 + 2 + 3)
  EXPECT_EQ(r.anchored_seq, 1200u);
  EXPECT_GE(r.checkpoints, 12u);  // before each of 11 evolutions, and on close
  EXPECT_THROW(log->append(AuditEvent("added", "cli", "j", "q")), Error);
}

TEST_F(AuditTest, EveryEditedByteOfARecordIsNamed) {
  write(20);
  const auto original = read_lines(log_path());
  const std::size_t at = index_of(original, 7);
  for (std::size_t pos = 0; pos < original[at].size(); ++pos) {
    auto lines = original;
    char& c = lines[at][pos];
    c = c == 'a' ? 'b' : (c == '1' ? '2' : 'a');
    write_lines(log_path(), lines);
    auto r = verify();
    ASSERT_TRUE(r.problem) << "byte " << pos << " of record 7 changed unnoticed";
    EXPECT_EQ(r.problem->seq, 7u) << "byte " << pos << ": " << r.problem->message;
  }
}

TEST_F(AuditTest, DeletedRecordIsNamed) {
  write(20);
  auto lines = read_lines(log_path());
  lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(index_of(lines, 7)));
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::removed, 7);
}

TEST_F(AuditTest, SwappedRecordsAreNamed) {
  write(20);
  auto lines = read_lines(log_path());
  std::swap(lines[index_of(lines, 7)], lines[index_of(lines, 8)]);
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::reordered, 7);
}

TEST_F(AuditTest, InsertedForgedRecordIsNamed) {
  write(20);
  auto lines = read_lines(log_path());
  std::size_t at = index_of(lines, 7);
  std::string forged = lines[at];
  forged.replace(forged.find("\"cli\""), 5, "\"eve\"");
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(at) + 1, forged);
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::inserted, 8);
}

TEST_F(AuditTest, InsertedCopyOfAGenuineRecordIsNamed) {
  write(20);
  auto lines = read_lines(log_path());
  std::string copy = lines[index_of(lines, 3)];
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(index_of(lines, 7)) + 1, copy);
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::inserted, 8);
}

TEST_F(AuditTest, TruncatedTailIsNamed) {
  write(20);
  auto lines = read_lines(log_path());
  lines.resize(17);
  write_lines(log_path(), lines);
  auto r = verify();
  expect_problem(r, Kind::truncated, 18);
  EXPECT_NE(r.problem->message.find("18..20"), std::string::npos) << r.problem->message;
}

TEST_F(AuditTest, EmptiedLogIsTruncated) {
  write(20);
  write_lines(log_path(), {});
  expect_problem(verify(), Kind::truncated, 1);
}

TEST_F(AuditTest, RebuiltChainUnderAGuessedKeyIsNamed) {
  write(20);
  // The attacker's own keys: a fresh chain with the same events.
  TempDir other;
  audit_keygen(other.file("writer.key"), other.file("verify.key"));
  AuditOptions o = AuditOptions::in_dir(other.path());
  {
    auto log = AuditLog::open(o, env_);
    for (int i = 1; i <= 20; ++i) log->append(AuditEvent("added", "cli", "job-" + std::to_string(i), "q"));
  }
  fs::copy_file(o.log_path, log_path(), fs::copy_options::overwrite_existing);
  expect_problem(verify(), Kind::changed, 1);
  // ... and with its checkpoints too: their signatures fail, record 1 still.
  fs::copy_file(o.checkpoint_path, cp_path(), fs::copy_options::overwrite_existing);
  auto r = verify();
  expect_problem(r, Kind::changed, 1);
  EXPECT_FALSE(r.notes.empty());  // the bad checkpoints are noted too
}

TEST_F(AuditTest, UnanchoredTailIsReportedAndCanBeAccepted) {
  options_.checkpoint_records = 1000;
  options_.epoch_records = 1000;
  auto log = open();
  for (int i = 0; i < 4; ++i) log->append(AuditEvent("added", "cli", "j", "q"));
  // No close: the tail has no checkpoint yet.
  auto r = verify();
  expect_problem(r, Kind::unanchored, 1);
  auto ok = verify(/*allow_unanchored=*/true);
  EXPECT_TRUE(ok.intact);
  EXPECT_EQ(ok.records, 4u);
  log->close();
  EXPECT_TRUE(verify().intact);
}

TEST_F(AuditTest, CheckpointsFollowTime) {
  options_.checkpoint_records = 1000;
  options_.checkpoint_ms = 60'000;
  auto log = open();
  log->append(AuditEvent("added", "cli", "j", "q"));
  EXPECT_EQ(read_lines(cp_path()).size(), 0u);
  env_.advance(60'000);
  log->tick();
  EXPECT_EQ(read_lines(cp_path()).size(), 1u);
  log->close();
  EXPECT_EQ(read_lines(cp_path()).size(), 1u);  // nothing new to anchor
}

TEST_F(AuditTest, EpochFollowsTime) {
  options_.epoch_records = 1000;
  options_.epoch_ms = 3'600'000;
  auto log = open();
  log->append(AuditEvent("added", "cli", "j", "q"));
  env_.advance(3'600'000);
  log->append(AuditEvent("added", "cli", "j", "q"));
  EXPECT_EQ(log->head().epoch, 1u);
  log->close();
  EXPECT_TRUE(verify().intact);
}

TEST_F(AuditTest, VerifyFromACheckpoint) {
  write(20);
  auto cps = read_lines(cp_path());
  ASSERT_GE(cps.size(), 2u);
  auto lines = read_lines(log_path());
  // Archive (drop) the records up to checkpoint #2; verification from it
  // still succeeds, while a full verification sees them missing.
  auto cp2 = security::parse_audit_checkpoint_line(cps[1]);
  ASSERT_TRUE(cp2);
  lines.erase(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(cp2->seq));
  write_lines(log_path(), lines);
  EXPECT_FALSE(verify().intact);
  auto r = verify(false, 2);
  EXPECT_TRUE(r.intact) << (r.problem ? r.problem->message : "");
  EXPECT_EQ(r.records, 20u - cp2->seq);
}

TEST_F(AuditTest, TamperedCheckpointSignatureIsRefused) {
  write(20);
  auto cps = read_lines(cp_path());
  std::string& last = cps.back();
  std::size_t sig = last.find("\"sig\":\"") + 8;
  last[sig] = last[sig] == 'A' ? 'B' : 'A';
  write_lines(cp_path(), cps);
  auto r = verify();
  EXPECT_FALSE(r.intact);
  ASSERT_TRUE(r.problem);
  // Record 20 is anchored by nothing now.
  EXPECT_TRUE(r.problem->kind == Kind::bad_checkpoint || r.problem->kind == Kind::unanchored)
      << r.problem->message;
}

TEST_F(AuditTest, Ed25519SignVerifyRoundTripAndRefusals) {
  auto pair = security::ed25519_generate();
  std::string msg = "checkpoint";
  std::string sig = security::ed25519_sign(pair.private_key.reveal(), msg);
  EXPECT_EQ(sig.size(), 64u);
  EXPECT_TRUE(security::ed25519_verify(pair.public_key, msg, sig));
  EXPECT_EQ(security::ed25519_public_from_private(pair.private_key.reveal()), pair.public_key);
  std::string bad = sig;
  bad[10] ^= 1;
  EXPECT_FALSE(security::ed25519_verify(pair.public_key, msg, bad));
  EXPECT_FALSE(security::ed25519_verify(pair.public_key, "checkpoinT", sig));
  EXPECT_FALSE(security::ed25519_verify(pair.public_key, msg, sig.substr(1)));
  auto other = security::ed25519_generate();
  EXPECT_FALSE(security::ed25519_verify(other.public_key, msg, sig));
}

TEST_F(AuditTest, KeyFilesArePrivateAndNotOverwritten) {
  struct stat st {};
  ASSERT_EQ(::stat(writer_key().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(verify_key().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THROW(audit_keygen(writer_key(), dir_.file("v2")), Conflict);
  ::chmod(writer_key().c_str(), 0644);
  try {
    open();
    FAIL() << "opened a world-readable writer key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), errc::permission_denied);
  }
  EXPECT_THROW(AuditLog::open(AuditOptions::in_dir(dir_.file("nowhere")), env_), NotFound);
}

// The writer's state after evolving holds only the current key: no earlier
// epoch's key is in the file, and the current key re-MACs no earlier record
// (neither as it is, nor relabelled with the current epoch).
TEST_F(AuditTest, EvolvedWriterStateCannotRewriteEarlierEpochs) {
  write(12);  // epochs 0,0,0,0,0,1,...,2
  std::string vtext = slurp(verify_key());
  auto vk = security::parse_verify_key(vtext, verify_key());
  std::string wtext = slurp(writer_key());
  auto wk = security::parse_writer_key(wtext, writer_key());
  ASSERT_EQ(wk.epoch, 2u);
  auto k0 = security::audit_key_for_epoch(vk.seed.reveal(), 0);
  auto k1 = security::audit_key_for_epoch(vk.seed.reveal(), 1);
  auto k2 = security::audit_key_for_epoch(vk.seed.reveal(), 2);
  EXPECT_TRUE(security::constant_time_equal(wk.key.reveal(), k2.reveal()));
  for (const Secret* old : {&k0, &k1, &vk.seed}) {
    EXPECT_EQ(wtext.find(security::base64_encode(old->reveal())), std::string::npos);
    EXPECT_EQ(wtext.find(old->reveal()), std::string::npos);
  }

  auto lines = read_lines(log_path());
  auto rec2 = audit_from_json_line(lines[1]);
  ASSERT_TRUE(rec2);
  ASSERT_EQ(rec2->epoch, 0u);
  EXPECT_FALSE(security::constant_time_equal(
      security::hmac_sha256(wk.key.reveal(), audit_canonical(*rec2)), rec2->mac));

  // The thief's best try: change record 2 and re-MAC it with the stolen key,
  // as epoch 0 (wrong key) ...
  AuditRecord forged = *rec2;
  forged.event.actor = "eve";
  forged.mac = security::hmac_sha256(wk.key.reveal(), audit_canonical(forged));
  lines[1] = audit_to_json_line(forged);
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::changed, 2);
  // ... or relabelled as epoch 2, rewriting every later record too so that
  // the chain links: the epoch-0 checkpoint before the evolution refuses it.
  lines = read_lines(log_path());
  std::string prev = audit_from_json_line(lines[0])->prev_mac;
  prev = audit_from_json_line(lines[0])->mac;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    auto r = *audit_from_json_line(lines[i]);
    if (i == 1) r.event.actor = "eve";
    r.epoch = 2;
    r.prev_mac = prev;
    r.mac = security::hmac_sha256(wk.key.reveal(), audit_canonical(r));
    prev = r.mac;
    lines[i] = audit_to_json_line(r);
  }
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::changed, 2);
}

TEST_F(AuditTest, HookSeesEachRecordLine) {
  std::vector<std::string> seen;
  options_.hook = [&](std::string_view line) { seen.emplace_back(line); };
  write(3);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen, read_lines(log_path()));
}

TEST_F(AuditTest, SubjectsOtherThanABlindIndexAreNeverWritten) {
  auto log = open();
  std::string index(64, 'a');
  log->append(AuditEvent("added", "cli", "j1", "q", index));
  log->append(AuditEvent("added", "cli", "j2", "q", "alice@example.com"));
  log->append(AuditEvent("added", "cli\n{\"seq\":1}", "j3", "q"));
  log->close();
  std::string text = slurp(log_path());
  EXPECT_NE(text.find(index), std::string::npos);
  EXPECT_EQ(text.find("alice"), std::string::npos);
  EXPECT_NE(text.find("unindexed"), std::string::npos);
  EXPECT_EQ(read_lines(log_path()).size(), 3u);  // the newline did not split a record
  EXPECT_TRUE(verify().intact);
}

TEST_F(AuditTest, PartialLastLineFromACrashIsCut) {
  write(3);
  {
    std::ofstream out(log_path(), std::ios::binary | std::ios::app);
    out << "{\"seq\":4,\"ti";
  }
  write(2, 4);
  auto r = verify();
  EXPECT_TRUE(r.intact) << (r.problem ? r.problem->message : "");
  EXPECT_EQ(r.records, 5u);
}

// ---- through a Client: the auditing backend ----

TEST_F(AuditTest, AuditedClientRecordsJobLifeWithoutPayloadOrSubject) {
  options_.epoch_records = 1000;
  auto log = open();
  ClientOptions co;
  co.audit = log;
  co.actor = "tester";
  auto client = Client::open("memory://", env_, co);
  Queue q(client, "mail");
  const std::string marker = "MARKER-5f1c-payload-secret";
  JobOptions jo;
  jo.subject = "bob@example.com";
  JobId done_id = sync_wait(q.add("ok", boost::json::object{{"m", marker}}, jo));
  JobOptions retry_opts;
  retry_opts.attempts = 2;
  retry_opts.backoff.delay_ms = 10;
  retry_opts.backoff.jitter = 0;
  JobId failing = sync_wait(q.add("boom", boost::json::object{{"m", marker}}, retry_opts));
  sync_wait(q.pause());
  sync_wait(q.resume());

  auto tasks = std::make_shared<TaskRegistry>();
  tasks->add("ok", [](TaskContext&) -> boost::json::value { return "fine"; },
             TaskOptions{.blocking = false});
  tasks->add("boom", [marker](TaskContext&) -> boost::json::value {
    throw std::runtime_error("failed with " + marker);
  }, TaskOptions{.blocking = false});
  WorkerOptions wo;
  wo.queues = {"mail"};
  wo.id = "w1";
  auto worker = std::make_shared<Worker>(client, tasks, wo);
  boost::asio::io_context io;
  bool stopped = false;
  boost::asio::co_spawn(io, worker->run(), [&](std::exception_ptr) { stopped = true; });
  ASSERT_TRUE(run_until(io, env_, [&] {
    auto s = worker->stats();
    return s.completed + s.dead >= 2;
  }));
  worker->stop();
  ASSERT_TRUE(run_until(io, env_, [&] { return stopped; }));
  sync_wait(q.remove(done_id));
  sync_wait(q.retry(failing));
  log->close();

  std::string text = slurp(log_path());
  EXPECT_EQ(text.find("MARKER"), std::string::npos);
  EXPECT_EQ(text.find("bob"), std::string::npos);
  EXPECT_EQ(text.find("fine"), std::string::npos);
  EXPECT_EQ(text.find("failed with"), std::string::npos);

  std::vector<std::string> actions;
  for (const auto& line : read_lines(log_path())) {
    auto r = audit_from_json_line(line);
    ASSERT_TRUE(r);
    actions.push_back(r->event.action + ":" + r->event.actor +
                      (r->event.job == done_id.str() ? ":done" : r->event.job == failing.str() ? ":failing" : ":-"));
    if (!r->event.job.empty()) {
      EXPECT_EQ(r->event.queue, "mail");
    }
  }
  std::vector<std::string> want = {
      "added:tester:done",        "added:tester:failing",     "paused:tester:-",
      "resumed:tester:-",         "claimed:worker:w1:done",   "claimed:worker:w1:failing",
      "completed:worker:w1:done", "retried:worker:w1:failing", "claimed:worker:w1:failing",
      "dead:worker:w1:failing",   "removed:tester:done",      "retried:tester:failing"};
  // The worker may record the two first outcomes in either order.
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(actions), sorted(want)) << ::testing::PrintToString(actions);
  EXPECT_TRUE(verify().intact);
}

}  // namespace
}  // namespace asyncmq::testing

namespace asyncmq::testing {
namespace {

// A policy denial through an audited client is itself an audit record
// (actor the principal, action "denied"), next to the allowed calls.
TEST_F(AuditTest, PolicyDenialWritesAnAuditRecord) {
  auto policy = Policy::parse(R"(
[[grant]]
principal = "apikey:producer-1"
roles = ["producer"]
queues = ["mail"]
)", "test-policy", env_);
  auto principal = std::make_shared<Principal>();
  principal->kind = "apikey";
  principal->name = "producer-1";
  auto log = open();
  ClientOptions co;
  co.audit = log;
  co.principal = principal;
  co.policy = policy;
  auto client = Client::open("memory://", env_, co);
  // A second client with the same pair must not double the denial records.
  auto client2 = Client::open("memory://", env_, co);
  std::uint64_t before = Policy::denials();
  Queue mail(client, "mail");
  Queue other(client, "other");
  sync_wait(mail.add("t", boost::json::object{{"k", 1}}));
  EXPECT_THROW(sync_wait(other.add("t", boost::json::object{{"k", 2}})), PermissionDenied);
  EXPECT_THROW(sync_wait(mail.pause()), PermissionDenied);
  EXPECT_EQ(Policy::denials(), before + 2);
  log->close();

  std::vector<std::string> got;
  for (const auto& line : read_lines(log_path())) {
    auto r = audit_from_json_line(line);
    ASSERT_TRUE(r);
    got.push_back(r->event.action + " " + r->event.actor + " " + r->event.queue + " " + r->event.detail);
  }
  std::vector<std::string> want = {"added apikey:producer-1 mail ",
                                   "denied apikey:producer-1 other action=add",
                                   "denied apikey:producer-1 mail action=pause"};
  EXPECT_EQ(got, want);
  EXPECT_TRUE(verify().intact);
}

}  // namespace
}  // namespace asyncmq::testing

namespace asyncmq::testing {
namespace {

// ---- relaying a backend's outbox (AuditLog::append_outbox) ----

AuditOutboxRow outbox_row(std::int64_t seq, std::size_t events) {
  AuditOutboxRow r;
  r.seq = seq;
  for (std::size_t i = 0; i < events; ++i)
    r.events.emplace_back("added", "tester", "job-" + std::to_string(seq) + "-" + std::to_string(i), "q");
  return r;
}

std::vector<std::string> jobs_in(const fs::path& log) {
  std::vector<std::string> out;
  for (const auto& line : read_lines(log)) {
    auto r = audit_from_json_line(line);
    EXPECT_TRUE(r) << line;
    if (r) out.push_back(r->event.job);
  }
  return out;
}

TEST_F(AuditTest, RelayedRecordsNameTheirSourceUnderTheMac) {
  auto log = open();
  std::vector<AuditOutboxRow> rows{outbox_row(7, 2)};
  EXPECT_EQ(log->append_outbox("s1", rows), 7);
  log->close();
  auto lines = read_lines(log_path());
  ASSERT_EQ(lines.size(), 2u);
  auto r = audit_from_json_line(lines[1]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->source, "s1:7:1");
  EXPECT_EQ(audit_to_json_line(*r), lines[1]);
  AuditRecord plain = *r;
  plain.source.clear();
  EXPECT_NE(audit_canonical(plain), audit_canonical(*r));
  EXPECT_TRUE(verify().intact);
  // Pointing a record at another outbox row is a change like any other.
  auto at = lines[1].find("\"src\":\"s1:7:1\"");
  ASSERT_NE(at, std::string::npos);
  lines[1].replace(at, 14, "\"src\":\"s1:8:1\"");
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::changed, 2);
}

TEST_F(AuditTest, RelayingSkipsWhatTheChainHoldsAcrossReopens) {
  std::vector<AuditOutboxRow> rows{outbox_row(1, 2), outbox_row(3, 1)};
  {
    auto log = open();
    EXPECT_EQ(log->append_outbox("s1", rows), 3);
    EXPECT_EQ(log->append_outbox("s1", rows), 3);  // nothing new
    log->append(AuditEvent("denied", "x", "", "q"));  // a direct append between
    rows.push_back(outbox_row(4, 1));
    EXPECT_EQ(log->append_outbox("s1", rows), 4);
  }
  // A new writer (a restarted process) finds the cursor in the log itself.
  rows.push_back(outbox_row(9, 1));
  {
    auto log = open();
    EXPECT_EQ(log->append_outbox("s1", rows), 9);
    // Another store's rows are its own.
    EXPECT_EQ(log->append_outbox("s2", rows), 9);
  }
  std::vector<std::string> want = {"job-1-0", "job-1-1", "job-3-0", "", "job-4-0", "job-9-0",
                                   "job-1-0", "job-1-1", "job-3-0", "job-4-0", "job-9-0"};
  EXPECT_EQ(jobs_in(log_path()), want);
  EXPECT_TRUE(verify().intact);
}

// The relay's three steps (prepare_outbox, render without the lock,
// commit_outbox) write what append_outbox would: the same records, each
// once, in order, and the same trim point.
TEST_F(AuditTest, APreparedRenderedBatchCommitsWhatAppendOutboxWould) {
  std::vector<AuditOutboxRow> rows{outbox_row(1, 2), outbox_row(3, 1)};
  std::vector<std::string> lines_by_append;
  {
    auto log = open();
    EXPECT_EQ(log->append_outbox("s1", rows), 3);
    log->close();
    lines_by_append = read_lines(log_path());
  }
  start_over(AuditFsync::group);
  auto log = open();
  auto batch = log->prepare_outbox("s1", rows);
  std::thread renderer([&] { AuditLog::render(*batch); });  // another thread, no lock
  renderer.join();
  EXPECT_EQ(log->commit_outbox(*batch), 3);
  auto again = log->prepare_outbox("s1", rows);  // everything is in the chain
  AuditLog::render(*again);
  EXPECT_EQ(log->commit_outbox(*again), 3);
  log->close();
  auto lines = read_lines(log_path());
  ASSERT_EQ(lines.size(), lines_by_append.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto a = audit_from_json_line(lines[i]);
    auto b = audit_from_json_line(lines_by_append[i]);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->seq, b->seq);
    EXPECT_EQ(a->event.job, b->event.job);
    EXPECT_EQ(a->source, b->source);
  }
  EXPECT_TRUE(verify().intact);
}

// Whatever reached the chain between prepare_outbox and commit_outbox (a
// direct append, the same rows relayed by a caller that gave up waiting
// for the render), the rendered lines are dropped and the rows relayed as
// append_outbox does: every event once, the chain intact.
TEST_F(AuditTest, ABatchTheChainMovedPastIsRelayedAgainNotWrittenTwice) {
  std::vector<AuditOutboxRow> rows{outbox_row(1, 2), outbox_row(2, 2)};
  auto log = open();
  auto batch = log->prepare_outbox("s1", rows);
  AuditLog::render(*batch);
  log->append(AuditEvent("denied", "x", "", "q"));
  EXPECT_EQ(log->commit_outbox(*batch), 2);

  rows.push_back(outbox_row(3, 1));
  auto abandoned = log->prepare_outbox("s1", rows);
  EXPECT_EQ(log->append_outbox("s1", AuditLog::rows_of(*abandoned)), 3);  // gave up on it
  AuditLog::render(*abandoned);                                         // finishes late
  EXPECT_EQ(log->commit_outbox(*abandoned), 3);

  rows.push_back(outbox_row(4, 1));
  auto unrendered = log->prepare_outbox("s1", rows);
  EXPECT_EQ(log->commit_outbox(*unrendered), 4);  // never rendered: relayed under the lock
  log->close();
  std::vector<std::string> want = {"", "job-1-0", "job-1-1", "job-2-0", "job-2-1", "job-3-0",
                                   "job-4-0"};
  EXPECT_EQ(jobs_in(log_path()), want);
  EXPECT_TRUE(verify().intact);
}

// A batch that would cross into the next key epoch is not rendered apart
// (the key evolves under the lock, after a checkpoint): commit_outbox
// relays it, and the chain verifies across the epochs.
TEST_F(AuditTest, ABatchAcrossAnEpochIsRelayedUnderTheLock) {
  options_.epoch_records = 3;
  auto log = open();
  std::vector<AuditOutboxRow> rows{outbox_row(1, 2)};
  auto first = log->prepare_outbox("s1", rows);
  AuditLog::render(*first);
  EXPECT_EQ(log->commit_outbox(*first), 1);
  rows.push_back(outbox_row(2, 4));
  auto across = log->prepare_outbox("s1", rows);
  AuditLog::render(*across);
  EXPECT_EQ(log->commit_outbox(*across), 2);
  log->close();
  EXPECT_EQ(jobs_in(log_path()).size(), 6u);
  auto v = verify();
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
  EXPECT_GE(log->head().epoch, 1u);
}

// A crash inside the append's write can leave some of a row's records
// complete: the relay resumes after the last complete one, and says the row
// is not done until it is.
TEST_F(AuditTest, RelayResumesInsideARowAfterAShortWrite) {
  std::vector<AuditOutboxRow> rows{outbox_row(5, 3)};
  {
    auto log = open();
    log->append_outbox("s1", rows);
  }
  auto lines = read_lines(log_path());
  ASSERT_EQ(lines.size(), 3u);
  lines.pop_back();
  write_lines(log_path(), lines);  // as if the write ended after two lines ...
  std::ofstream(cp_path(), std::ios::trunc).close();  // ... before any checkpoint
  {
    auto log = open();
    EXPECT_EQ(log->append_outbox("s1", rows), 5);
  }
  EXPECT_EQ(jobs_in(log_path()), (std::vector<std::string>{"job-5-0", "job-5-1", "job-5-2"}));
  EXPECT_TRUE(verify().intact);
}

// Two writers on one log relaying one store (two processes): each sees what
// the other relayed, also after it started tracking the store.
TEST_F(AuditTest, RelayersOnOneLogSeeEachOthersRecords) {
  auto a = open();
  auto b = open();
  std::vector<AuditOutboxRow> rows{outbox_row(1, 1)};
  EXPECT_EQ(b->append_outbox("s1", rows), 1);  // b tracks s1 from here
  rows.push_back(outbox_row(2, 1));
  EXPECT_EQ(a->append_outbox("s1", rows), 2);  // a finds row 1 by reading back
  rows.push_back(outbox_row(3, 2));
  EXPECT_EQ(b->append_outbox("s1", rows), 3);  // b reads what a appended
  EXPECT_EQ(a->append_outbox("s1", rows), 3);
  a->close();
  b->close();
  EXPECT_EQ(jobs_in(log_path()), (std::vector<std::string>{"job-1-0", "job-2-0", "job-3-0", "job-3-1"}));
  EXPECT_TRUE(verify().intact);
}

// The relay trims an outbox only through rows whose records are on disk
// (trimmable_through), so a machine crash loses no record of a kept
// transition: under group that waits for the background flush, which
// flush() forces here.
TEST_F(AuditTest, OutboxRowsBecomeTrimmableOnceTheirRecordsAreDurable) {
  for (AuditFsync policy : {AuditFsync::never, AuditFsync::group, AuditFsync::always}) {
    SCOPED_TRACE(static_cast<int>(policy));
    start_over(policy);
    auto log = open();
    EXPECT_EQ(log->trimmable_through("s1"), 0);
    std::vector<AuditOutboxRow> rows{outbox_row(1, 2), outbox_row(2, 1)};
    EXPECT_EQ(log->append_outbox("s1", rows), 2);
    if (policy == AuditFsync::group)
      EXPECT_LE(log->trimmable_through("s1"), 2);  // 0 until the syncer's flush
    else
      EXPECT_EQ(log->trimmable_through("s1"), 2);
    log->flush();
    EXPECT_EQ(log->trimmable_through("s1"), 2);
    EXPECT_EQ(log->trimmable_through("s2"), 0);  // another store's rows are its own
    rows.push_back(outbox_row(5, 1));
    EXPECT_EQ(log->append_outbox("s1", rows), 5);
    log->flush();
    EXPECT_EQ(log->trimmable_through("s1"), 5);
    log->close();
    EXPECT_EQ(log->failures(), 0u);
  }
}

// A relayer that finds rows already relayed by another writer of the log
// (another process) may trim them once its own flush covers them.
TEST_F(AuditTest, RowsRelayedByAnotherWriterBecomeTrimmableAfterThisOnesFlush) {
  options_.fsync = AuditFsync::group;
  auto a = open();
  auto b = open();
  std::vector<AuditOutboxRow> rows{outbox_row(1, 1), outbox_row(2, 1)};
  EXPECT_EQ(b->append_outbox("s1", rows), 2);
  EXPECT_EQ(a->append_outbox("s1", rows), 2);  // nothing new for a: b's records
  a->flush();
  EXPECT_EQ(a->trimmable_through("s1"), 2);
  a->close();
  b->close();
  EXPECT_EQ(jobs_in(log_path()), (std::vector<std::string>{"job-1-0", "job-2-0"}));
}

TEST_F(AuditTest, RelayedRecordsAreTamperEvidentLikeAnyOther) {
  std::vector<AuditOutboxRow> rows;
  for (int i = 1; i <= 6; ++i) rows.push_back(outbox_row(i, 1));
  {
    auto log = open();
    log->append_outbox("s1", rows);
  }
  const auto good = read_lines(log_path());
  auto lines = good;
  lines.erase(lines.begin() + 2);
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::removed, 3);
  lines = good;
  std::swap(lines[1], lines[2]);
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::reordered, 2);
  lines = good;
  lines.insert(lines.begin() + 3, good[1]);  // a copy of record 2 after record 3
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::inserted, 4);
  lines = good;
  lines.resize(4);
  write_lines(log_path(), lines);
  expect_problem(verify(), Kind::truncated, 5);
}

// ---- the backend sink: reading lines back, verifying a table ----

TEST_F(AuditTest, ReadLinesFindsAnySeqAndPages) {
  options_.epoch_records = 7;
  write(300);
  const auto file = read_lines(log_path());
  auto log = open();
  for (std::uint64_t after : {0u, 1u, 2u, 99u, 150u, 298u, 299u}) {
    auto got = log->read_lines(after, 10);
    const std::size_t want = std::min<std::size_t>(10, 300 - after);
    ASSERT_EQ(got.size(), want) << "after " << after;
    for (std::size_t i = 0; i < want; ++i) {
      EXPECT_EQ(got[i].seq, static_cast<std::int64_t>(after + 1 + i));
      EXPECT_EQ(got[i].text, file[after + i]) << "after " << after;
    }
  }
  EXPECT_TRUE(log->read_lines(300, 10).empty());
  EXPECT_TRUE(log->read_lines(1000, 10).empty());
  EXPECT_EQ(log->read_lines(0, 10000).size(), 300u);
  EXPECT_THROW(log->read_lines(0, 0), InvalidArgument);
  EXPECT_THROW(log->read_lines(0, 10001), InvalidArgument);
  log->close();
  EXPECT_THROW(log->read_lines(0, 10), Error);
}

TEST_F(AuditTest, ReadLinesSkipsWhatIsNotARecordAndSeesOtherWriters) {
  write(5);
  auto lines = read_lines(log_path());
  lines.insert(lines.begin() + 2, "not a record");
  write_lines(log_path(), lines);
  auto reader = open();
  auto got = reader->read_lines(0, 100);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[2].seq, 3);
  write(2, 6);  // another writer appends
  got = reader->read_lines(5, 100);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].seq, 7);
}

TEST_F(AuditTest, IntactTableVerifiesLikeTheFile) {
  write(20);
  auto file = verify();
  auto table = verify_table(table_of_log());
  EXPECT_TRUE(table.intact) << (table.problem ? table.problem->message : "");
  EXPECT_EQ(table.records, file.records);
  EXPECT_EQ(table.checkpoints, file.checkpoints);
  EXPECT_EQ(table.anchored_seq, 20u);
}

TEST_F(AuditTest, EveryEditedByteOfATableRowIsNamed) {
  write(20);
  const Table original = table_of_log();
  for (std::size_t pos = 0; pos < original.at(7).size(); ++pos) {
    Table t = original;
    char& c = t[7][pos];
    c = c == 'a' ? 'b' : (c == '1' ? '2' : 'a');
    auto r = verify_table(t);
    ASSERT_TRUE(r.problem) << "byte " << pos << " of row 7 changed unnoticed";
    EXPECT_EQ(r.problem->seq, 7u) << "byte " << pos << ": " << r.problem->message;
    EXPECT_NE(r.problem->message.find("row 7"), std::string::npos) << r.problem->message;
  }
}

TEST_F(AuditTest, TableRowsDeletedSwappedInsertedOrCutAreNamed) {
  write(20);
  const Table good = table_of_log();
  Table t = good;
  t.erase(7);
  expect_problem(verify_table(t), Kind::removed, 7);
  t = good;
  std::swap(t[7], t[8]);
  expect_problem(verify_table(t), Kind::reordered, 7);
  // A forged record between 7 and 8: the rows after it moved up by one.
  t.clear();
  for (const auto& [seq, line] : good) t[seq > 7 ? seq + 1 : seq] = line;
  t[8] = good.at(7);
  t[8].replace(t[8].find("\"cli\""), 5, "\"eve\"");
  expect_problem(verify_table(t), Kind::inserted, 8);
  t = good;
  for (std::int64_t s = 18; s <= 20; ++s) t.erase(s);
  expect_problem(verify_table(t), Kind::truncated, 18);
  // A row planted under a seq the writer never uses is read too.
  t = good;
  t[-1] = good.at(3);
  EXPECT_FALSE(verify_table(t).intact);
}

TEST_F(AuditTest, GenuineLineStoredUnderAnotherSeqIsAChange) {
  write(20);
  Table t = table_of_log();
  // The last row renumbered: every line is genuine and in order, but a
  // re-sent record 20 would now be stored a second time.
  t[25] = t.at(20);
  t.erase(20);
  auto r = verify_table(t);
  expect_problem(r, Kind::changed, 20);
  EXPECT_NE(r.problem->message.find("stored under seq 25"), std::string::npos) << r.problem->message;
}

}  // namespace
}  // namespace asyncmq::testing

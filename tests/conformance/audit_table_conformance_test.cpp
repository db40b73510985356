// The audit table (backend.hpp "Audit table"), on every backend: appends
// are all-or-none and idempotent by seq, a conflicting re-append is refused
// with IntegrityError and stores nothing, reads page by seq; and the
// auditing decorator with the backend sink on (AuditOptions::backend_sink)
// keeps a copy of the whole chain there that verifies like the file,
// making up after a crash whatever the table missed.
#include <asyncmq/audit.hpp>

#include "backend_fixture.hpp"
#include "security/audit_backend.hpp"

#include <filesystem>
#include <fstream>
#include <limits>
#include <ostream>

namespace asyncmq {
// For gtest's messages.
inline void PrintTo(const AuditChainLine& l, std::ostream* os) { *os << l.seq << ": " << l.text; }
}  // namespace asyncmq

namespace asyncmq::testing {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kFromStart = std::numeric_limits<std::int64_t>::min();

AuditChainLine line(std::int64_t seq, std::string text) {
  AuditChainLine l;
  l.seq = seq;
  l.text = std::move(text);
  return l;
}

class AuditTable : public BackendConformance {
 protected:
  std::vector<AuditChainLine> table(Backend& b) {
    return sync_wait(b.read_audit_chain(kFromStart, 10000));
  }

  // As in audit_outbox_conformance_test.cpp: another object on the same
  // store (a new connection for SQLite; the one object for memory).
  std::shared_ptr<Backend> open_store() {
    if (GetParam().name != "memory") return open_backend(GetParam().uri(dir_.path()), env_);
    if (!memory_) memory_ = open_backend("memory://", env_);
    return memory_;
  }
  std::shared_ptr<Backend> memory_;

  fs::path audit_dir() const { return fs::path(dir_.path()) / "audit"; }
  std::shared_ptr<AuditLog> open_log(bool backend_sink) {
    if (!fs::exists(audit_dir())) {
      fs::create_directory(audit_dir());
      audit_keygen(audit_dir() / "writer.key", audit_dir() / "verify.key");
    }
    AuditOptions o = AuditOptions::in_dir(audit_dir());
    o.backend_sink = backend_sink;
    return AuditLog::open(std::move(o), env_);
  }
  // The log file's lines keyed by their records' seqs.
  std::vector<AuditChainLine> file_lines() {
    std::vector<AuditChainLine> out;
    std::ifstream in(audit_dir() / "audit.log");
    std::string text;
    while (std::getline(in, text)) {
      auto r = audit_from_json_line(text);
      EXPECT_TRUE(r) << text;
      if (r) out.push_back(line(static_cast<std::int64_t>(r->seq), text));
    }
    return out;
  }
  AuditVerifyReport verify_table(std::shared_ptr<Backend> b) {
    AuditVerifyOptions o;
    o.checkpoint_path = audit_dir() / "checkpoints.log";
    o.verify_key_path = audit_dir() / "verify.key";
    return verify_audit(o, [b](std::int64_t after, std::size_t limit) {
      return sync_wait(b->read_audit_chain(after, limit));
    });
  }
};

TEST_P(AuditTable, AppendIsIdempotentBySeq) {
  auto store = open_store();  // a second open_store() is another connection
  EXPECT_TRUE(table(*store).empty());
  EXPECT_EQ(sync_wait(store->audit_chain_head()), 0);
  sync_wait(store->append_audit_chain({line(1, "one"), line(2, "two")}));
  // A re-send of what is there, with more after it: only the new line lands.
  sync_wait(store->append_audit_chain({line(1, "one"), line(2, "two"), line(3, "three")}));
  sync_wait(store->append_audit_chain({line(2, "two")}));
  sync_wait(store->append_audit_chain({}));
  std::vector<AuditChainLine> want{line(1, "one"), line(2, "two"), line(3, "three")};
  EXPECT_EQ(table(*store), want);
  EXPECT_EQ(table(*open_store()), want);  // durable, seen by another connection
  EXPECT_EQ(sync_wait(store->audit_chain_head()), 3);
}

TEST_P(AuditTable, ConflictingReappendIsRefusedAndStoresNothing) {
  auto store = open_store();  // a second open_store() is another connection
  sync_wait(store->append_audit_chain({line(1, "one"), line(2, "two")}));
  // Line 3 is new, line 2 differs: the whole batch is refused.
  try {
    sync_wait(store->append_audit_chain({line(3, "three"), line(2, "TWO")}));
    FAIL() << "a changed line was accepted";
  } catch (const IntegrityError& e) {
    EXPECT_NE(std::string(e.what()).find("seq 2"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("TWO"), std::string::npos) << e.what();
  }
  // Two texts for one seq within a batch.
  EXPECT_THROW(sync_wait(store->append_audit_chain({line(4, "four"), line(4, "FOUR")})),
               IntegrityError);
  std::vector<AuditChainLine> want{line(1, "one"), line(2, "two")};
  EXPECT_EQ(table(*store), want);
  EXPECT_EQ(table(*open_store()), want);
}

TEST_P(AuditTable, MalformedLinesAreRefused) {
  EXPECT_THROW(sync_wait(backend().append_audit_chain({line(0, "zero")})), InvalidArgument);
  EXPECT_THROW(sync_wait(backend().append_audit_chain({line(-3, "minus")})), InvalidArgument);
  EXPECT_THROW(sync_wait(backend().append_audit_chain({line(1, "")})), InvalidArgument);
  EXPECT_THROW(sync_wait(backend().append_audit_chain({line(2, "ok"), line(3, "a\nb")})),
               InvalidArgument);
  EXPECT_TRUE(table(backend()).empty());
}

TEST_P(AuditTable, ReadsPageBySeq) {
  std::vector<AuditChainLine> all;
  for (std::int64_t s = 1; s <= 25; ++s) all.push_back(line(s, "line " + std::to_string(s)));
  all.push_back(line(40, "after a gap"));
  // In two batches, the second out of order: the table orders by seq.
  sync_wait(backend().append_audit_chain(std::vector<AuditChainLine>(all.begin() + 10, all.end())));
  sync_wait(backend().append_audit_chain(std::vector<AuditChainLine>(all.begin(), all.begin() + 10)));
  auto page = [&](std::int64_t after, std::size_t limit) {
    return sync_wait(backend().read_audit_chain(after, limit));
  };
  EXPECT_EQ(page(0, 10), std::vector<AuditChainLine>(all.begin(), all.begin() + 10));
  EXPECT_EQ(page(10, 10), std::vector<AuditChainLine>(all.begin() + 10, all.begin() + 20));
  EXPECT_EQ(page(20, 10), std::vector<AuditChainLine>(all.begin() + 20, all.end()));
  EXPECT_EQ(page(25, 10), std::vector<AuditChainLine>{all.back()});
  EXPECT_TRUE(page(40, 10).empty());
  EXPECT_EQ(page(kFromStart, 1), std::vector<AuditChainLine>{all.front()});
  EXPECT_EQ(sync_wait(backend().audit_chain_head()), 40);
  EXPECT_THROW(page(0, 0), InvalidArgument);
  EXPECT_THROW(page(0, 10001), InvalidArgument);
}

// A worker's life through the decorator with the sink on: the table holds
// the file's lines exactly, direct appends (a denial) included, and
// verifies against the checkpoints.
TEST_P(AuditTable, SinkKeepsTheWholeChainInTheStore) {
  auto store = open_store();
  auto log = open_log(/*backend_sink=*/true);
  auto audited = security::make_auditing_backend(store, log, "tester");
  Job a = make_job("q", "t"), b = make_job("q", "t");
  sync_wait(audited->enqueue({a, b}));
  ClaimRequest req{"q", "w1", 2, 30000, env().now_ms()};
  auto got = sync_wait(audited->claim(req));
  ASSERT_EQ(got.size(), 2u);
  sync_wait(audited->finish({completed(got[0], "r")}));
  log->append(AuditEvent("denied", "apikey:eve", "", "q", "", "action=claim"));
  sync_wait(audited->finish({completed(got[1], "r")}));
  // A worker's finish does not wait for the relay; closing the decorator
  // relays what is left (audit_backend.hpp).
  audited.reset();
  log->close();

  auto lines = file_lines();
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(table(*store), lines);
  auto v = verify_table(store);
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
  EXPECT_EQ(v.records, 7u);
  EXPECT_EQ(v.anchored_seq, 7u);
}

TEST_P(AuditTable, SinkOffLeavesTheTableAlone) {
  auto store = open_store();
  auto log = open_log(/*backend_sink=*/false);
  auto audited = security::make_auditing_backend(store, log, "tester");
  sync_wait(audited->enqueue({make_job("q", "t")}));
  log->close();
  EXPECT_EQ(file_lines().size(), 1u);
  EXPECT_TRUE(table(*store).empty());
}

// Records that reached the log but not the table (a process died between
// the two, or ran without the sink) are copied by the next relay or open;
// lines re-sent are no-ops.
TEST_P(AuditTable, WhatTheTableMissedIsCopiedLater) {
  {
    auto log = open_log(/*backend_sink=*/false);
    auto audited = security::make_auditing_backend(open_store(), log, "tester");
    sync_wait(audited->enqueue({make_job("q", "t"), make_job("q", "t")}));
  }
  auto store = open_store();
  ASSERT_TRUE(table(*store).empty());
  auto log = open_log(/*backend_sink=*/true);
  auto audited = security::make_auditing_backend(store, log, "tester");  // copies on open
  EXPECT_EQ(table(*store), file_lines());
  // A direct append after the last relay waits in the log for the next
  // one, here another decorator's (another process), which resumes where
  // the table ends.
  sync_wait(audited->enqueue({make_job("q", "t"), make_job("q", "t")}));
  log->append(AuditEvent("key-rotated", "cli", "", ""));
  ASSERT_EQ(file_lines().size(), 5u);
  EXPECT_EQ(table(*store).size(), 4u);
  auto again = security::make_auditing_backend(open_store(), log, "tester");
  sync_wait(again->enqueue({make_job("q", "t")}));
  EXPECT_EQ(table(*store), file_lines());
  // The first decorator still thinks the table ends at 4: it re-sends 5
  // and 6 (no-ops) with its own 7.
  sync_wait(audited->enqueue({make_job("q", "t")}));
  log->close();
  ASSERT_EQ(file_lines().size(), 7u);
  EXPECT_EQ(table(*store), file_lines());
  auto v = verify_table(store);
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
}

// One store, one chain: a table that holds another chain's seq 1 refuses
// this one's; the transitions go on and their records are in the log.
TEST_P(AuditTable, AnotherChainsTableRefusesTheCopyWithoutFailingCalls) {
  auto store = open_store();
  sync_wait(store->append_audit_chain({line(1, "{\"seq\":1,\"another\":\"chain\"}")}));
  auto log = open_log(/*backend_sink=*/true);
  auto audited = security::make_auditing_backend(store, log, "tester");
  Job j = make_job("q", "t");
  EXPECT_NO_THROW(sync_wait(audited->enqueue({j})));
  EXPECT_NO_THROW(sync_wait(audited->set_paused("q", true)));
  log->close();
  EXPECT_EQ(file_lines().size(), 2u);
  EXPECT_EQ(table(*store), std::vector<AuditChainLine>{line(1, "{\"seq\":1,\"another\":\"chain\"}")});
  EXPECT_FALSE(verify_table(store).intact);
}

INSTANTIATE_TEST_SUITE_P(Backends, AuditTable, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

// The stored form of a transaction's audit entries (src/backends/
// audit_entries.hpp): what a backend writes into its outbox reads back as
// the same events, in both formats, and a damaged row is refused.
#include "backends/audit_entries.hpp"

#include <asyncmq/error.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace asyncmq::backends {
namespace {

JobId id_of(std::uint8_t seed) {
  std::array<std::uint8_t, 16> b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(seed * 17 + i);
  return JobId(b);
}

Job job_of(std::uint8_t seed, std::string queue, std::string subject, int attempts) {
  Job j;
  j.id = id_of(seed);
  j.queue = std::move(queue);
  j.options.subject = std::move(subject);
  j.attempts_made = attempts;
  return j;
}

void expect_event(const AuditEvent& e, std::string action, std::string actor, std::string job,
                  std::string queue, std::string subject, std::string detail) {
  EXPECT_EQ(e.action, action);
  EXPECT_EQ(e.actor, actor);
  EXPECT_EQ(e.job, job);
  EXPECT_EQ(e.queue, queue);
  EXPECT_EQ(e.subject, subject);
  EXPECT_EQ(e.detail, detail);
}

const std::string kIndex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(AuditEntries, ReadBackAsWrittenWhateverTheActorAndQueueSequence) {
  const std::string actor = "apikey:ops";
  AuditEntries a(&actor);
  Job j1 = job_of(1, "mail", kIndex, 0);
  Job j2 = job_of(2, "mail", "", 3);
  Job j3 = job_of(3, "billing", "NOT-AN-INDEX", 1);
  a.added(j1, /*delayed=*/true);
  a.added(j2, false, "repeatable=nightly");
  a.claimed(j2, "w1");
  a.claimed(j3, "w1");                        // same worker, other queue
  a.finished(Outcome::Kind::retry, j3.id, j3.queue, j3.options.subject, 12345, "w2");
  a.finished(Outcome::Kind::completed, j1.id, j1.queue, j1.options.subject, 0, "w1");
  a.queue("paused", "mail");                  // the object's actor again, after workers
  a.job("cleaned", j2.id, "mail", "", "state=completed");
  EXPECT_FALSE(a.empty());
  std::string blob = a.take_encoded();
  EXPECT_TRUE(a.empty());
  ASSERT_FALSE(blob.empty());
  EXPECT_EQ(blob[0], kAuditEntriesFormat);

  std::vector<AuditEvent> e = decode_audit_entries(blob);
  ASSERT_EQ(e.size(), 8u);
  expect_event(e[0], "added", actor, j1.id.str(), "mail", kIndex, "delayed");
  expect_event(e[1], "added", actor, j2.id.str(), "mail", "", "repeatable=nightly");
  expect_event(e[2], "claimed", "worker:w1", j2.id.str(), "mail", "", "attempt=3");
  expect_event(e[3], "claimed", "worker:w1", j3.id.str(), "billing", "NOT-AN-INDEX", "attempt=1");
  expect_event(e[4], "retried", "worker:w2", j3.id.str(), "billing", "NOT-AN-INDEX", "run_at=12345");
  expect_event(e[5], "completed", "worker:w1", j1.id.str(), "mail", kIndex, "");
  expect_event(e[6], "paused", actor, "", "mail", "", "");
  expect_event(e[7], "cleaned", actor, j2.id.str(), "mail", "", "state=completed");
}

TEST(AuditEntries, ATakenObjectStartsAFreshRow) {
  const std::string actor = "cli";
  AuditEntries a(&actor);
  a.claimed(job_of(1, "q", "", 1), "w1");
  (void)a.take_encoded();
  // No "same as before" may point into the row already taken.
  a.claimed(job_of(2, "q", "", 1), "w1");
  std::vector<AuditEvent> e = decode_audit_entries(a.take_encoded());
  ASSERT_EQ(e.size(), 1u);
  expect_event(e[0], "claimed", "worker:w1", id_of(2).str(), "q", "", "attempt=1");
}

TEST(AuditEntries, OffCollectsNothing) {
  AuditEntries a(nullptr);
  a.added(job_of(1, "q", "", 0), false);
  a.claimed(job_of(1, "q", "", 1), "w");
  a.queue("paused", "q");
  EXPECT_TRUE(a.empty());
  EXPECT_TRUE(decode_audit_entries(a.take_encoded()).empty());
}

// Rows a store wrote before the compact form: six u32-length strings each.
TEST(AuditEntries, TheFirstFormatStillReads) {
  std::string blob;
  auto put = [&blob](const std::string& f) {
    auto n = static_cast<std::uint32_t>(f.size());
    for (int i = 0; i < 4; ++i) blob.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    blob += f;
  };
  for (const char* f : {"added", "cli", "01a2", "q", "", "delayed"}) put(f);
  std::vector<AuditEvent> e = decode_audit_entries(blob);
  ASSERT_EQ(e.size(), 1u);
  expect_event(e[0], "added", "cli", "01a2", "q", "", "delayed");
}

TEST(AuditEntries, ADamagedRowIsRefusedAsCorrupt) {
  const std::string actor = "cli";
  AuditEntries a(&actor);
  a.added(job_of(1, "q", kIndex, 0), false);
  a.claimed(job_of(1, "q", kIndex, 1), "w");
  const std::string blob = a.take_encoded();
  // Every cut short of the whole row is refused, never read past its end.
  for (std::size_t n = 2; n < blob.size(); ++n) {
    std::string cut = blob.substr(0, n);
    try {
      std::vector<AuditEvent> e = decode_audit_entries(cut);
      // A cut exactly between two entries is a shorter valid row.
      EXPECT_EQ(e.size(), 1u) << "cut at " << n;
    } catch (const BackendError& ex) {
      EXPECT_EQ(ex.code(), errc::corrupt_store);
      EXPECT_NE(std::string(ex.what()).find("malformed audit outbox row"), std::string::npos);
    }
  }
  std::string bad_flags = blob;
  bad_flags[1] = static_cast<char>(0x40);
  EXPECT_THROW(decode_audit_entries(bad_flags), BackendError);
  // "Same actor as before" in the first entry has nothing to refer to.
  std::string dangling = blob;
  dangling[1] = static_cast<char>(dangling[1] | 1);
  EXPECT_THROW(decode_audit_entries(dangling), BackendError);
}

}  // namespace
}  // namespace asyncmq::backends

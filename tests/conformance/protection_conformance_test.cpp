// The data-protection part of the Backend contract (issue 5), on every
// backend: scan, the compare-and-set of sealed fields, and purge by subject.
#include "conformance/backend_fixture.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/sync.hpp>

#include <set>

namespace asyncmq::testing {
namespace {

using boost::json::object;

using ProtectionConformance = BackendConformance;

TEST_P(ProtectionConformance, ScanWalksEveryJobOfEveryQueueAndStateInIdOrder) {
  std::vector<JobId> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(add(i % 2 ? "a" : "b", "t", object{{"i", i}}, {}));
  JobOptions delayed;
  delayed.delay_ms = 60'000;
  ids.push_back(add("c", "t", object{}, delayed));
  auto claimed = claim("a", 1);
  ASSERT_EQ(claimed.size(), 1u);
  finish({completed(claimed[0], "\"r\"")});

  std::vector<JobId> seen;
  std::optional<JobId> after;
  int pages = 0;
  for (;;) {
    JobPage page = sync_wait(backend().scan(after, 3));
    ++pages;
    for (const auto& j : page.jobs) seen.push_back(j.id);
    if (!page.next) break;
    after = page.next;
  }
  EXPECT_EQ(seen, ids);  // ids are time-ordered: creation order
  EXPECT_EQ(pages, 3);
  EXPECT_THROW(sync_wait(backend().scan(std::nullopt, 0)), InvalidArgument);
  EXPECT_THROW(sync_wait(backend().scan(std::nullopt, 1001)), InvalidArgument);
  auto all = sync_wait(backend().scan(std::nullopt, 1000));
  EXPECT_FALSE(all.next);
  EXPECT_EQ(all.jobs.size(), ids.size());
  EXPECT_EQ(all.jobs[static_cast<std::size_t>(std::find(ids.begin(), ids.end(), claimed[0].id) - ids.begin())].result,
            "\"r\"");
}

TEST_P(ProtectionConformance, RewriteSealedIsACompareAndSetOfTheThreeFields) {
  JobId id = add("q", "t", object{{"n", 1}}, {});
  auto jobs = claim("q", 1);
  ASSERT_EQ(jobs.size(), 1u);
  const Job before = *sync_wait(backend().get(id));

  SealedRewrite good;
  good.id = id;
  good.expected_payload = before.payload;
  good.expected_result = before.result;
  good.expected_error = before.error;
  good.payload = "P2";
  good.result = "";
  good.error = "";
  SealedRewrite stale = good;
  stale.id = id;
  stale.expected_payload = "not what is stored";
  SealedRewrite missing = good;
  missing.id = JobId::generate(env());
  std::vector<SealedRewrite> batch;
  batch.push_back(stale);
  batch.push_back(good);
  batch.push_back(missing);
  EXPECT_EQ(sync_wait(backend().rewrite_sealed(batch)), (std::vector<bool>{false, true, false}));

  Job after = *sync_wait(backend().get(id));
  EXPECT_EQ(after.payload, "P2");
  // Nothing else changed: the job is still active under the same lease, so
  // its worker's completion is accepted.
  EXPECT_EQ(after.state, JobState::active);
  EXPECT_EQ(after.lease.token, jobs[0].lease.token);
  EXPECT_EQ(after.attempts_made, before.attempts_made);
  EXPECT_EQ(finish({completed(jobs[0], "R")}), std::vector<bool>{true});

  // The same rewrite again: the result changed meanwhile, so it is refused.
  std::vector<SealedRewrite> again;
  again.push_back(good);
  again.back().expected_payload = "P2";
  EXPECT_EQ(sync_wait(backend().rewrite_sealed(again)), std::vector<bool>{false});
  EXPECT_EQ(sync_wait(backend().get(id))->result, "R");
}

TEST_P(ProtectionConformance, PurgeSubjectDeletesEveryJobOfTheSubjectInAnyState) {
  JobOptions s;
  s.subject = "idx-1";
  JobOptions t;
  t.subject = "idx-2";
  JobOptions delayed = s;
  delayed.delay_ms = 60'000;
  std::vector<JobId> mine;
  mine.push_back(add("a", "t", object{}, s));   // will be active
  mine.push_back(add("a", "t", object{}, s));   // will be completed
  mine.push_back(add("b", "t", object{}, s));   // waiting
  mine.push_back(add("b", "t", object{}, delayed));
  JobId theirs = add("a", "t", object{}, t);
  JobId none = add("b", "t", object{}, {});
  auto jobs = claim("a", 2);
  ASSERT_EQ(jobs.size(), 2u);
  finish({completed(jobs[1], "\"r\"")});

  PurgeResult r = sync_wait(backend().purge_subject("idx-1"));
  EXPECT_EQ(r.jobs, 4u);
  EXPECT_TRUE(r.scrubbed);
  for (const auto& id : mine) EXPECT_FALSE(sync_wait(backend().get(id)));
  EXPECT_TRUE(sync_wait(backend().get(theirs)));
  EXPECT_TRUE(sync_wait(backend().get(none)));
  // Counts follow; the purged active job's worker is refused (fencing).
  auto a = counts("a");
  auto b = counts("b");
  EXPECT_EQ(a[static_cast<int>(JobState::active)], 0u);
  EXPECT_EQ(a[static_cast<int>(JobState::waiting)], 1u);  // theirs
  EXPECT_EQ(a[static_cast<int>(JobState::completed)], 0u);
  EXPECT_EQ(b[static_cast<int>(JobState::waiting)], 1u);
  EXPECT_EQ(b[static_cast<int>(JobState::delayed)], 0u);
  EXPECT_EQ(finish({completed(jobs[0], "\"late\"")}), std::vector<bool>{false});
  // The purged job is not claimed again, the others still are.
  EXPECT_EQ(claim("b", 10).size(), 1u);
  EXPECT_EQ(sync_wait(backend().purge_subject("idx-1")).jobs, 0u);
  EXPECT_THROW(sync_wait(backend().purge_subject("")), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, ProtectionConformance, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

// The data-protection part of the Backend contract (issue 5), on every
// backend: scan, the compare-and-set of sealed fields, and purge by subject.
#include "conformance/backend_fixture.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/sync.hpp>

#include <map>
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

// Appends `texts` as log lines (times now, now+1, ...) to the active job
// `job`, as its worker would.
void append(Backend& b, const Job& job, std::int64_t now, std::vector<std::string> texts) {
  std::vector<LogLine> lines;
  for (auto& t : texts) lines.push_back(LogLine{now++, std::move(t)});
  ASSERT_TRUE(sync_wait(b.append_logs(LeaseRef{job.id, job.lease.token}, std::move(lines))));
}

std::vector<std::string> texts_of(const std::vector<LogLine>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) out.push_back(l.text);
  return out;
}

TEST_P(ProtectionConformance, ScanCarriesEachJobsLogLines) {
  // No log line anywhere: no entry at all.
  std::vector<JobId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(add(i % 2 ? "a" : "b", "t", object{{"i", i}}, {}));
  EXPECT_TRUE(sync_wait(backend().scan(std::nullopt, 1000)).logs.empty());

  // ids[0] (b) logs twice and completes, ids[1] (a) logs once and stays
  // active, ids[3] (a) is claimed but logs nothing; ids[2] and ids[4] wait.
  auto b = claim("b", 1);
  ASSERT_EQ(b.size(), 1u);
  ASSERT_EQ(b[0].id, ids[0]);
  const std::int64_t t0 = env().now_ms();
  append(backend(), b[0], t0, {"b0-first", "b0-second"});
  append(backend(), b[0], t0 + 10, {"b0-third"});
  finish({completed(b[0], "\"r\"")});
  auto a = claim("a", 2);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(a[0].id, ids[1]);
  append(backend(), a[0], t0 + 20, {"a1-only"});

  std::map<JobId, std::vector<LogLine>> seen;
  std::optional<JobId> after;
  int pages = 0;
  for (;;) {
    JobPage page = sync_wait(backend().scan(after, 2));
    ++pages;
    std::set<JobId> in_page;
    for (const auto& j : page.jobs) in_page.insert(j.id);
    for (std::size_t k = 0; k < page.logs.size(); ++k) {
      EXPECT_TRUE(in_page.count(page.logs[k].id)) << "lines of a job not in the page";
      EXPECT_FALSE(page.logs[k].lines.empty()) << "an entry without lines";
      if (k > 0) {
        EXPECT_LT(page.logs[k - 1].id, page.logs[k].id) << "not in id order";
      }
      EXPECT_TRUE(seen.emplace(page.logs[k].id, page.logs[k].lines).second) << "seen twice";
    }
    if (!page.next) break;
    after = page.next;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 2u);
  const auto& l0 = seen[ids[0]];
  EXPECT_EQ(texts_of(l0), (std::vector<std::string>{"b0-first", "b0-second", "b0-third"}));
  ASSERT_EQ(l0.size(), 3u);
  EXPECT_EQ(l0[0].time_ms, t0);
  EXPECT_EQ(l0[1].time_ms, t0 + 1);
  EXPECT_EQ(l0[2].time_ms, t0 + 10);
  EXPECT_EQ(texts_of(seen[ids[1]]), std::vector<std::string>{"a1-only"});
  // The same as the job's own log.
  EXPECT_EQ(texts_of(sync_wait(backend().logs(ids[0], 100))), texts_of(l0));

  // A removed job's lines go with it.
  sync_wait(backend().remove(ids[0]));
  auto all = sync_wait(backend().scan(std::nullopt, 1000));
  ASSERT_EQ(all.logs.size(), 1u);
  EXPECT_EQ(all.logs[0].id, ids[1]);
}

TEST_P(ProtectionConformance, RewriteSealedSwapsLogLinesByCompareAndSet) {
  JobId id = add("q", "t", object{{"n", 1}}, {});
  JobId other = add("q", "t", object{{"n", 2}}, {});
  auto jobs = claim("q", 2);
  ASSERT_EQ(jobs.size(), 2u);
  ASSERT_EQ(jobs[0].id, id);
  const std::int64_t t0 = env().now_ms();
  append(backend(), jobs[0], t0, {"L1", "L2"});
  append(backend(), jobs[1], t0, {"O1"});
  const Job before = *sync_wait(backend().get(id));
  // A rewrite of `of` that keeps its row as it is and swaps its lines.
  auto rewrite = [&](std::vector<std::string> expected, std::vector<std::string> now,
                     const Job& of) {
    SealedRewrite w;
    w.id = of.id;
    w.expected_payload = w.payload = of.payload;
    w.expected_result = w.result = of.result;
    w.expected_error = w.error = of.error;
    w.expected_progress = w.progress = of.progress;
    w.expected_logs = std::move(expected);
    w.logs = std::move(now);
    return w;
  };

  // A line appended after the scan is neither compared nor changed.
  append(backend(), jobs[0], t0 + 5, {"L3"});
  std::vector<SealedRewrite> batch;
  batch.push_back(rewrite({"L1", "L2"}, {"N1", "N2"}, before));
  EXPECT_EQ(sync_wait(backend().rewrite_sealed(batch)), std::vector<bool>{true});
  auto lines = sync_wait(backend().logs(id, 100));
  EXPECT_EQ(texts_of(lines), (std::vector<std::string>{"N1", "N2", "L3"}));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].time_ms, t0);  // times and order kept
  EXPECT_EQ(lines[1].time_ms, t0 + 1);
  EXPECT_EQ(lines[2].time_ms, t0 + 5);
  EXPECT_EQ(texts_of(sync_wait(backend().logs(other, 100))), std::vector<std::string>{"O1"});

  // Refused, each changing nothing of the item (its row neither): lines no
  // longer as read; more lines compared than the job has; row changed but
  // lines as read; a job without lines.
  std::vector<SealedRewrite> refused;
  const Job no_lines = *sync_wait(backend().get(add("q", "t", object{}, {})));
  refused.push_back(rewrite({"L1", "L2"}, {"X1", "X2"}, before));
  refused.push_back(rewrite({"N1", "N2", "L3", "L4"}, {"X1", "X2", "X3", "X4"}, before));
  refused.push_back(rewrite({"N1"}, {"X1"}, before));
  refused.back().expected_payload = "not what is stored";
  refused.push_back(rewrite({"N1"}, {"X1"}, no_lines));
  for (auto& w : refused) w.payload = "P-refused";
  EXPECT_EQ(sync_wait(backend().rewrite_sealed(refused)), (std::vector<bool>{false, false, false, false}));
  EXPECT_EQ(texts_of(sync_wait(backend().logs(id, 100))), (std::vector<std::string>{"N1", "N2", "L3"}));
  EXPECT_EQ(sync_wait(backend().get(id))->payload, before.payload);
  EXPECT_EQ(sync_wait(backend().get(no_lines.id))->payload, no_lines.payload);
  EXPECT_TRUE(sync_wait(backend().logs(no_lines.id, 100)).empty());

  // A prefix shorter than the lines is enough; no compared lines leaves
  // the lines alone (the row is still rewritten).
  batch.clear();
  batch.push_back(rewrite({"N1"}, {"M1"}, before));
  batch.push_back(rewrite({}, {}, *sync_wait(backend().get(other))));
  batch.back().payload = "P-other";
  EXPECT_EQ(sync_wait(backend().rewrite_sealed(batch)), (std::vector<bool>{true, true}));
  EXPECT_EQ(texts_of(sync_wait(backend().logs(id, 100))), (std::vector<std::string>{"M1", "N2", "L3"}));
  EXPECT_EQ(texts_of(sync_wait(backend().logs(other, 100))), std::vector<std::string>{"O1"});
  EXPECT_EQ(sync_wait(backend().get(other))->payload, "P-other");

  // New and compared lines must pair up: the whole batch is refused with
  // InvalidArgument and nothing of it is written.
  batch.clear();
  batch.push_back(rewrite({"M1"}, {"Z1"}, before));
  batch.push_back(rewrite({"M1", "N2"}, {"Z1"}, before));
  EXPECT_THROW(sync_wait(backend().rewrite_sealed(batch)), InvalidArgument);
  EXPECT_EQ(texts_of(sync_wait(backend().logs(id, 100))), (std::vector<std::string>{"M1", "N2", "L3"}));

  // The worker was not disturbed: it logs and finishes under its lease.
  append(backend(), jobs[0], t0 + 9, {"L4"});
  EXPECT_EQ(finish({completed(jobs[0], "R")}), std::vector<bool>{true});
  EXPECT_EQ(texts_of(sync_wait(backend().logs(id, 100))),
            (std::vector<std::string>{"M1", "N2", "L3", "L4"}));
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

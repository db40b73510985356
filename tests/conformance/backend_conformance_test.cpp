// The Backend contract (include/asyncmq/backend.hpp), stated once as tests
// and run against every backend. A backend is done when it passes all of it.
// Time is a FakeEnv: nothing here sleeps.
#include "conformance/backend_fixture.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/sync.hpp>

#include <set>

namespace asyncmq::testing {
namespace {

using boost::json::object;

constexpr auto kWaiting = static_cast<int>(JobState::waiting);
constexpr auto kDelayed = static_cast<int>(JobState::delayed);
constexpr auto kActive = static_cast<int>(JobState::active);
constexpr auto kCompleted = static_cast<int>(JobState::completed);
constexpr auto kFailed = static_cast<int>(JobState::failed);
constexpr auto kDead = static_cast<int>(JobState::dead);

TEST_P(BackendConformance, AddedJobReadsBackWithEveryField) {
  JobOptions o;
  o.priority = 7;
  o.attempts = 4;
  o.backoff = Backoff{Backoff::Kind::fixed, 250, 1000, 0.5};
  o.timeout_ms = 1500;
  o.lifo = true;
  o.idempotency_key = "order-17";
  o.subject = "user-9";
  JobId id = add("orders", "charge", object{{"amount", 42}, {"cur", "EUR"}}, o);

  auto job = sync_wait(backend().get(id));
  ASSERT_TRUE(job);
  EXPECT_EQ(job->id, id);
  EXPECT_EQ(job->queue, "orders");
  EXPECT_EQ(job->task, "charge");
  EXPECT_EQ(job->state, JobState::waiting);
  EXPECT_EQ(job->payload, R"({"amount":42,"cur":"EUR"})");
  EXPECT_EQ(job->options.priority, 7);
  EXPECT_EQ(job->options.attempts, 4);
  EXPECT_EQ(job->options.backoff.kind, Backoff::Kind::fixed);
  EXPECT_EQ(job->options.backoff.delay_ms, 250);
  EXPECT_EQ(job->options.backoff.max_delay_ms, 1000);
  EXPECT_DOUBLE_EQ(job->options.backoff.jitter, 0.5);
  EXPECT_EQ(job->options.timeout_ms, 1500);
  EXPECT_TRUE(job->options.lifo);
  EXPECT_EQ(job->options.idempotency_key, "order-17");
  EXPECT_EQ(job->options.subject, "user-9");
  EXPECT_EQ(job->created_ms, env().now_ms());
  EXPECT_EQ(job->run_at_ms, env().now_ms());
  EXPECT_EQ(job->attempts_made, 0);
  EXPECT_FALSE(sync_wait(backend().get(JobId::generate(env()))));
}

TEST_P(BackendConformance, ClaimsByPriorityThenCreationOrder) {
  std::vector<JobId> ids;
  for (int p : {5, 0, 0, -3, 5, 0}) {
    JobOptions o;
    o.priority = p;
    ids.push_back(add("q", "t", object{{"p", p}}, o));
  }
  // -3, then the three 0s oldest first, then the two 5s oldest first.
  std::vector<JobId> expected = {ids[3], ids[1], ids[2], ids[5], ids[0], ids[4]};
  std::vector<JobId> got;
  for (int i = 0; i < 6; ++i) {
    auto jobs = claim("q", 1);
    ASSERT_EQ(jobs.size(), 1u);
    got.push_back(jobs[0].id);
  }
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(claim("q", 1).empty());
}

TEST_P(BackendConformance, BatchClaimKeepsTheSameOrder) {
  std::vector<JobId> ids;
  for (int i = 0; i < 10; ++i) {
    JobOptions o;
    o.priority = i % 2;  // evens first
    ids.push_back(add("q", "t", object{}, o));
  }
  auto jobs = claim("q", 10);
  ASSERT_EQ(jobs.size(), 10u);
  std::vector<JobId> got;
  for (auto& j : jobs) got.push_back(j.id);
  std::vector<JobId> expected;
  for (int i = 0; i < 10; i += 2) expected.push_back(ids[i]);
  for (int i = 1; i < 10; i += 2) expected.push_back(ids[i]);
  EXPECT_EQ(got, expected);
}

TEST_P(BackendConformance, LifoJobsComeFirstNewestFirstWithinTheirPriority) {
  JobOptions lifo;
  lifo.lifo = true;
  JobOptions urgent;
  urgent.priority = -1;
  JobId f1 = add("q", "t", object{}, {});
  JobId l1 = add("q", "t", object{}, lifo);
  JobId f2 = add("q", "t", object{}, {});
  JobId l2 = add("q", "t", object{}, lifo);
  JobId u = add("q", "t", object{}, urgent);
  std::vector<JobId> got;
  for (auto& j : claim("q", 10)) got.push_back(j.id);
  EXPECT_EQ(got, (std::vector<JobId>{u, l2, l1, f1, f2}));
}

TEST_P(BackendConformance, DelayedJobIsClaimableOnlyOnceDue) {
  JobOptions o;
  o.delay_ms = 1000;
  JobId id = add("q", "t", object{}, o);
  auto job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::delayed);
  EXPECT_EQ(job->run_at_ms, env().now_ms() + 1000);
  EXPECT_EQ(counts("q")[kDelayed], 1u);
  EXPECT_TRUE(claim("q", 1).empty());
  env().advance(999);
  EXPECT_TRUE(claim("q", 1).empty());
  env().advance(1);
  auto jobs = claim("q", 1);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, id);
}

TEST_P(BackendConformance, PromoteDueMovesDelayedJobsOfEveryQueue) {
  JobOptions o;
  o.delay_ms = 50;
  add("a", "t", object{}, o);
  add("b", "t", object{}, o);
  o.delay_ms = 500;
  add("b", "t", object{}, o);
  EXPECT_EQ(sync_wait(backend().promote_due(env().now_ms())), 0u);
  env().advance(60);
  EXPECT_EQ(sync_wait(backend().promote_due(env().now_ms())), 2u);
  EXPECT_EQ(counts("a")[kWaiting], 1u);
  EXPECT_EQ(counts("b")[kWaiting], 1u);
  EXPECT_EQ(counts("b")[kDelayed], 1u);
}

TEST_P(BackendConformance, ClaimGivesALeaseWithAFreshToken) {
  JobId id = add("q", "t", object{}, {});
  auto jobs = claim("q", 5, /*lease_ms=*/2000, "worker-a");
  ASSERT_EQ(jobs.size(), 1u);
  const Job& j = jobs[0];
  EXPECT_EQ(j.id, id);
  EXPECT_EQ(j.state, JobState::active);
  EXPECT_EQ(j.attempts_made, 1);
  EXPECT_EQ(j.started_ms, env().now_ms());
  EXPECT_EQ(j.lease.owner, "worker-a");
  EXPECT_EQ(j.lease.expires_ms, env().now_ms() + 2000);
  EXPECT_NE(j.lease.token, 0u);
  EXPECT_EQ(counts("q")[kActive], 1u);
  auto stored = sync_wait(backend().get(id));
  EXPECT_EQ(stored->state, JobState::active);
  EXPECT_EQ(stored->lease.token, j.lease.token);
}

TEST_P(BackendConformance, ClaimOnlyTakesJobsOfItsQueue) {
  add("a", "t", object{}, {});
  JobId b = add("b", "t", object{}, {});
  auto jobs = claim("b", 10);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, b);
  EXPECT_TRUE(claim("nope", 10).empty());
}

TEST_P(BackendConformance, HeartbeatExtendsOnlyTheCurrentLease) {
  add("q", "t", object{}, {});
  auto j = claim("q", 1, 1000).at(0);
  env().advance(800);
  auto ok = sync_wait(backend().heartbeat(
      {{j.id, j.lease.token}, {j.id, j.lease.token + 1}}, env().now_ms() + 1000));
  EXPECT_EQ(ok, (std::vector<LeaseStatus>{LeaseStatus::held, LeaseStatus::lost}));
  env().advance(800);  // past the first expiry, within the extended one
  auto r = sync_wait(backend().reclaim_expired(env().now_ms(), 3));
  EXPECT_TRUE(r.requeued.empty());
  EXPECT_EQ(sync_wait(backend().get(j.id))->lease.expires_ms, env().now_ms() + 200);
}

TEST_P(BackendConformance, ExpiredLeaseIsReclaimedAndTheOldTokenIsFenced) {
  JobId id = add("q", "t", object{}, {});
  auto first = claim("q", 1, 1000, "w1").at(0);
  env().advance(1001);
  auto r = sync_wait(backend().reclaim_expired(env().now_ms(), 3));
  EXPECT_EQ(r.requeued, std::vector<JobId>{id});
  auto job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::waiting);
  EXPECT_EQ(job->stalls, 1);

  auto second = claim("q", 1, 1000, "w2").at(0);
  EXPECT_NE(second.lease.token, first.lease.token);
  EXPECT_EQ(second.attempts_made, 2);

  // The first worker wakes up late: every write it tries is refused.
  EXPECT_EQ(sync_wait(backend().heartbeat({{id, first.lease.token}}, env().now_ms() + 1000)),
            std::vector<LeaseStatus>{LeaseStatus::lost});
  EXPECT_EQ(finish({completed(first, "late")}), std::vector<bool>{false});
  EXPECT_EQ(sync_wait(backend().get(id))->state, JobState::active);
  EXPECT_EQ(finish({completed(second, "ok")}), std::vector<bool>{true});
  job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::completed);
  EXPECT_EQ(job->result, "ok");
}

TEST_P(BackendConformance, JobThatKeepsStallingGoesDead) {
  JobId id = add("q", "t", object{}, {});
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(claim("q", 1, 100).size(), 1u);
    env().advance(101);
    auto r = sync_wait(backend().reclaim_expired(env().now_ms(), 2));
    if (i < 2) {
      EXPECT_EQ(r.requeued, std::vector<JobId>{id});
    } else {
      EXPECT_EQ(r.dead, std::vector<JobId>{id});
    }
  }
  auto job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::dead);
  EXPECT_EQ(job->stalls, 3);
  EXPECT_FALSE(job->error.empty());
}

TEST_P(BackendConformance, CompletedJobKeepsItsResult) {
  JobId id = add("q", "t", object{}, {});
  auto j = claim("q", 1).at(0);
  env().advance(5);
  EXPECT_EQ(finish({completed(j, "{\"r\":1}")}), std::vector<bool>{true});
  auto job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::completed);
  EXPECT_EQ(job->result, "{\"r\":1}");
  EXPECT_EQ(job->finished_ms, env().now_ms());
  EXPECT_EQ(counts("q")[kCompleted], 1u);
  EXPECT_EQ(counts("q")[kActive], 0u);
  // A second completion of the same lease is refused.
  EXPECT_EQ(finish({completed(j, "again")}), std::vector<bool>{false});
}

TEST_P(BackendConformance, RetryWaitsForItsBackoffThenDeadKeepsTheLastError) {
  JobOptions o;
  o.attempts = 2;
  JobId id = add("q", "t", object{}, o);
  auto j = claim("q", 1).at(0);
  Outcome retry{j.id, j.lease.token, Outcome::Kind::retry, "", "boom 1", env().now_ms() + 500,
                env().now_ms()};
  EXPECT_EQ(finish({retry}), std::vector<bool>{true});
  auto job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::failed);
  EXPECT_EQ(job->error, "boom 1");
  EXPECT_EQ(counts("q")[kFailed], 1u);
  EXPECT_TRUE(claim("q", 1).empty());
  env().advance(500);
  auto again = claim("q", 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts_made, 2);
  Outcome dead{id, again[0].lease.token, Outcome::Kind::dead, "", "boom 2", 0, env().now_ms()};
  EXPECT_EQ(finish({dead}), std::vector<bool>{true});
  job = sync_wait(backend().get(id));
  EXPECT_EQ(job->state, JobState::dead);
  EXPECT_EQ(job->error, "boom 2");
  EXPECT_EQ(job->finished_ms, env().now_ms());
  EXPECT_TRUE(claim("q", 1).empty());
}

TEST_P(BackendConformance, FinishAppliesEachItemOnItsOwnMerits) {
  add("q", "t", object{}, {});
  add("q", "t", object{}, {});
  auto jobs = claim("q", 2);
  ASSERT_EQ(jobs.size(), 2u);
  Job stale = jobs[1];
  stale.lease.token ^= 0x5555;
  EXPECT_EQ(finish({completed(jobs[0], "a"), completed(stale, "b")}),
            (std::vector<bool>{true, false}));
  EXPECT_EQ(counts("q")[kCompleted], 1u);
  EXPECT_EQ(counts("q")[kActive], 1u);
}

TEST_P(BackendConformance, EnqueueBatchIsAllOrNothing) {
  JobId existing = add("q", "t", object{}, {});
  std::vector<Job> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(make_job("q", "t"));
  batch.push_back(*sync_wait(backend().get(existing)));  // a duplicate id
  EXPECT_THROW(sync_wait(backend().enqueue(batch)), Conflict);
  EXPECT_EQ(counts("q")[kWaiting], 1u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(sync_wait(backend().get(batch[i].id)));

  // The same new id twice within one batch: refused, nothing written.
  std::vector<Job> twice = batch;
  twice.pop_back();
  twice.push_back(twice[2]);
  EXPECT_THROW(sync_wait(backend().enqueue(twice)), Conflict);
  EXPECT_EQ(counts("q")[kWaiting], 1u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(sync_wait(backend().get(batch[i].id)));

  batch.pop_back();
  sync_wait(backend().enqueue(batch));
  EXPECT_EQ(counts("q")[kWaiting], 6u);
}

TEST_P(BackendConformance, BulkAddThroughTheQueueIsOneBatch) {
  Queue queue(client(), "bulk");
  std::vector<NewJob> jobs;
  for (int i = 0; i < 100; ++i) jobs.push_back({"t", object{{"i", i}}, {}});
  jobs[57].task = "bad name!";
  EXPECT_THROW(sync_wait(queue.add_bulk(jobs)), InvalidArgument);
  EXPECT_EQ(counts("bulk")[kWaiting], 0u);
  jobs[57].task = "t";
  auto ids = sync_wait(queue.add_bulk(jobs));
  ASSERT_EQ(ids.size(), 100u);
  EXPECT_EQ(std::set<JobId>(ids.begin(), ids.end()).size(), 100u);
  EXPECT_EQ(counts("bulk")[kWaiting], 100u);
}

TEST_P(BackendConformance, CountsFollowEveryTransition) {
  for (int i = 0; i < 4; ++i) add("q", "t", object{}, {});
  JobOptions o;
  o.delay_ms = 100;
  add("q", "t", object{}, o);
  auto jobs = claim("q", 3);
  finish({completed(jobs[0], "")});
  finish({Outcome{jobs[1].id, jobs[1].lease.token, Outcome::Kind::dead, "", "x", 0, 0}});
  finish({Outcome{jobs[2].id, jobs[2].lease.token, Outcome::Kind::retry, "", "x",
                  env().now_ms() + 10, 0}});
  StateCounts c = counts("q");
  EXPECT_EQ(c[kWaiting], 1u);
  EXPECT_EQ(c[kDelayed], 1u);
  EXPECT_EQ(c[kActive], 0u);
  EXPECT_EQ(c[kCompleted], 1u);
  EXPECT_EQ(c[kFailed], 1u);
  EXPECT_EQ(c[kDead], 1u);
  EXPECT_EQ(counts("other"), StateCounts{});
}

TEST_P(BackendConformance, ListPagesThroughAStateInCreationOrder) {
  std::vector<JobId> ids;
  for (int i = 0; i < 25; ++i) ids.push_back(add("q", "t", object{{"i", i}}, {}));
  add("other", "t", object{}, {});
  std::vector<JobId> seen;
  std::optional<JobId> cursor;
  int pages = 0;
  do {
    auto page = sync_wait(backend().list({"q", JobState::waiting, cursor, 10}));
    ++pages;
    for (auto& j : page.jobs) {
      EXPECT_EQ(j.state, JobState::waiting);
      seen.push_back(j.id);
    }
    cursor = page.next;
  } while (cursor);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, ids);
  EXPECT_TRUE(sync_wait(backend().list({"q", JobState::dead, {}, 10})).jobs.empty());
  EXPECT_THROW(sync_wait(backend().list({"q", JobState::waiting, {}, 0})), InvalidArgument);
  EXPECT_THROW(sync_wait(backend().list({"q", JobState::waiting, {}, 1001})), InvalidArgument);
}

TEST_P(BackendConformance, PausedQueueAcceptsButDoesNotHandOut) {
  Queue queue(client(), "p");
  sync_wait(queue.pause());
  EXPECT_TRUE(sync_wait(queue.is_paused()));
  JobId id = sync_wait(queue.add("t", object{}));
  EXPECT_TRUE(claim("p", 10).empty());
  add("unpaused", "t", object{}, {});
  EXPECT_EQ(claim("unpaused", 10).size(), 1u);
  sync_wait(queue.resume());
  EXPECT_FALSE(sync_wait(queue.is_paused()));
  auto jobs = claim("p", 10);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, id);
  auto names = sync_wait(backend().queues());
  EXPECT_EQ(names, (std::vector<std::string>{"p", "unpaused"}));
}

TEST_P(BackendConformance, RemoveDeletesAnyJobButAnActiveOne) {
  JobId waiting = add("q", "t", object{}, {});
  JobOptions o;
  o.delay_ms = 10;
  JobId delayed = add("q", "t", object{}, o);
  JobId active = add("q", "t", object{}, {});
  sync_wait(backend().remove(waiting));
  sync_wait(backend().remove(delayed));
  EXPECT_FALSE(sync_wait(backend().get(waiting)));
  auto jobs = claim("q", 10);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, active);
  EXPECT_THROW(sync_wait(backend().remove(active)), Conflict);
  env().advance(20);
  EXPECT_TRUE(claim("q", 10).empty());  // the removed delayed job never comes back
  EXPECT_THROW(sync_wait(backend().remove(waiting)), NotFound);
  finish({completed(jobs[0], "")});
  sync_wait(backend().remove(active));
  EXPECT_EQ(counts("q"), StateCounts{});
}

TEST_P(BackendConformance, RetryBringsBackFailedAndDeadJobsOnly) {
  JobOptions o;
  o.attempts = 5;
  JobId a = add("q", "t", object{}, o);
  JobId b = add("q", "t", object{}, o);
  auto jobs = claim("q", 2);
  finish({Outcome{a, jobs[0].lease.token, Outcome::Kind::dead, "", "x", 0, env().now_ms()},
          Outcome{b, jobs[1].lease.token, Outcome::Kind::retry, "", "y", env().now_ms() + 100000,
                  env().now_ms()}});
  sync_wait(backend().retry(a, env().now_ms()));
  sync_wait(backend().retry(b, env().now_ms()));
  auto job = sync_wait(backend().get(a));
  EXPECT_EQ(job->state, JobState::waiting);
  EXPECT_EQ(job->attempts_made, 0);
  EXPECT_EQ(claim("q", 10).size(), 2u);  // b no longer waits for its backoff
  EXPECT_THROW(sync_wait(backend().retry(a, env().now_ms())), Conflict);
  EXPECT_THROW(sync_wait(backend().retry(JobId::generate(env()), env().now_ms())), NotFound);
}

TEST_P(BackendConformance, ConcurrentClaimersNeverShareAJob) {
  for (int i = 0; i < 200; ++i) add("q", "t", object{}, {});
  boost::asio::io_context io;
  std::vector<JobId> taken;
  for (int c = 0; c < 8; ++c) {
    boost::asio::co_spawn(io, [&, c]() -> boost::asio::awaitable<void> {
      for (;;) {
        // A named request: GCC 12 mishandles braced temporaries in co_await.
        ClaimRequest req{"q", "w" + std::to_string(c), 7, 1000, env().now_ms()};
        auto jobs = co_await backend().claim(req);
        if (jobs.empty()) co_return;
        for (auto& j : jobs) taken.push_back(j.id);
      }
    }, boost::asio::detached);
  }
  io.run();
  EXPECT_EQ(taken.size(), 200u);
  EXPECT_EQ(std::set<JobId>(taken.begin(), taken.end()).size(), 200u);
}

TEST_P(BackendConformance, RejectsBadInputAndWritesNothing) {
  EXPECT_THROW(Queue(client(), ""), InvalidArgument);
  EXPECT_THROW(Queue(client(), "has space"), InvalidArgument);
  EXPECT_THROW(Queue(client(), std::string(129, 'a')), InvalidArgument);
  Queue queue(client(), "in");
  EXPECT_THROW(sync_wait(queue.add_json("t", "{not json")), InvalidArgument);
  EXPECT_THROW(sync_wait(queue.add_json("t", std::string(2 << 20, ' '))), InvalidArgument);
  EXPECT_THROW(sync_wait(queue.add("-bad", object{})), InvalidArgument);
  JobOptions o;
  o.attempts = 0;
  EXPECT_THROW(sync_wait(queue.add("t", object{}, o)), InvalidArgument);
  o = {};
  o.delay_ms = -1;
  EXPECT_THROW(sync_wait(queue.add("t", object{}, o)), InvalidArgument);
  EXPECT_EQ(counts("in"), StateCounts{});
  try {
    sync_wait(queue.add_json("t", "[1, 2"));
    FAIL() << "malformed JSON was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.kind(), errc::malformed_json);
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos);
  }
}

}  // namespace
}  // namespace asyncmq::testing

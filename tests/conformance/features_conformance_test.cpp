// Issue 4's features, stated once against the Backend contract and run on
// every backend: TTL, idempotency, cancel, progress and logs, flows,
// housekeeping, global rate limits (per queue and per group key), repeatable
// firing, the event log.
// Time is a FakeEnv: nothing here sleeps.
#include "conformance/backend_fixture.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/sync.hpp>

#include <algorithm>

namespace asyncmq::testing {
namespace {

using boost::json::object;

std::uint64_t count_of(const StateCounts& c, JobState s) { return c[static_cast<int>(s)]; }

class Features : public BackendConformance {
 protected:
  JobState state_of(const JobId& id) {
    auto j = sync_wait(backend().get(id));
    return j ? j->state : static_cast<JobState>(255);
  }
  Outcome outcome(const Job& job, Outcome::Kind kind) {
    Outcome o = completed(job, "null");
    o.kind = kind;
    if (kind != Outcome::Kind::completed) {
      o.result.clear();
      o.error = "boom";
    }
    return o;
  }
  std::vector<Event> events_of(const JobId& id) {
    std::vector<Event> out;
    for (auto& e : sync_wait(backend().read_events(0, 10000)).events)
      if (e.job == id) out.push_back(e);
    return out;
  }
  std::vector<EventType> types_of(const JobId& id) {
    std::vector<EventType> out;
    for (auto& e : events_of(id)) out.push_back(e.type);
    return out;
  }
  // An every-N repeatable with an empty payload, due now.
  Repeatable every(std::string queue, std::string name, std::string task, std::int64_t every_ms) {
    Repeatable r;
    r.queue = std::move(queue);
    r.name = std::move(name);
    r.task = std::move(task);
    r.payload = "{}";
    r.every_ms = every_ms;
    r.next_fire_ms = r.created_ms = env().now_ms();
    return r;
  }
};

// ----- TTL -----

TEST_P(Features, JobNotStartedWithinItsTtlExpiresInsteadOfRunning) {
  JobOptions o;
  o.ttl_ms = 1000;
  JobId late = add("q", "t", object{}, o);
  JobId fresh = add("q", "t", object{}, JobOptions{});
  env().advance(1000);
  auto jobs = claim("q", 10);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, fresh);
  EXPECT_EQ(state_of(late), JobState::expired);
  auto c = counts("q");
  EXPECT_EQ(count_of(c, JobState::expired), 1u);
  EXPECT_EQ(count_of(c, JobState::waiting), 0u);
  auto job = sync_wait(client()->get(late));
  EXPECT_NE(job->error.find("TTL"), std::string::npos);
  auto page = sync_wait(backend().list({"q", JobState::expired, {}, 10}));
  ASSERT_EQ(page.jobs.size(), 1u);
  EXPECT_EQ(types_of(late).back(), EventType::expired);
}

TEST_P(Features, ExpireDueMovesWaitingAndDelayedJobsButNotStartedOnes) {
  JobOptions o;
  o.ttl_ms = 500;
  JobId waiting = add("q", "t", object{}, o);
  o.delay_ms = 10'000;
  JobId delayed = add("q", "t", object{}, o);
  JobOptions started_opts;
  started_opts.ttl_ms = 500;
  JobId started = add("r", "t", object{}, started_opts);
  auto running = claim("r", 1);
  ASSERT_EQ(running.size(), 1u);
  env().advance(499);
  EXPECT_TRUE(sync_wait(backend().expire_due(env().now_ms())).empty());
  env().advance(1);
  auto gone = sync_wait(backend().expire_due(env().now_ms()));
  std::sort(gone.begin(), gone.end());
  std::vector<JobId> want{waiting, delayed};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(gone, want);
  EXPECT_EQ(state_of(started), JobState::active);
  EXPECT_EQ(finish({completed(running[0], "1")}), std::vector<bool>{true});
  EXPECT_EQ(state_of(started), JobState::completed);
}

TEST_P(Features, NegativeTtlIsRefusedAndWritesNothing) {
  JobOptions o;
  o.ttl_ms = -1;
  try {
    add("q", "t", object{}, o);
    FAIL() << "accepted a negative TTL";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("ttl"), std::string::npos);
  }
  EXPECT_TRUE(sync_wait(backend().queues()).empty());
}

// ----- idempotency -----

TEST_P(Features, SameKeyReturnsTheExistingJobWhileItExists) {
  JobOptions o;
  o.idempotency_key = "order-1";
  JobId first = add("q", "t", object{{"n", 1}}, o);
  JobId second = add("q", "t", object{{"n", 2}}, o);
  EXPECT_EQ(second, first);
  EXPECT_EQ(count_of(counts("q"), JobState::waiting), 1u);
  auto ev = events_of(first);
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().type, EventType::deduplicated);
  EXPECT_FALSE(ev.back().detail.empty());  // the refused id
  // Another queue has its own keys.
  EXPECT_NE(add("other", "t", object{}, o), first);
  // Completed jobs still deduplicate until removed (window 0).
  auto jobs = claim("q", 1);
  finish({completed(jobs[0], "1")});
  EXPECT_EQ(add("q", "t", object{}, o), first);
  sync_wait(backend().remove(first));
  JobId third = add("q", "t", object{}, o);
  EXPECT_NE(third, first);
}

TEST_P(Features, IdempotencyWindowOutlivesTheJob) {
  JobOptions o;
  o.idempotency_key = "k";
  o.idempotency_window_ms = 5000;
  JobId first = add("q", "t", object{}, o);
  auto jobs = claim("q", 1);
  finish({completed(jobs[0], "1")});
  sync_wait(backend().remove(first));
  env().advance(4999);
  EXPECT_EQ(add("q", "t", object{}, o), first);
  env().advance(1);
  EXPECT_NE(add("q", "t", object{}, o), first);
}

TEST_P(Features, AddBulkDeduplicatesAtomically) {
  Queue q(client(), "q");
  std::vector<NewJob> batch(3);
  for (auto& j : batch) {
    j.task = "t";
    j.options.idempotency_key = "same";
  }
  batch[2].options.idempotency_key = "other";
  auto ids = sync_wait(q.add_bulk(batch));
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_NE(ids[0], ids[2]);
  EXPECT_EQ(count_of(counts("q"), JobState::waiting), 2u);
  // A failing batch stores nothing, keys included.
  std::vector<NewJob> bad(2);
  bad[0].task = "t";
  bad[0].options.idempotency_key = "fresh";
  bad[1].task = "bad name!";
  EXPECT_THROW(sync_wait(q.add_bulk(bad)), InvalidArgument);
  JobOptions o;
  o.idempotency_key = "fresh";
  JobId fresh = add("q", "t", object{}, o);
  EXPECT_EQ(state_of(fresh), JobState::waiting);
  EXPECT_EQ(count_of(counts("q"), JobState::waiting), 3u);
}

// ----- cancel, progress, logs -----

TEST_P(Features, CancelEndsAWaitingJobAtOnceAndFlagsAnActiveOne) {
  JobId waiting = add("q", "t", object{}, JobOptions{});
  JobId running_id = add("r", "t", object{}, JobOptions{});
  auto running = claim("r", 1);
  EXPECT_EQ(sync_wait(backend().cancel(waiting, env().now_ms())), JobState::cancelled);
  EXPECT_EQ(state_of(waiting), JobState::cancelled);
  EXPECT_EQ(count_of(counts("q"), JobState::cancelled), 1u);
  EXPECT_TRUE(claim("q", 1).empty());

  auto hb = sync_wait(backend().heartbeat({{running_id, running[0].lease.token}}, env().now_ms() + 1000));
  EXPECT_EQ(hb, std::vector<LeaseStatus>{LeaseStatus::held});
  EXPECT_EQ(sync_wait(backend().cancel(running_id, env().now_ms())), JobState::active);
  hb = sync_wait(backend().heartbeat({{running_id, running[0].lease.token}}, env().now_ms() + 1000));
  EXPECT_EQ(hb, std::vector<LeaseStatus>{LeaseStatus::cancel_requested});
  EXPECT_EQ(finish({outcome(running[0], Outcome::Kind::cancelled)}), std::vector<bool>{true});
  EXPECT_EQ(state_of(running_id), JobState::cancelled);
  EXPECT_THROW(sync_wait(backend().cancel(running_id, env().now_ms())), Conflict);
  EXPECT_THROW(sync_wait(backend().cancel(JobId::generate(env()), env().now_ms())), NotFound);
  // A cancelled job can be retried by hand.
  sync_wait(backend().retry(waiting, env().now_ms()));
  EXPECT_EQ(state_of(waiting), JobState::waiting);
}

TEST_P(Features, ProgressAndLogsNeedTheLease) {
  JobId id = add("q", "t", object{}, JobOptions{});
  auto jobs = claim("q", 1);
  LeaseRef lease{id, jobs[0].lease.token};
  EXPECT_TRUE(sync_wait(backend().set_progress(lease, "42", env().now_ms())));
  std::vector<LogLine> lines{{env().now_ms(), "one"}, {env().now_ms(), "two"}};
  EXPECT_TRUE(sync_wait(backend().append_logs(lease, lines)));
  EXPECT_EQ(sync_wait(backend().get(id))->progress, "42");
  auto stored = sync_wait(backend().logs(id, 100));
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].text, "one");
  EXPECT_EQ(stored[1].text, "two");
  auto ev = events_of(id);
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().type, EventType::progress);
  EXPECT_EQ(ev.back().detail, "");  // the value is in the job only (see EventType)
  LeaseRef stale{id, lease.token + 1};
  EXPECT_FALSE(sync_wait(backend().set_progress(stale, "50", env().now_ms())));
  EXPECT_FALSE(sync_wait(backend().append_logs(stale, lines)));
  EXPECT_EQ(sync_wait(backend().logs(id, 100)).size(), 2u);
  EXPECT_THROW(sync_wait(backend().logs(id, 0)), InvalidArgument);
  sync_wait(backend().finish({completed(jobs[0], "1")}));
  sync_wait(backend().remove(id));
  EXPECT_TRUE(sync_wait(backend().logs(id, 100)).empty());
}

// ----- flows -----

std::vector<FlowNode> small_flow(ChildFailure second_child) {
  std::vector<FlowNode> nodes(3);
  nodes[0] = {"root", "", "parents", "assemble", object{{"n", 0}}, {}, ChildFailure::fail_parent};
  nodes[1] = {"a", "root", "kids", "part", object{{"n", 1}}, {}, ChildFailure::fail_parent};
  nodes[2] = {"b", "root", "other-kids", "part", object{{"n", 2}}, {}, second_child};
  return nodes;
}

TEST_P(Features, FlowParentWaitsForEveryChildThenSeesTheirResults) {
  auto ids = sync_wait(client()->add_flow(small_flow(ChildFailure::fail_parent)));
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(state_of(ids[0]), JobState::waiting_children);
  EXPECT_EQ(count_of(counts("parents"), JobState::waiting_children), 1u);
  EXPECT_TRUE(claim("parents", 1).empty());
  auto a = claim("kids", 1);
  auto b = claim("other-kids", 1);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].parent, ids[0]);
  finish({completed(a[0], "\"A\"")});
  EXPECT_EQ(state_of(ids[0]), JobState::waiting_children);
  EXPECT_EQ(sync_wait(backend().get(ids[0]))->pending_children, 1);
  finish({completed(b[0], "\"B\"")});
  EXPECT_EQ(state_of(ids[0]), JobState::waiting);
  auto parent = claim("parents", 1);
  ASSERT_EQ(parent.size(), 1u);
  EXPECT_EQ(parent[0].children, 2);
  auto kids = sync_wait(backend().children(ids[0]));
  ASSERT_EQ(kids.size(), 2u);
  EXPECT_EQ(kids[0].result, "\"A\"");
  EXPECT_EQ(kids[1].result, "\"B\"");
}

TEST_P(Features, AFailingChildFailsIgnoresOrHoldsItsParentAsChosen) {
  for (ChildFailure policy : {ChildFailure::fail_parent, ChildFailure::ignore, ChildFailure::wait}) {
    auto ids = sync_wait(client()->add_flow(small_flow(policy)));
    auto a = claim("kids", 1);
    auto b = claim("other-kids", 1);
    finish({completed(a[0], "1")});
    finish({outcome(b[0], Outcome::Kind::dead)});
    auto parent = sync_wait(client()->get(ids[0]));
    switch (policy) {
      case ChildFailure::fail_parent:
        EXPECT_EQ(parent->state, JobState::dead);
        EXPECT_NE(parent->error.find(ids[2].str()), std::string::npos) << parent->error;
        break;
      case ChildFailure::ignore: EXPECT_EQ(parent->state, JobState::waiting); break;
      case ChildFailure::wait:
        EXPECT_EQ(parent->state, JobState::waiting_children);
        // Retried by hand, the child completes and the parent runs.
        sync_wait(backend().retry(ids[2], env().now_ms()));
        b = claim("other-kids", 1);
        finish({completed(b[0], "2")});
        EXPECT_EQ(state_of(ids[0]), JobState::waiting);
        break;
    }
    sync_wait(backend().obliterate("parents", true));
    sync_wait(backend().obliterate("kids", true));
    sync_wait(backend().obliterate("other-kids", true));
  }
}

TEST_P(Features, NestedFlowFailurePropagatesUpAndRemovalTakesPendingChildren) {
  Queue q(client(), "top");
  FlowJob root;
  root.task = "root";
  FlowJob mid;
  mid.task = "mid";
  mid.queue = "mid";
  FlowJob leaf;
  leaf.task = "leaf";
  leaf.queue = "leaf";
  mid.children.push_back(leaf);
  root.children.push_back(mid);
  auto ids = sync_wait(q.add_flow(root));
  ASSERT_EQ(ids.all.size(), 3u);
  EXPECT_EQ(state_of(ids.all[1]), JobState::waiting_children);
  auto l = claim("leaf", 1);
  finish({outcome(l[0], Outcome::Kind::dead)});
  EXPECT_EQ(state_of(ids.all[1]), JobState::dead);
  EXPECT_EQ(state_of(ids.root), JobState::dead);

  auto again = sync_wait(q.add_flow(root));
  auto running = claim("leaf", 1);
  EXPECT_THROW(sync_wait(backend().remove(again.root)), Conflict);  // a descendant is active
  finish({completed(running[0], "1")});
  sync_wait(backend().remove(again.root));
  EXPECT_FALSE(sync_wait(backend().get(again.root)));
  EXPECT_FALSE(sync_wait(backend().get(again.all[1])));  // pending child went too
  EXPECT_TRUE(sync_wait(backend().get(again.all[2])));   // the completed one stays
}

TEST_P(Features, BadFlowsAreRefusedNamingTheProblemAndWriteNothing) {
  auto refused = [&](std::vector<FlowNode> nodes, const std::string& needle) {
    try {
      sync_wait(client()->add_flow(std::move(nodes)));
      ADD_FAILURE() << "accepted a flow that should fail with: " << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto cycle = small_flow(ChildFailure::fail_parent);
  cycle[0].parent = "b";  // root -> b -> root, no root left
  refused(cycle, "no root");
  auto loop = small_flow(ChildFailure::fail_parent);
  loop[1].parent = "b";
  loop[2].parent = "a";
  refused(loop, "cycle");
  auto unknown = small_flow(ChildFailure::fail_parent);
  unknown[1].parent = "nobody";
  refused(unknown, "unknown parent 'nobody'");
  auto dup = small_flow(ChildFailure::fail_parent);
  dup[2].ref = "a";
  refused(dup, "used twice");
  auto bad_queue = small_flow(ChildFailure::fail_parent);
  bad_queue[2].queue = "no such/queue";
  refused(bad_queue, "queue name");
  EXPECT_TRUE(sync_wait(backend().queues()).empty());
}

// ----- housekeeping -----

TEST_P(Features, CleanRemovesOldJobsOfOneStateInBatches) {
  std::vector<JobId> done;
  for (int i = 0; i < 5; ++i) done.push_back(add("q", "t", object{{"i", i}}, JobOptions{}));
  auto jobs = claim("q", 5);
  for (auto& j : jobs) {
    finish({completed(j, "1")});
    env().advance(10);
  }
  JobId waiting = add("q", "t", object{}, JobOptions{});
  // Finished at t0, t0+10, ... t0+40; now is t0+50. Older than 25 ms: 3.
  auto removed = sync_wait(backend().clean("q", JobState::completed, env().now_ms() - 25, 2));
  EXPECT_EQ(removed, (std::vector<JobId>{done[0], done[1]}));
  Queue q(client(), "q");
  removed = sync_wait(q.clean(JobState::completed, 25));
  EXPECT_EQ(removed, (std::vector<JobId>{done[2]}));
  EXPECT_EQ(count_of(counts("q"), JobState::completed), 2u);
  EXPECT_EQ(state_of(waiting), JobState::waiting);
  EXPECT_THROW(sync_wait(backend().clean("q", JobState::active, 0, 10)), InvalidArgument);
  EXPECT_THROW(sync_wait(backend().clean("q", JobState::completed, 0, 0)), InvalidArgument);
}

TEST_P(Features, DrainEmptiesTheBacklogAndObliterateEverything) {
  for (int i = 0; i < 3; ++i) add("q", "t", object{}, JobOptions{});
  JobOptions later;
  later.delay_ms = 1000;
  add("q", "t", object{}, later);
  JobId active = add("q", "t", object{}, JobOptions{});
  (void)active;
  auto running = claim("q", 1);
  EXPECT_EQ(sync_wait(backend().drain("q")), 4u);  // 3 waiting + 1 delayed
  auto c = counts("q");
  EXPECT_EQ(count_of(c, JobState::waiting) + count_of(c, JobState::delayed), 0u);
  EXPECT_EQ(count_of(c, JobState::active), 1u);
  sync_wait(backend().set_rate_limit("q", RateLimit{5, 1000}));
  EXPECT_THROW(sync_wait(backend().obliterate("q", false)), Conflict);
  EXPECT_EQ(sync_wait(backend().obliterate("q", true)), 1u);
  EXPECT_TRUE(sync_wait(backend().queues()).empty());
  EXPECT_EQ(sync_wait(backend().rate_limit("q")).max, 0);
  EXPECT_EQ(finish({completed(running[0], "1")}), std::vector<bool>{false});
}

// ----- global rate limit -----

TEST_P(Features, RateLimitCapsJobsPerWindowAcrossClaimers) {
  for (int i = 0; i < 10; ++i) add("q", "t", object{{"i", i}}, JobOptions{});
  sync_wait(backend().set_rate_limit("q", RateLimit{3, 1000}));
  EXPECT_EQ(sync_wait(backend().rate_limit("q")).max, 3);
  auto first = claim("q", 10, 30000, "w1");
  EXPECT_EQ(first.size(), 3u);
  EXPECT_TRUE(claim("q", 10, 30000, "w2").empty());
  EXPECT_EQ(sync_wait(backend().rate_limited_until("q", env().now_ms())), env().now_ms() + 1000);
  env().advance(100);
  for (auto& j : first) finish({completed(j, "1")});
  // Finished at +100: the slots free at +1100.
  env().advance(999);
  EXPECT_TRUE(claim("q", 10, 30000, "w2").empty());
  EXPECT_EQ(sync_wait(backend().rate_limited_until("q", env().now_ms())), env().now_ms() + 1);
  env().advance(1);
  EXPECT_EQ(sync_wait(backend().rate_limited_until("q", env().now_ms())), 0);
  EXPECT_EQ(claim("q", 10, 30000, "w2").size(), 3u);
  sync_wait(backend().set_rate_limit("q", RateLimit{0, 1000}));
  EXPECT_EQ(claim("q", 10).size(), 4u);
  EXPECT_EQ(sync_wait(backend().rate_limited_until("q", env().now_ms())), 0);
  EXPECT_THROW(sync_wait(backend().set_rate_limit("q", RateLimit{-1, 1000})), InvalidArgument);
  EXPECT_THROW(sync_wait(backend().set_rate_limit("q", RateLimit{5, 0})), InvalidArgument);
}

// ----- per-group rate limits -----

JobOptions in_group(std::string g) {
  JobOptions o;
  o.group = std::move(g);
  return o;
}

std::vector<std::string> groups_of(const std::vector<Job>& jobs) {
  std::vector<std::string> out;
  for (const auto& j : jobs) out.push_back(j.options.group);
  return out;
}

std::vector<JobId> ids_of(const std::vector<Job>& jobs) {
  std::vector<JobId> out;
  for (const auto& j : jobs) out.push_back(j.id);
  return out;
}

class GroupLimits : public Features {
 protected:
  std::int64_t until() { return sync_wait(backend().rate_limited_until("q", env().now_ms())); }
  // `n` jobs of `group` in one batch.
  void add_many(const std::string& group, int n) {
    Queue q(client(), "q");
    std::vector<NewJob> jobs(static_cast<std::size_t>(n));
    for (auto& j : jobs) {
      j.task = "t";
      j.payload = object{};
      j.options.group = group;
    }
    sync_wait(q.add_bulk(std::move(jobs)));
  }
};

TEST_P(GroupLimits, EachGroupGetsItsOwnLimit) {
  for (int i = 0; i < 4; ++i) {
    add("q", "t", object{{"i", i}}, in_group("a"));
    add("q", "t", object{{"i", i}}, in_group("b"));
  }
  sync_wait(backend().set_rate_limit("q", RateLimit{2, 1000, true}));
  RateLimit l = sync_wait(backend().rate_limit("q"));
  EXPECT_EQ(l.max, 2);
  EXPECT_EQ(l.interval_ms, 1000);
  EXPECT_TRUE(l.per_group);
  auto first = claim("q", 10, 30000, "w1");
  EXPECT_EQ(groups_of(first), (std::vector<std::string>{"a", "b", "a", "b"}));
  EXPECT_TRUE(claim("q", 10, 30000, "w2").empty());
  EXPECT_EQ(until(), env().now_ms() + 1000);
  env().advance(100);
  for (auto& j : first) finish({completed(j, "1")});
  // Finished at +100: each group's slots free at +1100.
  env().advance(999);
  EXPECT_TRUE(claim("q", 10, 30000, "w2").empty());
  EXPECT_EQ(until(), env().now_ms() + 1);
  env().advance(1);
  EXPECT_EQ(until(), 0);
  auto second = claim("q", 10, 30000, "w2");
  EXPECT_EQ(groups_of(second), (std::vector<std::string>{"a", "b", "a", "b"}));
  auto stored = sync_wait(backend().get(second[0].id));
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->options.group, "a");
}

// One busy group with a backlog longer than a claim reads of the claim order
// (the SQLite claim then turns to the groups' heads) does not hold back the
// others, and the others still come in claim order.
TEST_P(GroupLimits, ABusyGroupDoesNotHoldBackTheOthers) {
  sync_wait(backend().set_rate_limit("q", RateLimit{2, 1000, true}));
  add_many("hot", 300);
  JobId c1 = add("q", "t", object{}, in_group("cold"));
  JobId d1 = add("q", "t", object{}, in_group("d"));
  JobId c2 = add("q", "t", object{}, in_group("cold"));
  JobId c3 = add("q", "t", object{}, in_group("cold"));
  JobId plain = add("q", "t", object{}, JobOptions{});
  auto hot = claim("q", 2);
  EXPECT_EQ(groups_of(hot), (std::vector<std::string>{"hot", "hot"}));
  auto rest = claim("q", 10);
  EXPECT_EQ(ids_of(rest), (std::vector<JobId>{c1, d1, c2, plain}));
  EXPECT_TRUE(claim("q", 10).empty());
  EXPECT_EQ(until(), env().now_ms() + 1000);
  // A group never seen runs at once, behind 298 limited jobs.
  JobId fresh = add("q", "t", object{}, in_group("new"));
  EXPECT_EQ(until(), 0);
  EXPECT_EQ(ids_of(claim("q", 10)), std::vector<JobId>{fresh});
  // The same from the head of the claim order: a higher priority.
  JobOptions urgent = in_group("urgent");
  urgent.priority = -1;
  JobId first = add("q", "t", object{}, urgent);
  EXPECT_EQ(ids_of(claim("q", 10)), std::vector<JobId>{first});
  EXPECT_EQ(state_of(c3), JobState::waiting);
  EXPECT_EQ(count_of(counts("q"), JobState::waiting), 299u);
}

TEST_P(GroupLimits, JobsWithoutAGroupShareOne) {
  sync_wait(backend().set_rate_limit("q", RateLimit{2, 1000, true}));
  for (int i = 0; i < 3; ++i) add("q", "t", object{}, JobOptions{});
  add("q", "t", object{}, in_group("g"));
  EXPECT_EQ(groups_of(claim("q", 10)), (std::vector<std::string>{"", "", "g"}));
  EXPECT_EQ(count_of(counts("q"), JobState::waiting), 1u);
}

TEST_P(GroupLimits, PerQueueModeIgnoresGroups) {
  sync_wait(backend().set_rate_limit("q", RateLimit{3, 1000}));
  EXPECT_FALSE(sync_wait(backend().rate_limit("q")).per_group);
  for (int i = 0; i < 3; ++i) {
    add("q", "t", object{}, in_group("a"));
    add("q", "t", object{}, in_group("b"));
  }
  EXPECT_EQ(claim("q", 10).size(), 3u);
  EXPECT_TRUE(claim("q", 10).empty());
}

// Jobs running or finished within the window count in either mode, so
// switching does not let a burst through.
TEST_P(GroupLimits, SwitchingModesCountsTheSameJobs) {
  for (int i = 0; i < 4; ++i) add("q", "t", object{}, in_group("a"));
  for (int i = 0; i < 4; ++i) add("q", "t", object{}, in_group("b"));
  sync_wait(backend().set_rate_limit("q", RateLimit{2, 1000}));
  auto a = claim("q", 10);
  EXPECT_EQ(groups_of(a), (std::vector<std::string>{"a", "a"}));
  sync_wait(backend().set_rate_limit("q", RateLimit{2, 1000, true}));
  auto b = claim("q", 10);
  EXPECT_EQ(groups_of(b), (std::vector<std::string>{"b", "b"}));
  for (auto& j : a) finish({completed(j, "1")});
  EXPECT_TRUE(claim("q", 10).empty());  // a's finishes hold its slots
  sync_wait(backend().set_rate_limit("q", RateLimit{3, 1000}));
  EXPECT_TRUE(claim("q", 10).empty());  // 2 active + 2 finished >= 3
  sync_wait(backend().set_rate_limit("q", RateLimit{0, 1000, true}));
  EXPECT_FALSE(sync_wait(backend().rate_limit("q")).per_group);
  EXPECT_EQ(claim("q", 10).size(), 4u);
}

TEST_P(GroupLimits, StalledAndExpiredJobsAndDueDelayedOnes) {
  sync_wait(backend().set_rate_limit("q", RateLimit{1, 1000, true}));
  // A stalled job's slot is held until an interval after the reclaim.
  JobId stalled = add("q", "t", object{}, in_group("s"));
  ASSERT_EQ(claim("q", 1, 100).size(), 1u);
  env().advance(200);
  auto r = sync_wait(backend().reclaim_expired(env().now_ms(), 5));
  EXPECT_EQ(r.requeued, std::vector<JobId>{stalled});
  EXPECT_TRUE(claim("q", 10).empty());
  env().advance(1000);
  EXPECT_EQ(ids_of(claim("q", 10)), std::vector<JobId>{stalled});
  // A job past its TTL is expired on the way and takes no slot.
  JobOptions short_lived = in_group("t");
  short_lived.ttl_ms = 100;
  JobId gone = add("q", "t", object{}, short_lived);
  JobId kept = add("q", "t", object{}, in_group("t"));
  // A delayed job joins its group when due.
  JobOptions later = in_group("d");
  later.delay_ms = 100;
  JobId delayed = add("q", "t", object{}, later);
  env().advance(100);
  EXPECT_EQ(ids_of(claim("q", 10)), (std::vector<JobId>{kept, delayed}));
  EXPECT_EQ(state_of(gone), JobState::expired);
}

TEST_P(GroupLimits, WaitUntilIsZeroWhileSomeWaitingGroupHasASlot) {
  sync_wait(backend().set_rate_limit("q", RateLimit{1, 1000, true}));
  add("q", "t", object{}, in_group("a"));
  ASSERT_EQ(claim("q", 10).size(), 1u);
  EXPECT_EQ(until(), 0);  // nothing waits
  add("q", "t", object{}, in_group("a"));
  EXPECT_EQ(until(), env().now_ms() + 1000);
  add("q", "t", object{}, in_group("b"));
  EXPECT_EQ(until(), 0);
}

TEST_P(GroupLimits, BadGroupKeyOrLimitIsRefusedAndWritesNothing) {
  JobOptions o = in_group(std::string(257, 'g'));
  try {
    add("q", "t", object{}, o);
    FAIL() << "accepted a 257-byte group key";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("group key"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(sync_wait(backend().queues()).empty());
  o.group.resize(256);
  JobId ok = add("q", "t", object{}, o);
  EXPECT_EQ(sync_wait(backend().get(ok))->options.group, o.group);

  sync_wait(backend().set_rate_limit("q", RateLimit{5, 1000, true}));
  try {
    sync_wait(backend().set_rate_limit("q", RateLimit{-1, 1000, true}));
    FAIL() << "accepted a negative max";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("max"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sync_wait(backend().set_rate_limit("q", RateLimit{5, 0, false})), InvalidArgument);
  RateLimit l = sync_wait(backend().rate_limit("q"));
  EXPECT_EQ(l.max, 5);
  EXPECT_TRUE(l.per_group);
}

TEST_P(GroupLimits, RepeatableKeepsTheGroupOfItsJobs) {
  Repeatable r = every("q", "tick", "t", 1000);
  r.options.group = "tenant-7";
  sync_wait(backend().upsert_repeatable(r));
  auto all = sync_wait(backend().repeatables("q"));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].options.group, "tenant-7");
}

INSTANTIATE_TEST_SUITE_P(AllBackends, GroupLimits, all_backends(), backend_name);

// ----- repeatables -----

TEST_P(Features, ARepeatableTickFiresExactlyOnce) {
  Repeatable r = every("cron", "nightly", "report", 60'000);
  sync_wait(backend().upsert_repeatable(r));
  auto list = sync_wait(backend().repeatables(""));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "nightly");
  EXPECT_EQ(list[0].every_ms, 60'000);
  Job a = make_job("cron", "report");
  Job b = make_job("cron", "report");
  std::int64_t tick = r.next_fire_ms;
  EXPECT_TRUE(sync_wait(backend().fire_repeatable("cron", "nightly", tick, tick + 60'000, a)));
  EXPECT_FALSE(sync_wait(backend().fire_repeatable("cron", "nightly", tick, tick + 60'000, b)));
  EXPECT_EQ(count_of(counts("cron"), JobState::waiting), 1u);
  EXPECT_EQ(sync_wait(backend().repeatables("cron"))[0].next_fire_ms, tick + 60'000);
  sync_wait(backend().set_repeatable_paused("cron", "nightly", true, 0));
  EXPECT_FALSE(sync_wait(
      backend().fire_repeatable("cron", "nightly", tick + 60'000, tick + 120'000, b)));
  EXPECT_TRUE(sync_wait(backend().repeatables("cron"))[0].paused);
  // Pausing leaves the next fire time alone; resuming sets it in the same write.
  EXPECT_EQ(sync_wait(backend().repeatables("cron"))[0].next_fire_ms, tick + 60'000);
  sync_wait(backend().set_repeatable_paused("cron", "nightly", false, tick + 300'000));
  EXPECT_FALSE(sync_wait(backend().repeatables("cron"))[0].paused);
  EXPECT_EQ(sync_wait(backend().repeatables("cron"))[0].next_fire_ms, tick + 300'000);
  sync_wait(backend().remove_repeatable("cron", "nightly"));
  EXPECT_TRUE(sync_wait(backend().repeatables("")).empty());
  EXPECT_THROW(sync_wait(backend().remove_repeatable("cron", "nightly")), NotFound);
  EXPECT_THROW(sync_wait(backend().set_repeatable_paused("cron", "nightly", false, 0)), NotFound);
}

// ----- events -----

TEST_P(Features, EventLogFollowsEachTransitionInOrder) {
  JobOptions retry;
  retry.attempts = 2;
  JobId id = add("q", "t", object{}, retry);
  auto jobs = claim("q", 1);
  Outcome again = outcome(jobs[0], Outcome::Kind::retry);
  again.run_at_ms = env().now_ms();
  finish({again});
  jobs = claim("q", 1);
  finish({completed(jobs[0], "1")});
  // The retry's promotion (failed -> waiting, by the claim) is an event too.
  EXPECT_EQ(types_of(id), (std::vector<EventType>{EventType::waiting, EventType::active,
                                                  EventType::failed, EventType::waiting,
                                                  EventType::active, EventType::completed}));
  auto all = sync_wait(backend().read_events(0, 100)).events;
  ASSERT_EQ(all.size(), 6u);
  for (std::size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].seq, all[i].seq);
  EXPECT_EQ(all[2].detail, "1");  // the failed attempt's number
  auto after = sync_wait(backend().read_events(all[2].seq, 100)).events;
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0].seq, all[3].seq);
  auto newest_page = sync_wait(backend().read_events(-1, 2));
  EXPECT_EQ(newest_page.last_seq, all.back().seq);
  auto newest = newest_page.events;
  ASSERT_EQ(newest.size(), 2u);
  EXPECT_EQ(newest[1].seq, all[5].seq);
  EXPECT_EQ(newest[0].seq, all[4].seq);
  EXPECT_TRUE(sync_wait(backend().read_events(all[5].seq, 100)).events.empty());
  EXPECT_EQ(sync_wait(backend().read_events(all[5].seq, 100)).last_seq, -1);
  EXPECT_THROW(sync_wait(backend().read_events(0, 0)), InvalidArgument);
}

// Past kEventRetention events the log drops its oldest, never the newest,
// and what it keeps still reads in order without gaps, from any cursor.
TEST_P(Features, EventLogPastItsRetentionKeepsTheNewestInOrder) {
  const std::size_t total = static_cast<std::size_t>(kEventRetention) + 1500;
  std::vector<JobId> ids;
  for (std::size_t done = 0; done < total;) {
    std::vector<Job> batch;
    for (std::size_t k = 0; k < 1000 && done < total; ++k, ++done) {
      batch.push_back(make_job(done % 2 ? "odd" : "even", "t"));
      ids.push_back(batch.back().id);
    }
    sync_wait(backend().enqueue(std::move(batch)));
  }
  auto newest = sync_wait(backend().read_events(-1, 3)).events;
  ASSERT_EQ(newest.size(), 3u);
  EXPECT_EQ(newest[2].job, ids.back());
  EXPECT_EQ(newest[2].queue, (total - 1) % 2 ? "odd" : "even");
  EXPECT_EQ(newest[0].job, ids[total - 3]);
  // From the start: pages run on in seq order, one waiting event per job
  // in the order added, none missing, to the newest. The contract keeps at
  // least kEventRetention; when older ones go is the backend's choice (the
  // memory ring drops them at once, SQLite trims in the background).
  auto page = sync_wait(backend().read_events(0, 10000));
  ASSERT_FALSE(page.events.empty());
  auto at = std::find(ids.begin(), ids.end(), page.events.front().job);
  ASSERT_NE(at, ids.end());
  std::int64_t last_seq = -1;
  std::size_t read = 0;
  while (!page.events.empty()) {
    for (const Event& e : page.events) {
      ASSERT_GT(e.seq, last_seq);
      ASSERT_NE(at, ids.end());
      ASSERT_EQ(e.job, *at) << "event " << read << " of those kept";
      last_seq = e.seq;
      ++at;
      ++read;
    }
    page = sync_wait(backend().read_events(page.last_seq, 10000));
  }
  EXPECT_EQ(at, ids.end());
  EXPECT_EQ(last_seq, newest[2].seq);
  EXPECT_GE(read, static_cast<std::size_t>(kEventRetention));
}

TEST_P(Features, PromotionOfADueJobRecordsAWaitingEvent) {
  JobOptions soon;
  soon.delay_ms = 5'000;
  JobOptions later;
  later.delay_ms = 10'000;
  JobId a = add("q", "t", object{}, soon);
  JobId b = add("q", "t", object{}, soon);
  JobId c = add("q", "t", object{}, later);
  env().advance(4'999);
  EXPECT_EQ(sync_wait(backend().promote_due(env().now_ms())), 0u);
  EXPECT_EQ(types_of(a), std::vector<EventType>{EventType::delayed});

  env().advance(1);
  const std::int64_t due_at = env().now_ms();
  EXPECT_EQ(sync_wait(backend().promote_due(due_at)), 2u);
  for (const JobId& id : {a, b}) {
    EXPECT_EQ(types_of(id), (std::vector<EventType>{EventType::delayed, EventType::waiting}));
    const Event e = events_of(id).back();
    EXPECT_EQ(e.time_ms, due_at);
    EXPECT_EQ(e.queue, "q");
    EXPECT_EQ(e.detail, "");
  }
  EXPECT_EQ(types_of(c), std::vector<EventType>{EventType::delayed});
  EXPECT_EQ(sync_wait(backend().promote_due(due_at)), 0u);  // once only
  EXPECT_EQ(types_of(a).size(), 2u);

  // A claim promotes its queue first, in its own transaction: the event
  // comes before the claim's.
  env().advance(5'000);
  auto jobs = claim("q", 10);
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(types_of(c), (std::vector<EventType>{EventType::delayed, EventType::waiting,
                                                 EventType::active}));
  EXPECT_EQ(events_of(c)[1].time_ms, env().now_ms());

  // A failed job whose backoff passed is promoted the same way.
  Outcome again = outcome(jobs[0], Outcome::Kind::retry);
  again.run_at_ms = env().now_ms() + 1'000;
  finish({again});
  env().advance(1'000);
  EXPECT_EQ(sync_wait(backend().promote_due(env().now_ms())), 1u);
  EXPECT_EQ(types_of(jobs[0].id).back(), EventType::waiting);
  EXPECT_EQ(events_of(jobs[0].id).back().time_ms, env().now_ms());
  EXPECT_EQ(count_of(counts("q"), JobState::waiting), 1u);
}

TEST_P(Features, StateAndEventNamesRoundTrip) {
  for (int i = 0; i < kJobStateCount; ++i)
    EXPECT_EQ(static_cast<int>(parse_job_state(to_string(static_cast<JobState>(i)))), i);
  for (int i = 0; i < kEventTypeCount; ++i)
    EXPECT_EQ(static_cast<int>(parse_event_type(to_string(static_cast<EventType>(i)))), i);
  try {
    parse_job_state("finished");
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("waiting-children"), std::string::npos);
  }
  EXPECT_THROW(parse_event_type("exploded"), InvalidArgument);
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(AllBackends, Features, all_backends(), backend_name);

}  // namespace asyncmq::testing

namespace asyncmq::testing {
namespace {

// A store records events only while followed (Backend::follow_events).
class EventFollowing : public BackendConformance {
 protected:
  void SetUp() override { client_ = Client::open(GetParam().uri(dir_.path()), env_); }

  std::vector<Event> all_events() { return sync_wait(backend().read_events(0, 10000)).events; }
  std::vector<JobId> jobs_of(const std::vector<Event>& events) {
    std::vector<JobId> out;
    for (const Event& e : events) out.push_back(e.job);
    return out;
  }
};

TEST_P(EventFollowing, AnUnfollowedStoreRecordsNoEvents) {
  add("q", "t", object{}, {});
  auto jobs = claim("q", 1);
  ASSERT_EQ(jobs.size(), 1u);
  finish({completed(jobs[0], "1")});
  EXPECT_TRUE(all_events().empty());
  EXPECT_EQ(sync_wait(backend().read_events(-1, 10)).last_seq, -1);
  // The jobs themselves are as ever.
  EXPECT_EQ(count_of(counts("q"), JobState::completed), 1u);
}

TEST_P(EventFollowing, AFollowerSeesEverythingFromItsCallUntilItsLeaseEnds) {
  JobId before = add("q", "t", object{}, {});
  const std::int64_t from = sync_wait(backend().follow_events(env().now_ms() + 60'000));
  EXPECT_EQ(from, 0);  // nothing recorded yet
  auto jobs = claim("q", 1);
  ASSERT_EQ(jobs.size(), 1u);
  finish({completed(jobs[0], "1")});
  JobId during = add("q", "t", object{}, {});
  auto page = sync_wait(backend().read_events(from, 100));
  std::vector<EventType> types;
  for (const Event& e : page.events) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<EventType>{EventType::active, EventType::completed,
                                           EventType::waiting}));
  EXPECT_EQ(jobs_of(page.events), (std::vector<JobId>{before, before, during}));
  // What a later call returns is the newest seq: reading on from it gives
  // only what comes after.
  const std::int64_t newest = sync_wait(backend().follow_events(env().now_ms() + 60'000));
  EXPECT_EQ(newest, page.last_seq);
  EXPECT_TRUE(sync_wait(backend().read_events(newest, 100)).events.empty());
  // Past the lease (renewed above at +60 s), nothing more is recorded.
  env().advance(60'000);
  add("q", "t", object{}, {});
  EXPECT_TRUE(sync_wait(backend().read_events(newest, 100)).events.empty());
}

TEST_P(EventFollowing, AShorterLeaseNeverCutsALongerOne) {
  const std::int64_t t0 = env().now_ms();
  sync_wait(backend().follow_events(t0 + 10'000));
  sync_wait(backend().follow_events(t0 + 1'000));  // another follower, shorter
  env().advance(5'000);
  JobId id = add("q", "t", object{}, {});
  EXPECT_EQ(jobs_of(all_events()), (std::vector<JobId>{id}));
  env().advance(5'000);  // now t0 + 10 s: the lease is over
  add("q", "t", object{}, {});
  EXPECT_EQ(all_events().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, EventFollowing, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

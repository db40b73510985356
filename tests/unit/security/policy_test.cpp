// Policy: the role table (every role x action x queue pattern, against a
// table written out here independently of the implementation), grant
// matching, file parsing errors, live reload, denial accounting, and the
// enforcing Client (producer cannot claim, worker cannot add, viewer sees
// redacted payloads).
#include <asyncmq/client.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>
#include <asyncmq/task.hpp>
#include <asyncmq/worker.hpp>

#include "security/policy_internal.hpp"
#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>

namespace asyncmq::testing {
namespace {

Principal key(const std::string& name) {
  Principal p;
  p.kind = "apikey";
  p.name = name;
  return p;
}

void write_file(const std::string& path, const std::string& text) {
  // Through a temporary file and rename, as an editor or deploy tool would.
  std::string tmp = path + ".new";
  std::ofstream(tmp) << text;
  std::rename(tmp.c_str(), path.c_str());
}

const std::vector<Action> kAllActions = {
    Action::add,    Action::claim,  Action::complete, Action::fail,    Action::heartbeat,
    Action::pause,  Action::resume, Action::retry,    Action::clean,   Action::cancel,
    Action::remove, Action::read,   Action::keys,     Action::apikeys, Action::purge,
    Action::audit};

// The contract, written out by hand.
const std::map<std::string, std::set<std::string>> kExpected = {
    {"producer", {"add"}},
    {"worker", {"claim", "complete", "fail", "heartbeat"}},
    {"operator", {"pause", "resume", "retry", "clean", "cancel", "remove", "read"}},
    {"viewer", {"read"}},
    {"admin",
     {"add", "claim", "complete", "fail", "heartbeat", "pause", "resume", "retry", "clean",
      "cancel", "remove", "read", "keys", "apikeys", "purge", "audit"}},
};

struct PatternCase {
  std::string pattern;
  std::vector<std::pair<std::string, bool>> queues;  // queue, matches
};

const std::vector<PatternCase> kPatterns = {
    {"billing.*", {{"billing.invoices", true}, {"billing.", true}, {"billing", false}, {"emails", false}}},
    {"*", {{"billing.invoices", true}, {"emails", true}, {"x", true}}},
    {"emails", {{"emails", true}, {"emails2", false}, {"billing.emails", false}}},
    {"q?", {{"q1", true}, {"q", false}, {"q12", false}}},
};

TEST(PolicyTable, EveryRoleActionAndQueuePattern) {
  FakeEnv env;
  int checked = 0;
  for (const auto& [role, actions] : kExpected) {
    for (const auto& pc : kPatterns) {
      auto policy = Policy::parse("[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"" + role +
                                      "\"]\nqueues = [\"" + pc.pattern + "\"]\n",
                                  "test", env);
      for (Action a : kAllActions) {
        for (const auto& [queue, matches] : pc.queues) {
          bool want = matches && actions.count(std::string(to_string(a))) > 0;
          EXPECT_EQ(policy->allowed(key("p"), a, queue), want)
              << role << " " << to_string(a) << " " << pc.pattern << " " << queue;
          // Another principal gets nothing from this grant: deny by default.
          EXPECT_FALSE(policy->allowed(key("other"), a, queue));
          ++checked;
        }
      }
      for (const auto& [queue, matches] : pc.queues)
        EXPECT_EQ(policy->redacted(key("p"), queue), !(role == "admin" && matches)) << role << " " << queue;
    }
  }
  EXPECT_EQ(checked, 5 * 16 * (4 + 3 + 3 + 3));
}

TEST(PolicyTable, NamesRoundTrip) {
  for (Action a : kAllActions) EXPECT_EQ(action_from_string(to_string(a)), a);
  for (const auto& [role, _] : kExpected) {
    auto r = role_from_string(role);
    ASSERT_TRUE(r) << role;
    EXPECT_EQ(to_string(*r), role);
  }
  EXPECT_FALSE(role_from_string("root"));
  EXPECT_FALSE(action_from_string("delete"));
}

TEST(PolicyGrant, ClaimsAndPrincipalGlobs) {
  FakeEnv env;
  auto policy = Policy::parse(R"(
[[grant]]
claims = { groups = "ops" }
roles = ["operator"]
queues = ["*"]

[[grant]]
principal = "jwt:svc-*"
claims = { aud_team = "billing" }
roles = "producer"
queues = "billing.*"
)",
                              "test", env);
  Principal ops;
  ops.kind = "jwt";
  ops.name = "alice";
  ops.claims["groups"] = {"dev", "ops"};
  EXPECT_TRUE(policy->allowed(ops, Action::pause, "anything"));
  EXPECT_FALSE(policy->allowed(ops, Action::add, "anything"));

  Principal svc;
  svc.kind = "jwt";
  svc.name = "svc-invoicer";
  EXPECT_FALSE(policy->allowed(svc, Action::add, "billing.x"));  // claim missing
  svc.claims["aud_team"] = {"billing"};
  EXPECT_TRUE(policy->allowed(svc, Action::add, "billing.x"));
  EXPECT_FALSE(policy->allowed(svc, Action::add, "emails"));
  svc.kind = "apikey";  // same name, other kind: not this grant
  EXPECT_FALSE(policy->allowed(svc, Action::add, "billing.x"));
}

TEST(PolicyParse, RefusesWhatItDoesNotUnderstand) {
  FakeEnv env;
  auto refuses = [&](const std::string& text, const std::string& needle) {
    try {
      Policy::parse(text, "p.toml", env);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("p.toml"), std::string::npos) << e.what();
    }
  };
  refuses("[[grant]]\nprincipal = \"a\"\nroles = [\"root\"]\nqueues = [\"*\"]\n", "unknown role `root`");
  refuses("[[grant]]\nroles = [\"viewer\"]\nqueues = [\"*\"]\n", "needs `principal` or `claims`");
  refuses("[[grant]]\nprincipal = \"a\"\nqueues = [\"*\"]\n", "needs `roles`");
  refuses("[[grant]]\nprincipal = \"a\"\nroles = [\"viewer\"]\n", "needs `queues`");
  refuses("[[grant]]\nprincipal = \"a\"\nrole = [\"viewer\"]\nqueues = [\"*\"]\n", "unknown key `role`");
  refuses("[grantz]\n", "unknown key `grantz`");
  refuses("[[grant]]\nprincipal = \n", "p.toml:2");
  // An empty policy is valid and denies everything.
  auto empty = Policy::parse("# nothing granted\n", "p.toml", env);
  EXPECT_FALSE(empty->allowed(key("a"), Action::read, "q"));
}

TEST(PolicyReload, ChangeTakesEffectWithoutRestart) {
  TempDir dir;
  FakeEnv env;
  const std::string path = dir.file("policy.toml");
  write_file(path, "[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"producer\"]\nqueues = [\"*\"]\n");
  Policy::Options o;
  o.recheck_ms = 1000;
  auto policy = Policy::load_file(path, env, o);
  EXPECT_TRUE(policy->allowed(key("p"), Action::add, "q"));
  EXPECT_FALSE(policy->allowed(key("p"), Action::claim, "q"));

  write_file(path, "[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"worker\"]\nqueues = [\"*\"]\n");
  // Within the recheck interval the old rules may still answer...
  EXPECT_TRUE(policy->allowed(key("p"), Action::add, "q"));
  // ...after it, the new ones do.
  env.advance(1000);
  EXPECT_FALSE(policy->allowed(key("p"), Action::add, "q"));
  EXPECT_TRUE(policy->allowed(key("p"), Action::claim, "q"));

  // A broken file keeps the last good rules; reload() reports it.
  write_file(path, "[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"nonsense\"]\nqueues = [\"*\"]\n");
  env.advance(1000);
  EXPECT_TRUE(policy->allowed(key("p"), Action::claim, "q"));
  EXPECT_THROW(policy->reload(), InvalidArgument);

  // reload() applies at once, whatever the interval.
  write_file(path, "[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"viewer\"]\nqueues = [\"*\"]\n");
  policy->reload();
  EXPECT_TRUE(policy->allowed(key("p"), Action::read, "q"));
  EXPECT_FALSE(policy->allowed(key("p"), Action::claim, "q"));
}

TEST(PolicyDenial, CountsLogsAndCallsObservers) {
  FakeEnv env;
  auto policy = Policy::parse("[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"producer\"]\nqueues = [\"*\"]\n",
                              "test", env);
  std::vector<Denial> seen;
  policy->on_denial([&](const Denial& d) { seen.push_back(d); });
  policy->on_denial([](const Denial&) { throw std::runtime_error("observer failure is contained"); });
  const auto before = Policy::denials();
  policy->check(key("p"), Action::add, "emails");  // allowed: no count
  EXPECT_EQ(Policy::denials(), before);
  try {
    policy->check(key("p"), Action::claim, "emails");
    FAIL() << "not denied";
  } catch (const PermissionDenied& e) {
    EXPECT_EQ(e.kind(), errc::permission_denied);
    std::string msg = e.what();
    EXPECT_NE(msg.find("apikey:p"), std::string::npos) << msg;
    EXPECT_NE(msg.find("claim"), std::string::npos) << msg;
    EXPECT_NE(msg.find("emails"), std::string::npos) << msg;
  }
  EXPECT_EQ(Policy::denials(), before + 1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].principal, "apikey:p");
  EXPECT_EQ(seen[0].action, Action::claim);
  EXPECT_EQ(seen[0].queue, "emails");
  EXPECT_EQ(seen[0].time_ms, env.now_ms());
  EXPECT_THROW(policy->check(key("p"), Action::pause, "x"), PermissionDenied);
  EXPECT_EQ(Policy::denials(), before + 2);
  EXPECT_EQ(seen.size(), 2u);
}

TEST(PolicyGlob, Matcher) {
  using security::glob_match;
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXXbYY"));
  EXPECT_TRUE(glob_match("*.*", "a.b"));
  EXPECT_FALSE(glob_match("a", "ab"));
  // No exponential blow-up on adversarial patterns.
  EXPECT_FALSE(glob_match("*a*a*a*a*a*a*a*a*a*b", std::string(200, 'a')));
}

// ---- enforcement through a Client -------------------------------------------

class PolicyClient : public ::testing::Test {
 protected:
  PolicyClient() {
    policy_ = Policy::parse(R"(
[[grant]]
principal = "apikey:producer"
roles = ["producer"]
queues = ["emails"]

[[grant]]
principal = "apikey:worker"
roles = ["worker"]
queues = ["emails"]

[[grant]]
principal = "apikey:viewer"
roles = ["viewer"]
queues = ["*"]

[[grant]]
principal = "apikey:admin"
roles = ["admin"]
queues = ["*"]

[[grant]]
principal = "apikey:emails-admin"
roles = ["admin"]
queues = ["emails"]
)",
                            "test", env_);
    backend_ = open_backend("memory://", env_);
  }

  std::shared_ptr<Client> as(const std::string& name) {
    ClientOptions o;
    o.principal = std::make_shared<Principal>(key(name));
    o.policy = policy_;
    return std::make_shared<Client>(backend_, env_, o);
  }

  // A claim request on `queue` as worker `worker_id`, now.
  ClaimRequest claim_request(const std::string& queue, const std::string& worker_id = "w") {
    ClaimRequest req;
    req.queue = queue;
    req.worker_id = worker_id;
    req.now_ms = env_.now_ms();
    return req;
  }

  FakeEnv env_;
  std::shared_ptr<Policy> policy_;
  std::shared_ptr<Backend> backend_;
};

TEST_F(PolicyClient, ProducerAddsButCannotClaim) {
  auto c = as("producer");
  Queue q(c, "emails");
  sync_wait(q.add("send", boost::json::parse(R"({"to":"a@example.com"})")));
  ClaimRequest req = claim_request("emails");
  const auto before = Policy::denials();
  try {
    sync_wait(c->backend().claim(req));
    FAIL() << "producer claimed";
  } catch (const PermissionDenied& e) {
    EXPECT_NE(std::string(e.what()).find("apikey:producer"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("claim"), std::string::npos);
  }
  EXPECT_EQ(Policy::denials(), before + 1);
  // Nothing was claimed: the job still waits.
  EXPECT_EQ(sync_wait(backend_->counts("emails"))[static_cast<int>(JobState::waiting)], 1u);
  // And a producer may not add to a queue it has no grant for.
  Queue other(c, "billing");
  EXPECT_THROW(sync_wait(other.add("x", boost::json::object())), PermissionDenied);
}

TEST_F(PolicyClient, WorkerWhosePrincipalMayNotClaimStopsAndThrows) {
  // Retrying a refused claim cannot succeed: run() ends with the denial
  // instead of polling forever, and the job is left waiting.
  sync_wait(Queue(as("producer"), "emails").add("send", boost::json::object()));
  auto tasks = std::make_shared<TaskRegistry>();
  tasks->add("send", [](TaskContext&) -> boost::json::value { return nullptr; });
  WorkerOptions o;
  o.queues = {"emails"};
  o.blocking_threads = 1;
  Worker worker(as("producer"), tasks, o);
  boost::asio::io_context io;
  std::exception_ptr error;
  bool finished = false;
  boost::asio::co_spawn(io, worker.run(), [&](std::exception_ptr e) {
    error = e;
    finished = true;
  });
  ASSERT_TRUE(run_until(io, env_, [&] { return finished; })) << "the worker kept polling";
  ASSERT_TRUE(error);
  EXPECT_THROW(std::rethrow_exception(error), PermissionDenied);
  EXPECT_EQ(worker.stats().claimed, 0u);
  EXPECT_EQ(sync_wait(backend_->counts("emails"))[static_cast<int>(JobState::waiting)], 1u);
}

TEST(PolicyEvents, HiddenEventsStillMoveTheCursor) {
  // A subscriber that may read one queue must not stall behind a run of
  // another queue's events: the page's last_seq goes past them.
  FakeEnv env;
  auto policy = Policy::parse("[[grant]]\nprincipal = \"apikey:v\"\nroles = [\"viewer\"]\nqueues = [\"emails\"]\n",
                              "test", env);
  auto backend = open_backend("memory://", env);
  ClientOptions o;
  o.principal = std::make_shared<Principal>(key("v"));
  o.policy = policy;
  auto viewer = std::make_shared<Client>(backend, env, o);
  // A viewer of one queue may follow the store (what it reads is cut to it).
  std::int64_t after = sync_wait(viewer->backend().follow_events(env.now_ms() + 60'000));
  auto plain = std::make_shared<Client>(backend, env);
  for (int i = 0; i < 30; ++i) sync_wait(Queue(plain, "billing").add("x", boost::json::object()));
  JobId wanted = sync_wait(Queue(plain, "emails").add("send", boost::json::object()));
  std::vector<Event> seen;
  for (int reads = 0; reads < 10 && seen.empty(); ++reads) {
    EventPage page = sync_wait(viewer->backend().read_events(after, 10));
    ASSERT_GE(page.last_seq, 0) << "the cursor did not move";
    after = page.last_seq;
    seen = page.events;
  }
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].queue, "emails");
  EXPECT_EQ(seen[0].job, wanted);
}

TEST_F(PolicyClient, WorkerClaimsAndFinishesButCannotAdd) {
  sync_wait(Queue(as("producer"), "emails").add("send", boost::json::object()));
  auto c = as("worker");
  EXPECT_THROW(sync_wait(Queue(c, "emails").add("send", boost::json::object())), PermissionDenied);
  ClaimRequest req = claim_request("emails");
  auto jobs = sync_wait(c->backend().claim(req));
  ASSERT_EQ(jobs.size(), 1u);
  std::vector<LeaseRef> leases;
  leases.push_back(LeaseRef{jobs[0].id, jobs[0].lease.token});
  EXPECT_EQ(sync_wait(c->backend().heartbeat(leases, env_.now_ms() + 1000)), std::vector<LeaseStatus>{LeaseStatus::held});
  Outcome o;
  o.id = jobs[0].id;
  o.token = jobs[0].lease.token;
  o.result = c->codec().encode({"emails", o.id, Field::result}, "{}");
  o.now_ms = env_.now_ms();
  std::vector<Outcome> outcomes;
  outcomes.push_back(o);
  EXPECT_EQ(sync_wait(c->backend().finish(outcomes)), std::vector<bool>{true});
  // A worker may not pause or read.
  EXPECT_THROW(sync_wait(Queue(c, "emails").pause()), PermissionDenied);
  EXPECT_THROW(sync_wait(c->get(o.id)), PermissionDenied);
}

TEST_F(PolicyClient, ViewerSeesRedactedPayloadsAdminSeesThem) {
  auto id = sync_wait(Queue(as("producer"), "emails").add("send", boost::json::parse(R"({"secret":"s3"})")));
  auto viewer = as("viewer");
  auto job = sync_wait(viewer->get(id));
  ASSERT_TRUE(job);
  EXPECT_EQ(job->payload, kRedacted);
  auto page = sync_wait(Queue(viewer, "emails").list(JobState::waiting));
  ASSERT_EQ(page.jobs.size(), 1u);
  EXPECT_EQ(page.jobs[0].payload, kRedacted);
  EXPECT_EQ(sync_wait(viewer->queues()), std::vector<std::string>{"emails"});
  EXPECT_THROW(sync_wait(Queue(viewer, "emails").add("x", boost::json::object())), PermissionDenied);
  EXPECT_THROW(sync_wait(viewer->remove(id)), PermissionDenied);

  auto admin = sync_wait(as("admin")->get(id));
  ASSERT_TRUE(admin);
  EXPECT_EQ(boost::json::parse(admin->payload), boost::json::parse(R"({"secret":"s3"})"));
}

TEST_F(PolicyClient, QueuesListOnlyReadableOnes) {
  sync_wait(Queue(as("admin"), "billing").add("x", boost::json::object()));
  sync_wait(Queue(as("admin"), "emails").add("x", boost::json::object()));
  EXPECT_EQ(sync_wait(as("producer")->queues()), std::vector<std::string>{});
  EXPECT_EQ(sync_wait(as("viewer")->queues()), (std::vector<std::string>{"billing", "emails"}));
}

TEST_F(PolicyClient, LeasesOfJobsClaimedElsewhereAreCheckedByTheirQueue) {
  // An admin claims a billing job; the emails worker holding its lease
  // token still may not heartbeat or finish it: the decorator looks up the
  // job's queue.
  auto admin = as("admin");
  sync_wait(Queue(admin, "billing").add("x", boost::json::object()));
  ClaimRequest req = claim_request("billing", "admin");
  auto jobs = sync_wait(admin->backend().claim(req));
  ASSERT_EQ(jobs.size(), 1u);
  auto worker = as("worker");
  std::vector<LeaseRef> leases;
  leases.push_back(LeaseRef{jobs[0].id, jobs[0].lease.token});
  EXPECT_THROW(sync_wait(worker->backend().heartbeat(leases, env_.now_ms() + 1000)), PermissionDenied);
  Outcome o;
  o.id = jobs[0].id;
  o.token = jobs[0].lease.token;
  o.kind = Outcome::Kind::dead;
  o.error = "e";
  std::vector<Outcome> outcomes;
  outcomes.push_back(o);
  try {
    sync_wait(worker->backend().finish(outcomes));
    FAIL() << "finished a job of a queue it has no grant for";
  } catch (const PermissionDenied& e) {
    EXPECT_NE(std::string(e.what()).find("fail on queue 'billing'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(sync_wait(backend_->counts("billing"))[static_cast<int>(JobState::active)], 1u);
  // Maintenance calls span queues: a worker may run them, a producer not.
  EXPECT_NO_THROW(sync_wait(worker->backend().promote_due(env_.now_ms())));
  EXPECT_THROW(sync_wait(as("producer")->backend().reclaim_expired(env_.now_ms(), 3)), PermissionDenied);
}

// Key rotation's scan and rewrite and erasure's purge cross every queue:
// the admin action on all of them ("*") is needed, an admin of one queue is
// refused, and a refused purge deletes nothing.
TEST_F(PolicyClient, WholeStoreCallsNeedTheAdminActionOnEveryQueue) {
  JobOptions subject;
  subject.subject = "idx-7";
  JobId id = sync_wait(Queue(as("admin"), "emails").add("send", boost::json::object(), subject));
  std::vector<SealedRewrite> rewrites(1);
  rewrites[0].id = id;
  for (const char* who : {"emails-admin", "viewer", "worker", "producer"}) {
    auto c = as(who);
    const auto before = Policy::denials();
    try {
      sync_wait(c->backend().scan(std::nullopt, 10));
      ADD_FAILURE() << who << " scanned the store";
    } catch (const PermissionDenied& e) {
      EXPECT_NE(std::string(e.what()).find("may not keys on all queues ('*')"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW(sync_wait(c->backend().rewrite_sealed(rewrites)), PermissionDenied) << who;
    try {
      sync_wait(c->backend().purge_subject("idx-7"));
      ADD_FAILURE() << who << " purged a subject";
    } catch (const PermissionDenied& e) {
      EXPECT_NE(std::string(e.what()).find("may not purge on all queues ('*')"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(Policy::denials(), before + 3) << who;
  }
  EXPECT_TRUE(sync_wait(backend_->get(id))) << "a refused purge deleted the job";

  auto admin = as("admin");
  JobPage page = sync_wait(admin->backend().scan(std::nullopt, 10));
  ASSERT_EQ(page.jobs.size(), 1u);
  EXPECT_EQ(sync_wait(admin->backend().purge_subject("idx-7")).jobs, 1u);
  EXPECT_FALSE(sync_wait(backend_->get(id)));
}

TEST_F(PolicyClient, PrincipalAndPolicyGoTogether) {
  ClientOptions o;
  o.policy = policy_;
  EXPECT_THROW(Client(backend_, env_, o), InvalidArgument);
  ClientOptions p;
  p.principal = std::make_shared<Principal>(key("x"));
  EXPECT_THROW(Client(backend_, env_, p), InvalidArgument);
}

// The audit table holds every queue's records: only `audit` on "*" (an
// admin of every queue) reads it, or appends to it through a policed handle.
TEST_F(PolicyClient, AuditTableNeedsTheAuditRoleOnEveryQueue) {
  AuditChainLine line;
  line.seq = 1;
  line.text = "{\"seq\":1}";
  sync_wait(backend_->append_audit_chain({line}));
  for (const char* who : {"producer", "worker", "viewer"}) {
    auto c = as(who);
    const auto before = Policy::denials();
    EXPECT_THROW(sync_wait(c->backend().read_audit_chain(0, 10)), PermissionDenied) << who;
    EXPECT_THROW(sync_wait(c->backend().audit_chain_head()), PermissionDenied) << who;
    AuditChainLine next;
    next.seq = 2;
    next.text = "{\"seq\":2}";
    EXPECT_THROW(sync_wait(c->backend().append_audit_chain({next})), PermissionDenied) << who;
    EXPECT_EQ(Policy::denials(), before + 3) << who;
  }
  auto admin = as("admin");
  EXPECT_EQ(sync_wait(admin->backend().read_audit_chain(0, 10)), std::vector<AuditChainLine>{line});
  EXPECT_EQ(sync_wait(admin->backend().audit_chain_head()), 1);
  EXPECT_EQ(sync_wait(backend_->audit_chain_head()), 1);  // the refused appends stored nothing
}

// The decorator keeps the decisions that allowed; a reload (by the
// recheck or by hand) must still take effect at the next call, between a
// claim and its finish too, and each denial must still be counted.
TEST(PolicyClientReload, KeptGrantsEndWithTheRulesTheyCameFrom) {
  TempDir dir;
  FakeEnv env;
  const std::string path = dir.file("policy.toml");
  const std::string both =
      "[[grant]]\nprincipal = \"apikey:w\"\nroles = [\"producer\", \"worker\"]\nqueues = [\"emails\"]\n";
  write_file(path, both);
  Policy::Options po;
  po.recheck_ms = 1000;
  auto policy = Policy::load_file(path, env, po);
  auto backend = open_backend("memory://", env);
  ClientOptions o;
  o.principal = std::make_shared<Principal>(key("w"));
  o.policy = policy;
  auto c = std::make_shared<Client>(backend, env, o);
  Queue q(c, "emails");
  sync_wait(q.add("send", boost::json::object()));
  sync_wait(q.add("send", boost::json::object()));
  ClaimRequest req;
  req.queue = "emails";
  req.worker_id = "w";
  req.max = 1;
  req.now_ms = env.now_ms();
  auto jobs = sync_wait(c->backend().claim(req));
  ASSERT_EQ(jobs.size(), 1u);
  std::vector<Outcome> outcomes(1);
  outcomes[0].id = jobs[0].id;
  outcomes[0].token = jobs[0].lease.token;
  outcomes[0].result = c->codec().encode({"emails", jobs[0].id, Field::result}, "{}");

  // The worker role goes; adding stays.
  write_file(path, "[[grant]]\nprincipal = \"apikey:w\"\nroles = [\"producer\"]\nqueues = [\"emails\"]\n");
  env.advance(1000);
  const auto before = Policy::denials();
  EXPECT_THROW(sync_wait(c->backend().finish(outcomes)), PermissionDenied);
  EXPECT_THROW(sync_wait(c->backend().claim(req)), PermissionDenied);
  EXPECT_THROW(sync_wait(c->backend().claim(req)), PermissionDenied);
  EXPECT_EQ(Policy::denials(), before + 3);  // denials are not kept: each one counts
  EXPECT_EQ(sync_wait(backend->counts("emails"))[static_cast<int>(JobState::active)], 1u);
  sync_wait(q.add("send", boost::json::object()));

  // reload() by hand: at once, whatever the interval.
  write_file(path, both);
  policy->reload();
  EXPECT_EQ(sync_wait(c->backend().finish(outcomes)), std::vector<bool>{true});
  write_file(path, "[[grant]]\nprincipal = \"apikey:w\"\nroles = [\"viewer\"]\nqueues = [\"emails\"]\n");
  policy->reload();
  EXPECT_THROW(sync_wait(q.add("send", boost::json::object())), PermissionDenied);
  EXPECT_THROW(sync_wait(c->backend().claim(req)), PermissionDenied);
}

TEST(PolicyClientReload, GenerationMovesOnlyWhenTheRulesChange) {
  TempDir dir;
  FakeEnv env;
  const std::string path = dir.file("policy.toml");
  write_file(path, "[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"producer\"]\nqueues = [\"*\"]\n");
  Policy::Options po;
  po.recheck_ms = 1000;
  auto policy = Policy::load_file(path, env, po);
  const auto g0 = policy->generation();
  env.advance(1000);
  EXPECT_EQ(policy->generation(), g0);  // rechecked, unchanged file
  write_file(path, "[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"worker\"]\nqueues = [\"*\"]\n");
  env.advance(1000);
  const auto g1 = policy->generation();
  EXPECT_NE(g1, g0);
  write_file(path, "[[grant]]\nroles = [\"worker\"]\n");  // bad: the old rules stay
  env.advance(1000);
  EXPECT_EQ(policy->generation(), g1);
  write_file(path, "[[grant]]\nprincipal = \"apikey:p\"\nroles = [\"viewer\"]\nqueues = [\"*\"]\n");
  policy->reload();
  EXPECT_NE(policy->generation(), g1);
}

// The decorator knows the queue of a lease its own claim returned, by id
// and token together: another job's id under that token is checked by the
// other job's queue, and an outcome naming the right id with a wrong token
// leaves the lease known.
TEST_F(PolicyClient, ClaimedLeasesAreKnownByIdAndTokenTogether) {
  auto admin = as("admin");
  sync_wait(Queue(admin, "billing").add("x", boost::json::object()));
  sync_wait(Queue(admin, "emails").add("x", boost::json::object()));
  auto billing = sync_wait(admin->backend().claim(claim_request("billing", "admin")));
  ASSERT_EQ(billing.size(), 1u);
  auto worker = as("worker");
  auto emails = sync_wait(worker->backend().claim(claim_request("emails")));
  ASSERT_EQ(emails.size(), 1u);

  auto outcome = [&](const JobId& id, std::uint64_t token) {
    std::vector<Outcome> out(1);
    out[0].id = id;
    out[0].token = token;
    out[0].result = worker->codec().encode({"emails", id, Field::result}, "{}");
    out[0].now_ms = env_.now_ms();
    return out;
  };
  // The billing job under the emails lease's token: checked as billing.
  try {
    sync_wait(worker->backend().finish(outcome(billing[0].id, emails[0].lease.token)));
    FAIL() << "completed a job of a queue it has no grant for";
  } catch (const PermissionDenied& e) {
    EXPECT_NE(std::string(e.what()).find("on queue 'billing'"), std::string::npos) << e.what();
  }
  std::vector<LeaseRef> crossed(1);
  crossed[0].id = billing[0].id;
  crossed[0].token = emails[0].lease.token;
  EXPECT_THROW(sync_wait(worker->backend().heartbeat(crossed, env_.now_ms() + 1000)), PermissionDenied);
  // The emails job under a wrong token: allowed (its queue is looked up),
  // refused by the backend; the real lease still finishes.
  EXPECT_EQ(sync_wait(worker->backend().finish(outcome(emails[0].id, emails[0].lease.token + 1000))),
            std::vector<bool>{false});
  EXPECT_EQ(sync_wait(worker->backend().finish(outcome(emails[0].id, emails[0].lease.token))),
            std::vector<bool>{true});
  EXPECT_EQ(sync_wait(backend_->counts("billing"))[static_cast<int>(JobState::active)], 1u);
}

}  // namespace
}  // namespace asyncmq::testing

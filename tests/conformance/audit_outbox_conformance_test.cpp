// The audit outbox (backend.hpp "Audit outbox"), on every backend: each
// audited transition writes its entries in its own transaction, a failed or
// refused call writes none, seqs increase and are never reused, and the
// auditing decorator relays what a crashed process committed exactly once,
// also when several relayers (processes) share the store and the log.
#include <asyncmq/audit.hpp>
#include <asyncmq/task.hpp>
#include <asyncmq/worker.hpp>

#include "backend_fixture.hpp"
#include "security/audit_backend.hpp"
#include "support/thread_policy.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <thread>

namespace asyncmq::testing {
namespace {

namespace fs = std::filesystem;

class AuditOutbox : public BackendConformance {
 protected:
  // The outbox's rows, as "action|actor|job|queue|subject|detail" lines.
  std::vector<std::string> entries(Backend& b) {
    std::vector<std::string> out;
    std::int64_t last = 0;
    for (const AuditOutboxRow& r : sync_wait(b.read_audit_outbox(0, 10000))) {
      EXPECT_GT(r.seq, last);
      last = r.seq;
      EXPECT_FALSE(r.events.empty());
      for (const AuditEvent& e : r.events)
        out.push_back(e.action + "|" + e.actor + "|" + e.job + "|" + e.queue + "|" + e.subject +
                      "|" + e.detail);
    }
    return out;
  }
  std::size_t rows(Backend& b) { return sync_wait(b.read_audit_outbox(0, 10000)).size(); }

  // A backend object on one store apart from the fixture's: for SQLite a
  // new connection each time, as another process would have; for memory
  // (the store is the object) always the same object.
  std::shared_ptr<Backend> open_store() {
    if (GetParam().name != "memory") return open_backend(GetParam().uri(dir_.path()), env_);
    if (!memory_) memory_ = open_backend("memory://", env_);
    return memory_;
  }
  std::shared_ptr<Backend> memory_;

  std::shared_ptr<AuditLog> open_log(const std::string& sub = "audit") {
    fs::path d = fs::path(dir_.path()) / sub;
    if (!fs::exists(d)) {
      fs::create_directory(d);
      audit_keygen(d / "writer.key", d / "verify.key");
    }
    return AuditLog::open(AuditOptions::in_dir(d), env_);
  }
  AuditVerifyReport verify(const std::string& sub = "audit") {
    fs::path d = fs::path(dir_.path()) / sub;
    AuditVerifyOptions o;
    o.log_path = d / "audit.log";
    o.checkpoint_path = d / "checkpoints.log";
    o.verify_key_path = d / "verify.key";
    return verify_audit(o);
  }
  // Lines of the log naming `action` of job `id`, read while the relay may
  // be writing (no parse: the last line may be partial).
  std::size_t in_log(const std::string& action, const JobId& id, const std::string& sub = "audit") {
    std::ifstream in(fs::path(dir_.path()) / sub / "audit.log");
    std::string line;
    std::size_t n = 0;
    const std::string needle = "\"action\":\"" + action + "\",\"job\":\"" + id.str() + "\"";
    while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
    return n;
  }
  // (action, job) -> how many records the chain holds of it.
  std::map<std::string, int> chain(const std::string& sub = "audit") {
    std::map<std::string, int> out;
    std::ifstream in(fs::path(dir_.path()) / sub / "audit.log");
    std::string line;
    while (std::getline(in, line)) {
      auto r = audit_from_json_line(line);
      EXPECT_TRUE(r) << line;
      if (r) out[r->event.action + " " + r->event.job]++;
    }
    return out;
  }
};

TEST_P(AuditOutbox, IsEmptyUntilEnabled) {
  Job j = make_job("q", "t");
  sync_wait(backend().enqueue({j}));
  claim("q", 1);
  EXPECT_EQ(rows(backend()), 0u);
}

// What a relay reads through the backend object that wrote the rows (the
// SQLite writer keeps its committed rows for it) is what the store holds,
// read whole or in pages, and with another writer's rows in between.
TEST_P(AuditOutbox, ARowReadsTheSameFromTheWriterAndFromTheStore) {
  backend().enable_audit_outbox("tester");
  // Another process's writer, for SQLite; memory has one object per store.
  const bool memory = GetParam().name == "memory";
  auto other_store = memory ? nullptr : open_store();
  Backend& other = memory ? backend() : *other_store;
  other.enable_audit_outbox("other");
  std::vector<Job> bulk;
  for (int i = 0; i < 40; ++i) {
    Job j = make_job(i % 2 ? "qa" : "qb", "t");
    if (i % 3 == 0) j.options.subject = std::string(63, 'c') + static_cast<char>('0' + i % 10);
    if (i % 3 == 1) j.options.subject = "not-an-index-" + std::to_string(i);
    bulk.push_back(j);
  }
  sync_wait(backend().enqueue(bulk));
  for (int i = 0; i < 5; ++i) {
    sync_wait(backend().enqueue({make_job("qa", "t")}));
    if (i == 2) sync_wait(other.enqueue({make_job("qb", "t")}));  // a row not of this object
  }
  auto got = claim("qa", 10, 30000, "w1");
  ASSERT_EQ(got.size(), 10u);
  std::vector<Outcome> done;
  for (const Job& j : got) done.push_back(completed(j, "r"));
  EXPECT_EQ(finish(done), std::vector<bool>(10, true));

  auto reader = memory ? nullptr : open_store();  // reads the store itself
  const std::vector<std::string> stored = entries(memory ? backend() : *reader);
  EXPECT_EQ(stored.size(), 40u + 5u + 1u + 10u + 10u);
  // In pages of 3 through the writer: every row once, in order.
  std::vector<std::string> paged;
  std::int64_t after = 0;
  for (int pages = 0; pages < 1000; ++pages) {
    auto page = sync_wait(backend().read_audit_outbox(after, 3));
    if (page.empty()) break;
    EXPECT_LE(page.size(), 3u);
    for (const AuditOutboxRow& r : page) {
      EXPECT_GT(r.seq, after);
      after = r.seq;
      for (const AuditEvent& e : r.events)
        paged.push_back(e.action + "|" + e.actor + "|" + e.job + "|" + e.queue + "|" + e.subject +
                        "|" + e.detail);
    }
  }
  EXPECT_EQ(paged, stored);
  // And again whole: what a page took is still in the store.
  EXPECT_EQ(entries(backend()), stored);
}

TEST_P(AuditOutbox, EachTransitionWritesItsEntriesWithIt) {
  backend().enable_audit_outbox("tester");
  const std::string s(64, 'a');  // a blind index, as the sealing codec stores it
  Job a = make_job("q", "t");
  a.options.subject = s;
  Job b = make_job("q", "t");
  b.state = JobState::delayed;
  b.run_at_ms = env().now_ms() + 60'000;
  sync_wait(backend().enqueue({a, b}));
  auto got = claim("q", 5, 30000, "w1");
  ASSERT_EQ(got.size(), 1u);
  // A refused outcome (stale token) changes nothing and writes nothing.
  Outcome stale = completed(got[0], "r");
  stale.token += 1;
  EXPECT_EQ(finish({stale}), std::vector<bool>{false});
  EXPECT_EQ(finish({completed(got[0], "r")}), std::vector<bool>{true});
  sync_wait(backend().set_paused("q", true));
  sync_wait(backend().set_paused("q", false));
  EXPECT_EQ(sync_wait(backend().cancel(b.id, env().now_ms())), JobState::cancelled);
  sync_wait(backend().retry(b.id, env().now_ms()));
  // A failed call writes nothing.
  EXPECT_THROW(sync_wait(backend().remove(JobId::generate(env()))), NotFound);
  sync_wait(backend().remove(a.id));
  sync_wait(backend().set_rate_limit("q", RateLimit{5, 1000, true}));
  EXPECT_EQ(sync_wait(backend().drain("q")), 1u);

  const std::string A = a.id.str(), B = b.id.str();
  std::vector<std::string> want = {
      "added|tester|" + A + "|q|" + s + "|",
      "added|tester|" + B + "|q||delayed",
      "claimed|worker:w1|" + A + "|q|" + s + "|attempt=1",
      "completed|worker:w1|" + A + "|q|" + s + "|",
      "paused|tester||q||",
      "resumed|tester||q||",
      "cancelled|tester|" + B + "|q||",
      "retried|tester|" + B + "|q||manual",
      "removed|tester|" + A + "|q|" + s + "|",
      "rate-limited|tester||q||max=5 interval_ms=1000 per_group=true",
      "drained|tester||q||removed=1",
  };
  EXPECT_EQ(entries(backend()), want);
}

TEST_P(AuditOutbox, RetriesStallsExpiriesAndRepeatablesAreWorded) {
  backend().enable_audit_outbox("tester");
  Job a = make_job("q", "t");
  a.options.attempts = 3;
  Job e = make_job("q", "t");
  e.options.ttl_ms = 10;
  sync_wait(backend().enqueue({a}));
  auto got = claim("q", 1, 100, "w1");
  ASSERT_EQ(got.size(), 1u);
  Outcome retry{got[0].id, got[0].lease.token, Outcome::Kind::retry, "", "err", env().now_ms(),
                env().now_ms()};
  EXPECT_EQ(finish({retry}), std::vector<bool>{true});
  got = claim("q", 1, 100, "w1");
  ASSERT_EQ(got.size(), 1u);
  env().advance(200);
  ReclaimResult r = sync_wait(backend().reclaim_expired(env().now_ms(), 3));
  EXPECT_EQ(r.requeued.size(), 1u);
  e.created_ms = e.run_at_ms = env().now_ms();
  sync_wait(backend().enqueue({e}));
  env().advance(20);
  EXPECT_EQ(sync_wait(backend().expire_due(env().now_ms())).size(), 1u);
  Repeatable rep;
  rep.queue = "q";
  rep.name = "beat";
  rep.task = "t";
  rep.payload = "{}";
  rep.every_ms = 1000;
  rep.next_fire_ms = 5000;
  sync_wait(backend().upsert_repeatable(rep));
  Job tick = make_job("q", "t");
  EXPECT_TRUE(sync_wait(backend().fire_repeatable("q", "beat", 5000, 6000, tick)));
  sync_wait(backend().set_repeatable_paused("q", "beat", true, 0));
  sync_wait(backend().remove_repeatable("q", "beat"));

  const std::string A = a.id.str();
  std::vector<std::string> want = {
      "added|tester|" + A + "|q||",
      "claimed|worker:w1|" + A + "|q||attempt=1",
      "retried|worker:w1|" + A + "|q||run_at=" + std::to_string(retry.run_at_ms),
      "claimed|worker:w1|" + A + "|q||attempt=2",
      "stalled|tester|" + A + "|q||lease expired",
      "added|tester|" + e.id.str() + "|q||",
      "expired|tester|" + e.id.str() + "|q||ttl",
      "repeatable-set|tester||q||name=beat",
      "added|tester|" + tick.id.str() + "|q||repeatable=beat",
      "repeatable-paused|tester||q||name=beat",
      "repeatable-removed|tester||q||name=beat",
  };
  EXPECT_EQ(entries(backend()), want);
}

// A trim is a hint (SQLite deletes a few dozen rows at a time, or at close):
// what it must never do is let a later row take a trimmed seq, which the
// chain's cursor would read as relayed. Here the trim takes the newest row.
TEST_P(AuditOutbox, TrimmedSeqsAreNeverReused) {
  backend().enable_audit_outbox("tester");
  sync_wait(backend().enqueue({make_job("q", "t")}));
  auto first = sync_wait(backend().read_audit_outbox(0, 10));
  ASSERT_EQ(first.size(), 1u);
  backend().trim_audit_outbox(first[0].seq);
  sync_wait(backend().enqueue({make_job("q", "t")}));
  auto second = sync_wait(backend().read_audit_outbox(first[0].seq, 10));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_GT(second[0].seq, first[0].seq);
  EXPECT_TRUE(sync_wait(backend().read_audit_outbox(second[0].seq, 10)).empty());
}

// One backend object shared by Clients acting for different principals:
// each decorator's actor names its own calls.
TEST_P(AuditOutbox, EachDecoratorNamesItsActorOnASharedBackend) {
  auto store = open_store();
  auto log = open_log();
  auto ops = security::make_auditing_backend(store, log, "apikey:ops");
  auto producer = security::make_auditing_backend(store, log, "apikey:producer");
  Job a = make_job("q", "t"), b = make_job("q", "t");
  sync_wait(ops->enqueue({a}));
  sync_wait(producer->enqueue({b}));
  sync_wait(ops->set_paused("q", true));
  sync_wait(store->enqueue({make_job("q", "t")}));  // no decorator: the first actor, the default
  sync_wait(producer->set_paused("q", false));      // relays that add too
  log->close();
  std::vector<std::string> got;
  std::ifstream in(fs::path(dir_.path()) / "audit" / "audit.log");
  std::string line;
  while (std::getline(in, line)) {
    auto r = audit_from_json_line(line);
    ASSERT_TRUE(r);
    got.push_back(r->event.action + " " + r->event.actor);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"added apikey:ops", "added apikey:producer",
                                           "paused apikey:ops", "added apikey:ops",
                                           "resumed apikey:producer"}));
}

TEST_P(AuditOutbox, StoreIdIsStableAcrossOpens) {
  std::string id = backend().store_id();
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(id.find(':'), std::string::npos);
  if (GetParam().name == "sqlite") {
    EXPECT_EQ(open_store()->store_id(), id);
  }
}

// The crash window: a process committed transitions and died before its
// relay (simulated: written through the bare backend with the outbox on).
// The next auditing open relays them, once; a relay that died after the
// chain append but before the trim is not repeated.
TEST_P(AuditOutbox, CommittedButUnrelayedTransitionsReachTheChainOnce) {
  auto crashed = open_store();
  Backend& dead_proc = *crashed;
  dead_proc.enable_audit_outbox("tester");
  std::vector<Job> jobs{make_job("q", "t"), make_job("q", "t"), make_job("q", "t")};
  sync_wait(dead_proc.enqueue(jobs));
  ASSERT_EQ(sync_wait(dead_proc.claim({"q", "w1", 2, 30000, env().now_ms()})).size(), 2u);

  auto log = open_log();
  auto store = open_store();
  auto audited = security::make_auditing_backend(store, log, "tester");  // relays on open
  auto c = chain();
  EXPECT_EQ(c.size(), 5u);
  for (const Job& j : jobs) EXPECT_EQ(c["added " + j.id.str()], 1) << j.id.str();

  // Died between the chain append and the trim: the rows are still there.
  Job late = make_job("q", "t");
  sync_wait(dead_proc.enqueue({late}));
  auto rows = sync_wait(dead_proc.read_audit_outbox(0, 10000));
  log->append_outbox(dead_proc.store_id(), rows);  // no trim
  auto again = security::make_auditing_backend(open_store(), log, "tester");
  sync_wait(again->enqueue({make_job("q", "t")}));
  log->close();
  c = chain();
  EXPECT_EQ(c["added " + late.id.str()], 1);
  for (const auto& [what, n] : c) EXPECT_EQ(n, 1) << what;
  EXPECT_EQ(c.size(), 7u);
  auto v = verify();
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
}

// Two relayers (as two processes: their own backend objects and AuditLog
// objects, one store, one log) adding concurrently: each relay also reads
// the other's rows; every add is in the chain exactly once.
TEST_P(AuditOutbox, ConcurrentRelayersShareOneChainExactlyOnce) {
  auto log_a = open_log();
  auto log_b = open_log();
  auto a = security::make_auditing_backend(open_store(), log_a, "tester");
  auto b = security::make_auditing_backend(open_store(), log_b, "tester");
  constexpr int kPerThread = 60;
  std::vector<Job> jobs_a, jobs_b;
  for (int i = 0; i < kPerThread; ++i) {
    jobs_a.push_back(make_job("q", "t"));
    jobs_b.push_back(make_job("q", "t"));
  }
  auto run = [](std::shared_ptr<Backend> d, const std::vector<Job>& jobs) {
    for (const Job& j : jobs) sync_wait(d->enqueue({j}));
  };
  std::thread ta(run, a, std::cref(jobs_a));
  std::thread tb(run, b, std::cref(jobs_b));
  ta.join();
  tb.join();
  log_a->close();
  log_b->close();
  auto c = chain();
  EXPECT_EQ(c.size(), static_cast<std::size_t>(2 * kPerThread));
  for (const auto* jobs : {&jobs_a, &jobs_b})
    for (const Job& j : *jobs) EXPECT_EQ(c["added " + j.id.str()], 1) << j.id.str();
  auto v = verify();
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
}

// The relay thread under load (make tsan runs this one): a Worker with
// several handlers in flight claims and finishes through an auditing
// decorator (those calls only start relay rounds) while another thread
// enqueues through the same decorator (each add waits for a round). Then
// the decorator goes, relaying what is left: every job's added, claimed and
// completed records are in the chain exactly once, in that order, and the
// chain verifies. Nothing sleeps; the worker's idle waits are FakeEnv time.
TEST_P(AuditOutbox, WorkerAndProducerThreadShareOneDecoratorAndEveryRecordLandsOnce) {
  constexpr int kJobs = 300;
  auto log = open_log();
  auto audited = security::make_auditing_backend(open_store(), log, "producer");
  std::weak_ptr<Backend> decorator = audited;
  auto client = std::make_shared<Client>(std::move(audited), env());
  auto tasks = std::make_shared<TaskRegistry>();
  tasks->add("inline", [](TaskContext&) -> boost::json::value { return 1; },
             TaskOptions{.blocking = false});
  tasks->add("blocking", [](TaskContext&) -> boost::json::value { return 2; });
  tasks->add("co", [](TaskContext&) -> boost::asio::awaitable<boost::json::value> { co_return 3; });

  std::vector<JobId> ids(kJobs);
  std::string producer_error;
  std::thread producer([&] {
    try {
      Queue q(client, "q");
      static const char* const kTasks[] = {"inline", "blocking", "co"};
      for (int i = 0; i < kJobs; ++i)
        ids[i] = sync_wait(q.add(kTasks[i % 3], boost::json::object{{"n", i}}, {}));
    } catch (const std::exception& ex) {
      producer_error = ex.what();
    }
  });
  {
    WorkerOptions wo;
    wo.queues = {"q"};
    wo.concurrency = 8;
    wo.claim_batch = 4;
    wo.blocking_threads = 2;
    wo.lease_ms = 24 * 3'600'000;  // FakeEnv time jumps while idle: no lease may lapse
    wo.id = "w1";
    Worker worker(client, tasks, wo);
    boost::asio::io_context io;
    bool finished = false;
    boost::asio::co_spawn(io, worker.run(), [&finished](std::exception_ptr e) {
      finished = true;
      if (e) std::rethrow_exception(e);
    });
    EXPECT_TRUE(run_until(io, env(), [&] { return worker.stats().completed == kJobs; }))
        << "completed " << worker.stats().completed;
    worker.stop();
    EXPECT_TRUE(run_until(io, env(), [&] { return finished; }));
    EXPECT_EQ(worker.stats().claimed, static_cast<std::uint64_t>(kJobs));
  }
  producer.join();
  ASSERT_EQ(producer_error, "");
  client.reset();  // the decorator's last owner: its destructor relays the rest
  EXPECT_TRUE(decorator.expired());
  log->close();

  std::map<std::string, std::vector<std::string>> per_job;  // job -> its actions, in chain order
  std::ifstream in(fs::path(dir_.path()) / "audit" / "audit.log");
  std::string line;
  std::size_t records = 0;
  while (std::getline(in, line)) {
    auto r = audit_from_json_line(line);
    ASSERT_TRUE(r) << line;
    per_job[r->event.job].push_back(r->event.action + " " + r->event.actor);
    ++records;
  }
  EXPECT_EQ(records, static_cast<std::size_t>(3 * kJobs));
  EXPECT_EQ(per_job.size(), static_cast<std::size_t>(kJobs));
  const std::vector<std::string> want = {"added producer", "claimed worker:w1",
                                         "completed worker:w1"};
  for (const JobId& id : ids) EXPECT_EQ(per_job[id.str()], want) << id.str();
  auto v = verify();
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
}

// A user's call (one that waits for its relay round) from a coroutine on an
// io_context that is not run until it runs out of work, but polled until
// the call returned and then destroyed at once (run_until here; a program
// that stops its loop on a signal): the relay thread must be done with that
// io_context by the time the caller resumes. Under TSan this reported
// ~io_context vs scheduler::stop() from the relay thread (the co_spawn
// completion dropped the caller's work guard there, after resuming it).
TEST_P(AuditOutbox, CallerMayDestroyItsLoopAsSoonAsAnAuditedCallReturned) {
  auto log = open_log();
  auto audited = security::make_auditing_backend(open_store(), log, "tester");
  constexpr int kCalls = 50;
  std::vector<Job> jobs;
  for (int i = 0; i < kCalls; ++i) jobs.push_back(make_job("q", "t"));
  for (const Job& job : jobs) {
    boost::asio::io_context io;
    bool returned = false;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
          std::vector<Job> one;
          one.push_back(job);
          co_await audited->enqueue(std::move(one));
          returned = true;
        },
        boost::asio::detached);
    ASSERT_TRUE(run_until(io, env(), [&] { return returned; }));
  }  // each io_context goes right after its call returned
  audited.reset();
  log->close();
  auto c = chain();
  EXPECT_EQ(c.size(), static_cast<std::size_t>(kCalls));
  for (const Job& j : jobs) EXPECT_EQ(c["added " + j.id.str()], 1) << j.id.str();
}

// The worker's rounds render their records on the renderer thread, which
// runs at SCHED_IDLE (any thread may lower itself).
TEST_P(AuditOutbox, WorkerRoundsRenderOnAnIdleRenderer) {
  ASSERT_EQ(idle_threads(), 0);
  auto log = open_log();
  {
    auto audited = security::make_auditing_backend(open_store(), log, "tester");
    EXPECT_TRUE(eventually([] { return idle_threads() == 1; }));
    std::vector<Job> jobs{make_job("q", "t"), make_job("q", "t")};
    sync_wait(audited->enqueue(jobs));
    ClaimRequest r{"q", "w1", 2, 30000, env().now_ms()};
    ASSERT_EQ(sync_wait(audited->claim(r)).size(), 2u);
    EXPECT_TRUE(eventually([&] {  // relayed, not at close
      return in_log("claimed", jobs[0].id) == 1u && in_log("claimed", jobs[1].id) == 1u;
    }));
  }
  EXPECT_EQ(idle_threads(), 0);  // the renderer went with its backend
  log->close();
  auto v = verify();
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
}

// A renderer that gets no CPU (here: its jobs are held) delays nobody: a
// caller's round renders on the relay thread, and so does a worker's round
// whose render did not start within 20 ms. The late renders change
// nothing; every record is in the chain once.
TEST_P(AuditOutbox, AStarvedRendererDelaysNeitherCallersNorTheChain) {
  std::mutex mu;
  std::vector<std::function<void()>> held;
  auto log = open_log();
  auto audited = security::make_auditing_backend(open_store(), log, "tester",
                                                 [&](std::function<void()> job) {
                                                   std::lock_guard lock(mu);
                                                   held.push_back(std::move(job));
                                                 });
  auto held_jobs = [&] {
    std::lock_guard lock(mu);
    return held.size();
  };
  std::vector<Job> jobs;
  for (int i = 0; i < 20; ++i) jobs.push_back(make_job("q", "t"));
  sync_wait(audited->enqueue(jobs));  // a caller's round: not rendered apart
  EXPECT_EQ(held_jobs(), 0u);
  for (const Job& j : jobs) EXPECT_EQ(in_log("added", j.id), 1u) << j.id.str();

  ClaimRequest r{"q", "w1", 5, 30000, env().now_ms()};
  std::vector<Job> claimed = sync_wait(audited->claim(r));  // a worker's round
  ASSERT_EQ(claimed.size(), 5u);
  EXPECT_TRUE(eventually([&] { return held_jobs() >= 1u; }));  // given to the renderer
  EXPECT_TRUE(eventually([&] {                                 // and relayed without it
    for (const Job& j : claimed)
      if (in_log("claimed", j.id) != 1u) return false;
    return true;
  }));

  Job late = make_job("q", "t");
  sync_wait(audited->enqueue({late}));  // a caller waits: not for the renderer
  EXPECT_EQ(in_log("added", late.id), 1u);

  {
    std::lock_guard lock(mu);
    for (auto& job : held) job();  // the renders finish late
    held.clear();
  }
  audited.reset();
  log->close();
  auto c = chain();
  EXPECT_EQ(c.size(), 21u + 5u);
  for (const auto& [what, n] : c) EXPECT_EQ(n, 1) << what;
  auto v = verify();
  EXPECT_TRUE(v.intact) << (v.problem ? v.problem->message : "");
}

INSTANTIATE_TEST_SUITE_P(Backends, AuditOutbox, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

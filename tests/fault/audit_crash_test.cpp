// The audit trail's crash window, with real processes and kill -9: an
// `asyncmq` process is killed (SIGKILL, through the fault-injection point
// ASYNCMQ_FAULT_KILL_BEFORE_AUDIT_RELAY in src/security/audit_backend.cpp)
// after the backend committed a transition and before any record of it
// reached the chain. Afterwards every committed transition is in the chain
// exactly once (checked against the backend's own event log, written in the
// same transactions), and `audit verify` finds the chain intact.
//
// Nothing sleeps: the test waits for processes with Process::wait_for, a
// bounded number of times.
#include <asyncmq/asyncmq.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <limits>
#include <fstream>
#include <map>
#include <set>

namespace asyncmq::testing {
namespace {

class AuditCrash : public ::testing::Test {
 protected:
  std::string uri() const { return "sqlite://" + dir_.file("queue.db"); }
  std::string audit_dir() const { return dir_.file("audit"); }
  std::string verify_key() const { return dir_.file("verify.key"); }

  std::vector<std::string> argv(std::vector<std::string> args) const {
    std::vector<std::string> a{ASYNCMQ_CLI_PATH, "--backend", uri(), "--audit-dir", audit_dir()};
    a.insert(a.end(), args.begin(), args.end());
    return a;
  }
  static ProcessOptions killed_at(int relay) {
    ProcessOptions o;
    o.env["ASYNCMQ_FAULT_KILL_BEFORE_AUDIT_RELAY"] = std::to_string(relay);
    return o;
  }

  std::uint64_t count(JobState s) {
    auto client = Client::open(uri());
    Queue q(client, "work");
    return sync_wait(q.counts())[static_cast<int>(s)];
  }

  // (action, job) -> records in the chain.
  std::map<std::pair<std::string, std::string>, int> chain() {
    std::map<std::pair<std::string, std::string>, int> out;
    std::ifstream in(audit_dir() + "/audit.log");
    std::string line;
    while (std::getline(in, line)) {
      auto r = audit_from_json_line(line);
      EXPECT_TRUE(r) << line;
      if (r && !r->event.job.empty()) out[{r->event.action, r->event.job}]++;
    }
    return out;
  }

  // (event type, job) -> events the store committed, from its event log.
  std::map<std::pair<std::string, std::string>, int> committed() {
    std::map<std::pair<std::string, std::string>, int> out;
    auto backend = open_backend(uri(), Env::system());
    std::int64_t after = 0;
    for (;;) {
      EventPage page = sync_wait(backend->read_events(after, 10000));
      if (page.events.empty()) break;
      for (const Event& e : page.events) out[{std::string(to_string(e.type)), e.job.str()}]++;
      after = page.last_seq;
    }
    return out;
  }

  TempDir dir_;
};

TEST_F(AuditCrash, KilledBetweenCommitAndChainAppendLosesAndRepeatsNothing) {
  ProcessResult kg = run_process(argv({"audit", "keygen", "--verify-key", verify_key()}));
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  // The event log is compared with the chain below: every process records.
  sync_wait(open_backend(uri(), Env::system())->follow_events(std::numeric_limits<std::int64_t>::max()));

  // A producer killed right after its add committed: the job exists, its
  // record is not in the chain yet.
  ProcessResult add = run_process(argv({"job", "add", "work", "noop"}), killed_at(1));
  ASSERT_EQ(add.signal, SIGKILL) << add.err;
  ASSERT_EQ(count(JobState::waiting), 1u);
  EXPECT_TRUE(chain().empty());
  // The next audited process relays it on open.
  ProcessResult stats = run_process(argv({"queue", "stats", "work"}));
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_EQ(chain().size(), 1u);

  constexpr int kJobs = 60;
  {
    ClientOptions co;
    co.audit = AuditLog::open(AuditOptions::in_dir(audit_dir()), Env::system());
    co.actor = "producer";
    auto client = Client::open(uri(), Env::system(), co);
    Queue q(client, "work");
    std::vector<NewJob> jobs(kJobs);
    for (auto& j : jobs) {
      j.task = "noop";
      j.payload = boost::json::object{};
    }
    ASSERT_EQ(sync_wait(q.add_bulk(std::move(jobs))).size(), static_cast<std::size_t>(kJobs));
    co.audit->close();
  }

  // Two workers share the store and the log, one after the other; the first
  // is killed at its 4th relay (after a claim or a finish committed). Short
  // leases: the survivor reclaims the dead one's jobs quickly.
  auto worker = [&](const std::string& id) {
    return argv({"worker", "--queue", "work", "--concurrency", "4", "--id", id, "--lease-ms",
                 "1000", "--heartbeat-ms", "200"});
  };
  // The survivor starts once the victim is dead: started together, a
  // survivor whose worker calls do not wait for their relays could take all
  // the jobs before the victim's fourth relay, and nothing would be killed.
  Process victim(worker("victim"), killed_at(4));
  std::optional<ProcessResult> died;
  for (int i = 0; i < 1500 && !died; ++i) {
    died = victim.wait_for(200);
  }
  ASSERT_TRUE(died) << "the victim was never killed: " << victim.err_so_far();
  ASSERT_EQ(died->signal, SIGKILL) << died->err;
  Process survivor(worker("survivor"));
  bool done = false;
  for (int i = 0; i < 1500 && !done; ++i) {
    done = count(JobState::completed) == kJobs + 1;
    if (!done) {
      ASSERT_FALSE(survivor.wait_for(200)) << "survivor exited: " << survivor.err_so_far();
    }
  }
  survivor.send_signal(SIGTERM);
  ProcessResult rs = survivor.wait();
  ASSERT_TRUE(done) << "not every job completed";
  ASSERT_EQ(rs.exit_code, 0) << rs.err;

  // Every committed transition exactly once: each job added once, claimed
  // as often as it went active, completed once, stalled as often as its
  // lease expired.
  auto events = committed();
  auto records = chain();
  std::set<std::string> jobs;
  for (const auto& [key, n] : events) jobs.insert(key.second);
  ASSERT_EQ(jobs.size(), static_cast<std::size_t>(kJobs + 1));
  auto rec = [&](const char* action, const std::string& job) { return records[{action, job}]; };
  auto ev = [&](const char* type, const std::string& job) { return events[{type, job}]; };
  int claims = 0;
  for (const std::string& job : jobs) {
    EXPECT_EQ(rec("added", job), 1) << job;
    EXPECT_EQ(rec("claimed", job), ev("active", job)) << job;
    EXPECT_EQ(rec("completed", job), 1) << job;
    EXPECT_EQ(rec("stalled", job), ev("stalled", job)) << job;
    claims += ev("active", job);
  }
  std::size_t total = 0;
  for (const auto& [key, n] : records) total += static_cast<std::size_t>(n);
  std::size_t expected = 0;
  for (const std::string& job : jobs)
    expected += 2 + static_cast<std::size_t>(ev("active", job) + ev("stalled", job));
  EXPECT_EQ(total, expected);
  EXPECT_GE(claims, kJobs + 1);

  ProcessResult v = run_process(argv({"audit", "verify", "--verify-key", verify_key()}));
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("intact"), std::string::npos) << v.out;
}

}  // namespace
}  // namespace asyncmq::testing

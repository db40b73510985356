// Tampered sealed data meets the worker, on every backend (issue 5,
// acceptance): a flipped bit in a stored payload, a payload moved from
// another job, a wrong key id and a retired (disabled) key each give the
// typed integrity error, and the job goes to dead once, with a reason
// naming the job and the key id, without its handler running and without
// retries; every other job runs normally. Time is a FakeEnv.
#include "conformance/backend_fixture.hpp"

#include "security/crypto.hpp"
#include "security/sealing_codec.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/task.hpp>
#include <asyncmq/worker.hpp>

#include <boost/asio/co_spawn.hpp>

#include <map>

namespace asyncmq::testing {
namespace {

using boost::json::object;

class TamperConformance : public BackendConformance {
 protected:
  void SetUp() override {
    ring_ = std::make_shared<Keyring>();
    ring_->add("k1", KeyState::primary, Secret(security::random_bytes(32)));
    ring_->add("k2", KeyState::decrypt_only, Secret(security::random_bytes(32)));
    ClientOptions o;
    o.codec = make_sealing_codec(ring_);
    client_ = Client::open(GetParam().uri(dir_.path()), env_, o);
    tasks_->add("t", [this](TaskContext& ctx) -> boost::json::value {
      ++runs_[ctx.job().id];
      return "done";
    }, TaskOptions{.blocking = false});
  }

  JobId add_job(int n) {
    JobOptions o;
    o.attempts = 5;  // a tampered job must not use them
    return add("q", "t", object{{"n", n}}, o);
  }

  Job stored(const JobId& id) { return *sync_wait(backend().get(id)); }

  // Replaces the stored payload of `id` (an attacker with write access).
  void set_payload(const JobId& id, std::string payload) {
    Job j = stored(id);
    SealedRewrite w;
    w.id = id;
    w.expected_payload = j.payload;
    w.expected_result = j.result;
    w.expected_error = j.error;
    w.payload = std::move(payload);
    w.result = j.result;
    w.error = j.error;
    std::vector<SealedRewrite> batch;
    batch.push_back(std::move(w));
    ASSERT_EQ(sync_wait(backend().rewrite_sealed(batch)), std::vector<bool>{true});
  }

  // Runs a worker until every job in `ids` is completed or dead.
  WorkerStats run(const std::vector<JobId>& ids) {
    WorkerOptions o;
    o.queues = {"q"};
    o.concurrency = 4;
    o.id = "w";
    o.blocking_threads = 1;
    Worker worker(client(), tasks_, o);
    boost::asio::io_context io;
    bool finished = false;
    boost::asio::co_spawn(io, worker.run(), [&](std::exception_ptr e) {
      finished = true;
      if (e) std::rethrow_exception(e);
    });
    auto done = [&] {
      for (const auto& id : ids) {
        JobState s = stored(id).state;
        if (s != JobState::completed && s != JobState::dead) return false;
      }
      return true;
    };
    EXPECT_TRUE(run_until(io, env(), done));
    worker.stop();
    EXPECT_TRUE(run_until(io, env(), [&] { return finished; }));
    return worker.stats();
  }

  // The job is dead after one attempt, its handler never ran, and its
  // stored (sealed) error opens to a reason naming the job and `key`.
  void expect_dead_once(const JobId& id, const std::string& key, const std::string& why) {
    Job j = stored(id);
    EXPECT_EQ(j.state, JobState::dead) << why;
    EXPECT_EQ(j.attempts_made, 1) << why;
    EXPECT_EQ(runs_[id], 0) << why;
    std::string reason = client()->codec().decode(codec_context(j, Field::error), j.error);
    EXPECT_NE(reason.find(id.str()), std::string::npos) << reason;
    EXPECT_NE(reason.find("key '" + key + "'"), std::string::npos) << reason;
    EXPECT_NE(reason.find(why), std::string::npos) << reason;
    EXPECT_NE(reason.find("payload"), std::string::npos) << reason;
  }

  std::shared_ptr<Keyring> ring_;
  std::shared_ptr<TaskRegistry> tasks_ = std::make_shared<TaskRegistry>();
  std::map<JobId, int> runs_;
};

TEST_P(TamperConformance, FlippedBitMovedPayloadAndWrongKeyIdGoToDeadOnce) {
  std::vector<JobId> good;
  for (int i = 0; i < 3; ++i) good.push_back(add_job(i));
  JobId flipped = add_job(10);
  JobId moved = add_job(11);
  JobId wrong_id = add_job(12);
  JobId unknown_id = add_job(13);

  std::string p = stored(flipped).payload;
  p[p.size() - 20] = static_cast<char>(p[p.size() - 20] ^ 0x01);
  set_payload(flipped, p);
  set_payload(moved, stored(good[0]).payload);  // a valid envelope, of another job
  p = stored(wrong_id).payload;                 // header: 0x01, 2, 'k', '1'
  p[3] = '2';                                   // claims k2, which exists
  set_payload(wrong_id, p);
  p = stored(unknown_id).payload;
  p[3] = '9';
  set_payload(unknown_id, p);

  std::vector<JobId> all = good;
  for (const auto& id : {flipped, moved, wrong_id, unknown_id}) all.push_back(id);
  WorkerStats stats = run(all);

  for (const auto& id : good) {
    EXPECT_EQ(stored(id).state, JobState::completed);
    EXPECT_EQ(runs_[id], 1);
  }
  expect_dead_once(flipped, "k1", "authentication failed");
  expect_dead_once(moved, "k1", "authentication failed");
  expect_dead_once(wrong_id, "k2", "authentication failed");
  expect_dead_once(unknown_id, "k9", "no key with this id");
  EXPECT_EQ(stats.dead, 4u);
  EXPECT_EQ(stats.retried, 0u);
  EXPECT_EQ(stats.completed, 3u);
  // And reading one by hand gives the typed error.
  EXPECT_THROW(sync_wait(client()->get(flipped)), IntegrityError);
}

TEST_P(TamperConformance, RetiredKeyGoesToDeadOnceNamingTheKey) {
  JobId old = add_job(1);
  ring_->activate("k2");
  ring_->set_state("k1", KeyState::disabled);  // retired with a job still under it
  JobId fresh = add_job(2);
  run({old, fresh});
  expect_dead_once(old, "k1", "disabled");
  EXPECT_EQ(stored(fresh).state, JobState::completed);
  EXPECT_EQ(runs_[fresh], 1);
  EXPECT_EQ(security::sealed_key_id(stored(old).error), "k2");  // the reason is sealed too
}

INSTANTIATE_TEST_SUITE_P(AllBackends, TamperConformance, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

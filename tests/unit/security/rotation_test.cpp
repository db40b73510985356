// Key rotation: editing the key file (`keys add|activate|retire`), the
// re-seal walk with its compare-and-set against concurrent workers, the
// re-wrapping of subject keys, and the usage counts retire relies on.
#include "security/crypto.hpp"
#include "security/key_file.hpp"
#include "security/reseal.hpp"
#include "security/sealing_codec.hpp"

#include "core/forwarding_backend.hpp"

#include <asyncmq/client.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>

#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace asyncmq::testing {
namespace {

using boost::json::object;

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(KeyFileEditor, AddActivateRetireKeepCommentsAndMode) {
  TempDir dir;
  const std::string path = dir.file("keys");
  {
    security::KeyFileEditor e(path, /*create_missing=*/true);
    EXPECT_EQ(e.add("k1", 1'700'000'000'000), "k1");
    e.set_state("k1", KeyState::primary);
    e.save();
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    security::KeyFileEditor e(path, false);
    std::string id = e.add("", 1'700'000'000'000);
    EXPECT_EQ(id.rfind("k20231114-", 0), 0u) << id;
    EXPECT_THROW(e.add("k1", 0), Conflict);
    EXPECT_THROW(e.add("bad id", 0), InvalidArgument);
    auto ring = e.ring();
    EXPECT_EQ(ring->primary_id(), "k1");  // new keys are decrypt-only
    e.set_state(id, KeyState::primary);
    EXPECT_EQ(e.ring()->primary_id(), id);
    e.set_state("k1", KeyState::disabled);
    EXPECT_THROW(e.set_state("nope", KeyState::disabled), NotFound);
    e.save();
  }
  std::string text = slurp(path);
  EXPECT_EQ(text.rfind("# asyncmq keys", 0), 0u);  // the comment survives
  auto ring = Keyring::load_file(path);
  auto keys = ring->list();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].id, "k1");
  EXPECT_EQ(keys[0].state, KeyState::disabled);
  EXPECT_EQ(keys[0].created_ms, 1'700'000'000'000);
  EXPECT_EQ(keys[1].state, KeyState::primary);
  EXPECT_THROW(security::KeyFileEditor(dir.file("missing"), false), KeyFileError);
}

class Rotation : public ::testing::Test {
 protected:
  void SetUp() override {
    ring_ = std::make_shared<Keyring>();
    ring_->add("k1", KeyState::primary, Secret(security::random_bytes(32)));
    ring_->set_index_key("ix", Secret(security::random_bytes(32)));
    subjects_ = make_memory_subject_key_store();
    codec_ = std::make_shared<security::SealingCodec>(ring_, subjects_);
    ClientOptions o;
    o.codec = codec_;
    client_ = Client::open("memory://", env_, o);
  }

  JobId add(const std::string& subject = "") {
    Queue q(client_, "q");
    JobOptions o;
    o.subject = subject;
    return sync_wait(q.add("t", object{{"n", 1}}, o));
  }

  Job stored(const JobId& id) { return *sync_wait(client_->backend().get(id)); }

  // Opens every field of every stored job with a keyring holding only `key`
  // (and the index key): true if all open.
  bool all_open_with_only(const std::string& key_id) {
    auto only = std::make_shared<Keyring>();
    for (const auto& k : ring_->list())
      if (k.id == key_id) only->add(k.id, KeyState::primary, Secret(material(k.id)));
    security::SealingCodec c(only, subjects_);
    std::optional<JobId> after;
    for (;;) {
      JobPage page = sync_wait(client_->backend().scan(after, 100));
      for (Job& j : page.jobs) {
        try {
          c.decode(codec_context(j, Field::payload), j.payload);
          if (!j.result.empty()) c.decode(codec_context(j, Field::result), j.result);
        } catch (const IntegrityError& e) {
          ADD_FAILURE() << e.what();
          return false;
        }
      }
      if (!page.next) return true;
      after = page.next;
    }
  }

  // Re-creates the keyring with a k1 whose bytes the test knows.
  void use_known_k1() {
    ring_ = std::make_shared<Keyring>();
    ring_->set_index_key("ix", Secret(security::random_bytes(32)));
    add_key("k1", KeyState::primary);
    codec_ = std::make_shared<security::SealingCodec>(ring_, subjects_);
  }

  // The test keeps its own copy of key bytes to build partial rings.
  std::string material(const std::string& id) { return keys_[id]; }
  void add_key(const std::string& id, KeyState s) {
    keys_[id] = security::random_bytes(32);
    ring_->add(id, s, Secret(keys_[id]));
  }

  FakeEnv env_;
  std::shared_ptr<Keyring> ring_;
  std::shared_ptr<SubjectKeyStore> subjects_;
  std::shared_ptr<security::SealingCodec> codec_;
  std::shared_ptr<Client> client_;
  std::map<std::string, std::string> keys_;
};

TEST_F(Rotation, ResealMovesEveryJobUnderTheNewPrimary) {
  use_known_k1();
  ClientOptions o;
  o.codec = codec_;
  client_ = Client::open("memory://", env_, o);

  std::vector<JobId> ids;
  for (int i = 0; i < 25; ++i) ids.push_back(add());
  JobId with_subject = add("subject-1");
  auto usage = sync_wait(security::key_usage(client_->backend(), *codec_));
  EXPECT_EQ(usage.jobs, 26u);
  EXPECT_EQ(usage.jobs_by_key["k1"], 25u);
  EXPECT_EQ(usage.subject_jobs, 1u);
  EXPECT_EQ(usage.subject_keys_by_key["k1"], 1u);

  add_key("k2", KeyState::primary);  // k1 becomes decrypt-only
  security::ResealOptions ro;
  ro.batch = 7;
  int calls = 0;
  ro.progress = [&](const security::ResealProgress&) { ++calls; };
  auto report = sync_wait(security::reseal_all(client_->backend(), *codec_, ro));
  EXPECT_TRUE(report.complete);
  EXPECT_EQ(report.resealed, 25u);
  EXPECT_EQ(report.passes, 2);  // the second pass finds nothing left
  EXPECT_EQ(report.subject_keys.rewrapped, 1u);
  EXPECT_GT(calls, 4);

  usage = sync_wait(security::key_usage(client_->backend(), *codec_));
  EXPECT_EQ(usage.jobs_by_key.count("k1"), 0u);
  EXPECT_EQ(usage.jobs_by_key["k2"], 25u);
  EXPECT_EQ(usage.subject_keys_by_key.count("k1"), 0u);
  EXPECT_TRUE(all_open_with_only("k2"));
  EXPECT_EQ(sync_wait(client_->get(with_subject))->payload, R"({"n":1})");

  // Run again: nothing to do (resumable by rescanning).
  report = sync_wait(security::reseal_all(client_->backend(), *codec_, ro));
  EXPECT_EQ(report.resealed, 0u);
  EXPECT_EQ(report.passes, 1);
}

// A backend that lets a "worker" finish the job between the walk's read
// and its compare-and-set.
class RaceBackend : public core::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  std::function<void()> before_rewrite;
  boost::asio::awaitable<std::vector<bool>> rewrite_sealed(std::vector<SealedRewrite> w) override {
    if (before_rewrite) {
      auto f = std::move(before_rewrite);
      before_rewrite = nullptr;
      f();
    }
    co_return co_await inner().rewrite_sealed(std::move(w));
  }
};

// Makes `client` (with `codec`) use a RaceBackend over `inner`; returns it.
std::shared_ptr<RaceBackend> race_over(std::shared_ptr<Backend> inner, FakeEnv& env,
                                       std::shared_ptr<Codec> codec,
                                       std::shared_ptr<Client>& client) {
  auto race = std::make_shared<RaceBackend>(std::move(inner));
  ClientOptions o;
  o.codec = std::move(codec);
  client = std::make_shared<Client>(race, env, o);
  return race;
}

TEST_F(Rotation, CompareAndSetNeverOverwritesAWorkersResult) {
  auto inner = open_backend("memory://", env_);
  auto race = race_over(inner, env_, codec_, client_);
  JobId done_meanwhile = add();
  JobId untouched = add();
  ring_->add("k2", KeyState::primary, Secret(security::random_bytes(32)));

  std::string result_written;
  race->before_rewrite = [&] {
    // A worker claims both jobs and completes the first between the walk's
    // read and its write.
    ClaimRequest req{"q", "w", 2, 30'000, env_.now_ms()};
    auto jobs = sync_wait(inner->claim(req));
    ASSERT_EQ(jobs.size(), 2u);
    result_written = codec_->encode(codec_context(jobs[0], Field::result), "\"ok\"");
    Outcome out{jobs[0].id, jobs[0].lease.token, Outcome::Kind::completed, result_written, "", 0,
                env_.now_ms()};
    std::vector<Outcome> outs;
    outs.push_back(out);
    ASSERT_EQ(sync_wait(inner->finish(outs)), std::vector<bool>{true});
  };
  security::ResealOptions ro;
  auto report = sync_wait(security::reseal_all(*race, *codec_, ro));
  EXPECT_TRUE(report.complete);
  EXPECT_EQ(report.passes, 3);  // pass 2 re-reads the refused job, pass 3 finds nothing

  Job a = stored(done_meanwhile);
  EXPECT_EQ(a.state, JobState::completed);
  EXPECT_EQ(a.result, result_written);  // the worker's result is kept, byte for byte
  EXPECT_EQ(security::sealed_key_id(a.payload), "k2");
  Job b = stored(untouched);
  EXPECT_EQ(b.state, JobState::active);  // an active job is re-sealed but not disturbed
  EXPECT_EQ(security::sealed_key_id(b.payload), "k2");
  EXPECT_EQ(sync_wait(client_->get(done_meanwhile))->result, "\"ok\"");
}

TEST_F(Rotation, ALogLineAppendedBetweenScanAndRewriteIsCaughtByTheNextPass) {
  use_known_k1();
  auto inner = open_backend("memory://", env_);
  auto race = race_over(inner, env_, codec_, client_);
  JobId id = add();
  ClaimRequest req{"q", "w", 1, 30'000, env_.now_ms()};
  auto jobs = sync_wait(inner->claim(req));
  ASSERT_EQ(jobs.size(), 1u);
  const Job& job = jobs[0];
  // A worker that has not reloaded its keys (k1 alone) logs a line before
  // the rotation and another between the walk's read and its write.
  auto k1_only = std::make_shared<Keyring>();
  k1_only->add("k1", KeyState::primary, Secret(material("k1")));
  security::SealingCodec old_worker(k1_only, subjects_);
  auto log_line = [&](const std::string& text) {
    std::vector<LogLine> lines;
    lines.push_back(LogLine{env_.now_ms(), old_worker.encode(codec_context(job, Field::log), text)});
    ASSERT_TRUE(sync_wait(inner->append_logs(LeaseRef{id, job.lease.token}, lines)));
  };
  log_line("before the rotation");
  add_key("k2", KeyState::primary);
  race->before_rewrite = [&] { log_line("during the rewrite"); };

  std::vector<security::ResealProgress> passes;
  security::ResealOptions ro;
  ro.progress = [&](const security::ResealProgress& p) { passes.push_back(p); };
  auto report = sync_wait(security::reseal_all(*race, *codec_, ro));
  EXPECT_TRUE(report.complete);
  // Pass 1 re-sealed the job: the appended line did not make its
  // compare-and-set fail. Pass 2 found the new line under k1 and moved it;
  // pass 3 found nothing.
  ASSERT_EQ(passes.size(), 3u);
  EXPECT_EQ(passes[0].conflicts, 0u);
  EXPECT_EQ(passes[0].log_lines_scanned, 1u);
  EXPECT_EQ(passes[1].log_lines_scanned, 2u);
  EXPECT_EQ(passes[1].current, 0u);
  EXPECT_EQ(passes[2].current, 1u);
  EXPECT_EQ(report.resealed, 2u);

  auto lines = sync_wait(inner->logs(id, 100));
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& l : lines) EXPECT_EQ(security::sealed_key_id(l.text), "k2");
  auto usage = sync_wait(security::key_usage(*race, *codec_));
  EXPECT_EQ(usage.jobs_by_key.count("k1"), 0u);
  std::vector<std::string> texts;
  for (const auto& l : sync_wait(client_->logs(id, 100))) texts.push_back(l.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"before the rotation", "during the rewrite"}));
  // The job was never disturbed.
  EXPECT_EQ(stored(id).state, JobState::active);
  EXPECT_EQ(stored(id).lease.token, job.lease.token);
}

TEST_F(Rotation, UnopenableJobsAreLeftAndReported) {
  JobId id = add();
  SealedRewrite w;
  Job j = stored(id);
  w.id = id;
  w.expected_payload = j.payload;
  w.payload = j.payload;
  w.payload[w.payload.size() / 2] ^= 1;  // tampered
  ASSERT_EQ(sync_wait(client_->backend().rewrite_sealed({w})), std::vector<bool>{true});
  ring_->add("k2", KeyState::primary, Secret(security::random_bytes(32)));
  auto report = sync_wait(security::reseal_all(client_->backend(), *codec_, {}));
  EXPECT_EQ(report.resealed, 0u);
  EXPECT_EQ(report.last.unopenable, 1u);
  EXPECT_EQ(stored(id).payload, w.payload);  // left exactly as it was
  auto usage = sync_wait(security::key_usage(client_->backend(), *codec_));
  EXPECT_EQ(usage.jobs_by_key["k1"], 1u);  // so retiring k1 stays refused
}

}  // namespace
}  // namespace asyncmq::testing

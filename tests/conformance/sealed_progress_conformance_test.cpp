// A handler's progress value is sealed like its log lines (issue 5), on
// every backend: the worker seals it (Field::progress, bound to the queue,
// the job and the job's subject key) before Backend::set_progress, so the
// stored bytes hold no part of it and the `progress` event carries none;
// readers get it back equal; an envelope moved to another job or field
// fails to open, and a reader reports that for the field instead of
// failing; key rotation re-seals it and retire counts it; erasure shreds it
// with the subject's key. Time is a FakeEnv; nothing sleeps.
#include "conformance/sealing_fixture.hpp"

#include "security/reseal.hpp"

#include <asyncmq/error.hpp>

#include <string>
#include <vector>

namespace asyncmq::testing {
namespace {

using boost::json::object;

const std::string kMarker = "MARKER-progress-5e2b71-Jane-Roe";

// Every window of 8 bytes of `secret` found in `haystack`.
std::vector<std::string> windows_in(const std::string& haystack, const std::string& secret) {
  std::vector<std::string> found;
  for (std::size_t i = 0; i + 8 <= secret.size(); ++i)
    if (haystack.find(secret.substr(i, 8)) != std::string::npos) found.push_back(secret.substr(i, 8));
  return found;
}

class SealedProgress : public SealingConformance {
 protected:
  void SetUp() override {
    SealingConformance::SetUp();
    // Reports the payload's "progress" member as its progress, then ends.
    tasks->add("report", [](TaskContext& ctx) -> boost::json::value {
      ctx.progress(ctx.payload().at("progress"));
      return "done";
    }, TaskOptions{.blocking = false});
  }

  // A job whose handler reports `value`, run to completion by a worker.
  JobId run_reporting(const boost::json::value& value, const std::string& subject = "") {
    JobOptions o;
    o.subject = subject;
    JobId id = add("q", "report", object{{"progress", value}}, o);
    run_worker(options(), [&] { return state_of(id) == JobState::completed; });
    return id;
  }

  // Replaces the stored progress of `id` (an attacker with write access).
  void set_stored_progress(const JobId& id, const std::string& progress) {
    Job j = stored(id);
    SealedRewrite w;
    w.id = id;
    w.expected_payload = w.payload = j.payload;
    w.expected_result = w.result = j.result;
    w.expected_error = w.error = j.error;
    w.expected_progress = j.progress;
    w.progress = progress;
    std::vector<SealedRewrite> batch;
    batch.push_back(std::move(w));
    ASSERT_EQ(sync_wait(backend().rewrite_sealed(batch)), std::vector<bool>{true});
  }
};

TEST_P(SealedProgress, IsStoredSealedAndReadsBackEqual) {
  const object value{{"stage", "merge-stage"}, {"note", kMarker}};
  JobId plain = run_reporting(value);
  JobId with_subject = run_reporting(value, "subject-1");

  Job raw = stored(plain);
  ASSERT_FALSE(raw.progress.empty());
  EXPECT_TRUE(windows_in(raw.progress, kMarker).empty()) << "progress stored unsealed";
  EXPECT_EQ(raw.progress.find("merge-stage"), std::string::npos);
  EXPECT_EQ(security::sealed_key_id(raw.progress), "k1");
  Job raw_subject = stored(with_subject);
  ASSERT_FALSE(raw_subject.progress.empty());
  EXPECT_TRUE(windows_in(raw_subject.progress, kMarker).empty());
  // Under the subject's own data key (a version-2 envelope), like its payload.
  EXPECT_EQ(static_cast<std::uint8_t>(raw_subject.progress[0]), security::kSubjectEnvelopeVersion);

  for (const JobId& id : {plain, with_subject}) {
    auto job = sync_wait(client()->get(id));
    ASSERT_TRUE(job);
    EXPECT_EQ(boost::json::parse(job->progress), value);
    EXPECT_TRUE(job->progress_error.empty()) << job->progress_error;
    EXPECT_EQ(job->result, "\"done\"");
  }
  Queue q(client(), "q");
  auto via_queue = sync_wait(q.get(with_subject));
  ASSERT_TRUE(via_queue);
  EXPECT_EQ(boost::json::parse(via_queue->progress), value);
  auto page = sync_wait(q.list(JobState::completed));
  ASSERT_EQ(page.jobs.size(), 2u);
  for (const Job& j : page.jobs) EXPECT_EQ(boost::json::parse(j.progress), value);

  // The event log holds no copy: a progress event per job, without detail.
  int progress_events = 0;
  for (const Event& e : sync_wait(backend().read_events(0, 10000)).events) {
    EXPECT_TRUE(windows_in(e.detail, kMarker).empty()) << to_string(e.type) << ": " << e.detail;
    if (e.type != EventType::progress) continue;
    ++progress_events;
    EXPECT_EQ(e.detail, "");
  }
  EXPECT_EQ(progress_events, 2);
}

TEST_P(SealedProgress, AnEnvelopeMovedToAnotherJobOrFieldFailsToOpen) {
  JobId a = run_reporting(object{{"n", "a"}});
  JobId b = run_reporting(object{{"n", "b"}});
  const Job ra = stored(a);
  const Job rb = stored(b);
  ASSERT_NO_THROW(codec_->decode(codec_context(ra, Field::progress), ra.progress));
  EXPECT_THROW(codec_->decode(codec_context(rb, Field::progress), ra.progress), IntegrityError);
  EXPECT_THROW(codec_->decode(codec_context(ra, Field::log), ra.progress), IntegrityError);
  EXPECT_THROW(codec_->decode(codec_context(ra, Field::result), ra.progress), IntegrityError);
  EXPECT_THROW(codec_->decode(codec_context(ra, Field::progress), ra.result), IntegrityError);

  // In the store: a's progress copied over b's. Reading b does not fail: its
  // progress is reported as an integrity problem of that field, the rest of
  // the job opens.
  set_stored_progress(b, ra.progress);
  std::optional<Job> jb;
  ASSERT_NO_THROW(jb = sync_wait(client()->get(b)));
  ASSERT_TRUE(jb);
  EXPECT_EQ(jb->progress, "");
  EXPECT_NE(jb->progress_error.find(b.str()), std::string::npos) << jb->progress_error;
  EXPECT_NE(jb->progress_error.find("progress"), std::string::npos) << jb->progress_error;
  EXPECT_NE(jb->progress_error.find("failed to open"), std::string::npos) << jb->progress_error;
  EXPECT_EQ(jb->result, "\"done\"");
  EXPECT_EQ(boost::json::parse(jb->payload), (object{{"progress", object{{"n", "b"}}}}));
  // a's own result moved into its progress: refused too.
  set_stored_progress(a, ra.result);
  Queue q(client(), "q");
  std::optional<Job> ja;
  ASSERT_NO_THROW(ja = sync_wait(q.get(a)));
  EXPECT_FALSE(ja->progress_error.empty());
  // Readers of progress alone (events tail) get the same report.
  Job only = stored(b);
  EXPECT_FALSE(client()->decode_progress(only));
  EXPECT_EQ(only.progress_error, jb->progress_error);
}

TEST_P(SealedProgress, ResealMovesItToTheNewKeyAndRetireCountsIt) {
  const object value{{"step", 3}, {"note", kMarker}};
  JobId id = run_reporting(value);
  add_key("k2");  // k1 becomes decrypt-only
  // Payload and result moved under k2 by hand, progress left under k1: the
  // progress alone must keep k1 in use.
  ASSERT_NO_FATAL_FAILURE(move_payload_and_result(id));
  ASSERT_EQ(security::sealed_key_id(stored(id).payload), "k2");
  ASSERT_EQ(security::sealed_key_id(stored(id).progress), "k1");
  auto usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.jobs_by_key["k1"], 1u) << "retire would disable a key progress still needs";

  auto report = sync_wait(security::reseal_all(backend(), *codec_, {}));
  EXPECT_TRUE(report.complete);
  EXPECT_EQ(report.resealed, 1u);
  EXPECT_EQ(security::sealed_key_id(stored(id).progress), "k2");
  usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.jobs_by_key.count("k1"), 0u);
  EXPECT_EQ(usage.jobs_by_key["k2"], 1u);
  // Opens with k2 alone, equal to what the handler reported.
  Job after = stored(id);
  auto only_k2 = codec_with_only("k2");
  EXPECT_EQ(boost::json::parse(only_k2->decode(codec_context(after, Field::progress), after.progress)),
            value);
  EXPECT_EQ(boost::json::parse(sync_wait(client()->get(id))->progress), value);
}

TEST_P(SealedProgress, ErasureShredsItWithTheSubjectsKey) {
  JobId id = run_reporting(object{{"note", kMarker}}, "subject-9");
  const Job before = stored(id);  // as a backup would hold it
  ASSERT_NO_THROW(codec_->decode(codec_context(before, Field::progress), before.progress));
  auto usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.subject_jobs, 1u);
  EXPECT_EQ(usage.jobs_by_key.count("k1"), 0u) << "a subject's progress is sealed under its key";

  auto erased = sync_wait(security::erase_subject(backend(), *codec_, "subject-9"));
  EXPECT_EQ(erased.jobs, 1u);
  EXPECT_TRUE(erased.key_destroyed);
  EXPECT_FALSE(sync_wait(backend().get(id)));
  // The backup's copy of the progress can no longer be opened by anyone.
  EXPECT_THROW(codec_->decode(codec_context(before, Field::progress), before.progress),
               IntegrityError);
  for (const Event& e : sync_wait(backend().read_events(0, 10000)).events)
    EXPECT_TRUE(windows_in(e.detail, kMarker).empty()) << e.detail;
}

INSTANTIATE_TEST_SUITE_P(AllBackends, SealedProgress, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

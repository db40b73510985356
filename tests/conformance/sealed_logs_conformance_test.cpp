// A handler's log lines through key rotation (issue 5), on every backend:
// they are sealed like the job's other fields (Field::log, bound to queue,
// job and subject), so `keys reseal` must move them too and `keys retire`
// must count them. After a reseal a job's lines open under the new key
// alone, the copies sealed under the old key no longer open once that key
// is removed, a subject's lines go under the subject's key (as its payload
// does), and key usage counts a job whose only old-key bytes are its lines.
// Time is a FakeEnv; nothing sleeps.
#include "conformance/sealing_fixture.hpp"

#include "security/reseal.hpp"

#include <asyncmq/error.hpp>

#include <string>
#include <vector>

namespace asyncmq::testing {
namespace {

using boost::json::object;

class SealedLogs : public SealingConformance {
 protected:
  void SetUp() override {
    SealingConformance::SetUp();
    // Logs each member of the payload's "lines", then ends.
    tasks->add("chatty", [](TaskContext& ctx) -> boost::json::value {
      for (const auto& l : ctx.payload().at("lines").as_array()) ctx.log(l.as_string());
      return "done";
    }, TaskOptions{.blocking = false});
  }

  // A job whose handler logs `lines`, run to completion by a worker.
  JobId run_logging(const std::vector<std::string>& lines, const std::string& subject = "") {
    boost::json::array arr;
    for (const auto& l : lines) arr.emplace_back(l);
    JobOptions o;
    o.subject = subject;
    JobId id = add("q", "chatty", object{{"lines", arr}}, o);
    run_worker(options(), [&] { return state_of(id) == JobState::completed; });
    return id;
  }

  std::vector<LogLine> stored_logs(const JobId& id) { return sync_wait(backend().logs(id, 1000)); }

  // The texts of `lines` opened with `codec` as job `job`'s log.
  static std::vector<std::string> opened(security::SealingCodec& codec, const Job& job,
                                         const std::vector<LogLine>& lines) {
    std::vector<std::string> out;
    for (const auto& l : lines) out.push_back(codec.decode(codec_context(job, Field::log), l.text));
    return out;
  }
};

TEST_P(SealedLogs, ResealMovesThemToTheNewKeyAndTheOldCopiesNeedTheRemovedKey) {
  const std::vector<std::string> said = {"step one", "step two", "step three"};
  JobId id = run_logging(said);
  const Job job = stored(id);
  const std::vector<LogLine> old_lines = stored_logs(id);  // as a backup would hold them
  ASSERT_EQ(old_lines.size(), 3u);
  for (const auto& l : old_lines) {
    EXPECT_EQ(security::sealed_key_id(l.text), "k1");
    EXPECT_EQ(l.text.find("step"), std::string::npos) << "stored unsealed";
  }

  add_key("k2");  // k1 becomes decrypt-only
  auto report = sync_wait(security::reseal_all(backend(), *codec_, {}));
  EXPECT_TRUE(report.complete);
  EXPECT_EQ(report.resealed, 1u);
  EXPECT_EQ(report.last.log_lines_scanned, 3u);

  const std::vector<LogLine> new_lines = stored_logs(id);
  ASSERT_EQ(new_lines.size(), 3u);
  for (std::size_t k = 0; k < new_lines.size(); ++k) {
    EXPECT_EQ(security::sealed_key_id(new_lines[k].text), "k2") << "line " << k;
    EXPECT_EQ(new_lines[k].time_ms, old_lines[k].time_ms);
  }
  // Under k2 alone the new lines open, equal to what the handler logged...
  auto only_k2 = codec_with_only("k2");
  EXPECT_EQ(opened(*only_k2, job, new_lines), said);
  std::vector<std::string> via_client;
  for (const auto& l : sync_wait(client()->logs(id, 100))) via_client.push_back(l.text);
  EXPECT_EQ(via_client, said);
  // ...and the copies sealed under k1 do not: k1 is gone.
  for (const auto& l : old_lines)
    EXPECT_THROW(only_k2->decode(codec_context(job, Field::log), l.text), IntegrityError);
  // Nor do the new lines open under k1 alone: they really moved.
  auto only_k1 = codec_with_only("k1");
  for (const auto& l : new_lines)
    EXPECT_THROW(only_k1->decode(codec_context(job, Field::log), l.text), IntegrityError);

  auto usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.jobs_by_key.count("k1"), 0u);
  EXPECT_EQ(usage.log_jobs_by_key.count("k1"), 0u);
  EXPECT_EQ(usage.log_jobs_by_key["k2"], 1u);
  EXPECT_EQ(usage.log_lines, 3u);
}

TEST_P(SealedLogs, KeyUsageCountsAJobWhoseOnlyOldKeyBytesAreItsLines) {
  JobId id = run_logging({"only the lines keep k1"});
  JobId quiet = run_logging({});
  add_key("k2");
  // Rows moved under k2 by hand, lines left under k1 (what a reseal that
  // did not walk log lines left behind).
  for (const JobId& j : {id, quiet}) ASSERT_NO_FATAL_FAILURE(move_payload_and_result(j));
  ASSERT_EQ(security::sealed_key_id(stored(id).payload), "k2");
  ASSERT_EQ(security::sealed_key_id(stored_logs(id).at(0).text), "k1");

  auto usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.jobs, 2u);
  EXPECT_EQ(usage.log_lines, 1u);
  EXPECT_EQ(usage.jobs_by_key["k1"], 1u) << "retire would disable a key log lines still need";
  EXPECT_EQ(usage.log_jobs_by_key["k1"], 1u);
  EXPECT_EQ(usage.jobs_by_key["k2"], 2u);
  EXPECT_EQ(usage.log_jobs_by_key.count("k2"), 0u);

  auto report = sync_wait(security::reseal_all(backend(), *codec_, {}));
  EXPECT_TRUE(report.complete);
  EXPECT_EQ(report.resealed, 1u);  // the quiet job needed nothing
  usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.jobs_by_key.count("k1"), 0u);
  EXPECT_EQ(usage.log_jobs_by_key["k2"], 1u);
  EXPECT_EQ(opened(*codec_with_only("k2"), stored(id), stored_logs(id)),
            std::vector<std::string>{"only the lines keep k1"});
}

TEST_P(SealedLogs, ASubjectsLinesGoUnderTheSubjectsKey) {
  // Lines a worker sealed under the subject's key stay there through a
  // rotation (the subject key is re-wrapped instead)...
  JobId sealed = run_logging({"about the subject"}, "subject-3");
  ASSERT_EQ(static_cast<std::uint8_t>(stored_logs(sealed).at(0).text[0]),
            security::kSubjectEnvelopeVersion);
  // ...and lines of a subject's job sealed under the primary (a worker
  // without the subject key store) move under the subject's key, as the
  // job's payload would.
  JobOptions o;
  o.subject = "subject-3";
  JobId moved = add("q", "chatty", object{{"lines", boost::json::array{}}}, o);
  auto claimed = claim("q", 1);
  ASSERT_EQ(claimed.size(), 1u);
  ASSERT_EQ(claimed[0].id, moved);
  security::SealingCodec without_subjects(ring_);
  std::vector<LogLine> lines;
  lines.push_back(LogLine{env().now_ms(),
                          without_subjects.encode(codec_context(claimed[0], Field::log), "v1 line")});
  ASSERT_TRUE(sync_wait(backend().append_logs(LeaseRef{moved, claimed[0].lease.token}, lines)));
  ASSERT_EQ(security::sealed_key_id(stored_logs(moved).at(0).text), "k1");
  auto usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.log_jobs_by_key["k1"], 1u);
  EXPECT_EQ(usage.subject_jobs, 2u);

  add_key("k2");
  auto report = sync_wait(security::reseal_all(backend(), *codec_, {}));
  EXPECT_TRUE(report.complete);
  EXPECT_EQ(report.subject_keys.rewrapped, 1u);
  for (const JobId& id : {sealed, moved}) {
    const std::string text = stored_logs(id).at(0).text;
    EXPECT_EQ(static_cast<std::uint8_t>(text[0]), security::kSubjectEnvelopeVersion);
  }
  EXPECT_EQ(opened(*codec_with_only("k2"), stored(moved), stored_logs(moved)),
            std::vector<std::string>{"v1 line"});
  EXPECT_EQ(opened(*codec_with_only("k2"), stored(sealed), stored_logs(sealed)),
            std::vector<std::string>{"about the subject"});
  usage = sync_wait(security::key_usage(backend(), *codec_));
  EXPECT_EQ(usage.jobs_by_key.count("k1"), 0u);
  EXPECT_EQ(usage.subject_keys_by_key.count("k1"), 0u);
  // The active job's worker was not disturbed.
  EXPECT_EQ(finish({completed(claimed[0], codec_->encode(codec_context(claimed[0], Field::result),
                                                         "\"ok\""))}),
            std::vector<bool>{true});
}

INSTANTIATE_TEST_SUITE_P(AllBackends, SealedLogs, all_backends(), backend_name);

}  // namespace
}  // namespace asyncmq::testing

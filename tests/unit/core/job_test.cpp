// Job ids, states and backoff.
#include <asyncmq/error.hpp>
#include <asyncmq/job.hpp>

#include "support/fake_env.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>

namespace asyncmq::testing {
namespace {

TEST(JobId, FormatsAndParsesAsACanonicalUuidV7) {
  FakeEnv env;
  JobId id = JobId::generate(env);
  std::string text = id.str();
  ASSERT_EQ(text.size(), 36u);
  EXPECT_EQ(text[8], '-');
  EXPECT_EQ(text[14], '7');  // version 7
  EXPECT_NE(std::string("89ab").find(text[19]), std::string::npos);  // RFC 9562 variant
  EXPECT_EQ(JobId::parse(text), id);
  std::string upper = text;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(JobId::parse(upper), id);
  EXPECT_EQ(id.timestamp_ms(), env.now_ms());
  EXPECT_FALSE(id.is_nil());
  EXPECT_TRUE(JobId().is_nil());
}

TEST(JobId, RefusesMalformedText) {
  for (std::string bad : {"", "0190b2a4-7c1e-7abc-8def-0123456789a", "0190b2a4-7c1e-7abc-8def-0123456789abc",
                          "0190b2a47c1e-7abc-8def-0123456789ab-", "0190b2a4-7c1e-7abc-8def-0123456789ag",
                          "../../etc/passwd"}) {
    EXPECT_FALSE(JobId::try_parse(bad)) << bad;
    EXPECT_THROW(JobId::parse(bad), InvalidArgument) << bad;
  }
}

TEST(JobId, IsStrictlyIncreasingWithinOneMillisecondAndOrderKeysDoNotTie) {
  FakeEnv env;  // the clock stands still: every id has the same timestamp
  JobId prev = JobId::generate(env);
  for (int i = 0; i < 10000; ++i) {  // more than the 12-bit counter holds
    JobId next = JobId::generate(env);
    ASSERT_LT(prev, next);
    ASSERT_LT(prev.order_key(), next.order_key());
    ASSERT_GE(next.order_key(), 0);
    prev = next;
  }
}

TEST(JobId, IsUniqueAcrossThreads) {
  std::vector<std::vector<JobId>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& out : per_thread) {
    threads.emplace_back([&out] {
      for (int i = 0; i < 20000; ++i) out.push_back(JobId::generate(Env::system()));
    });
  }
  for (auto& t : threads) t.join();
  std::set<JobId> all;
  for (auto& v : per_thread) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), 80000u);
}

TEST(JobState, NamesRoundTripAndUnknownNamesAreRefused) {
  for (int i = 0; i < kJobStateCount; ++i) {
    auto s = static_cast<JobState>(i);
    EXPECT_EQ(parse_job_state(to_string(s)), s);
  }
  try {
    parse_job_state("sleeping");
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown job state 'sleeping'"), std::string::npos);
  }
}

TEST(Backoff, ExponentialGrowsForEveryBaseIncludingOne) {
  FakeEnv env;
  Backoff b{Backoff::Kind::exponential, 1, 1'000'000, 0.0};
  EXPECT_EQ(b.delay_for(1, env), 1);
  EXPECT_EQ(b.delay_for(2, env), 2);
  EXPECT_EQ(b.delay_for(5, env), 16);
  b.delay_ms = 1000;
  EXPECT_EQ(b.delay_for(1, env), 1000);
  EXPECT_EQ(b.delay_for(4, env), 8000);
  EXPECT_EQ(b.delay_for(40, env), 1'000'000);  // capped
  EXPECT_EQ(b.delay_for(1000, env), 1'000'000);  // no overflow
}

TEST(Backoff, FixedStaysPutAndJitterStaysInItsBand) {
  FakeEnv env;
  Backoff fixed{Backoff::Kind::fixed, 500, 10'000, 0.0};
  EXPECT_EQ(fixed.delay_for(1, env), 500);
  EXPECT_EQ(fixed.delay_for(9, env), 500);
  Backoff jittered{Backoff::Kind::fixed, 1000, 10'000, 0.5};
  std::set<std::int64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    auto d = jittered.delay_for(1, env);
    ASSERT_GE(d, 500);
    ASSERT_LE(d, 1000);
    seen.insert(d);
  }
  EXPECT_GT(seen.size(), 100u);  // actually spread out
}

}  // namespace
}  // namespace asyncmq::testing

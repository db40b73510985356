// Acceptance of issue 4 with real processes: a global rate limit of 100 jobs
// per second, shared by two `asyncmq worker` processes on one SQLite file,
// is never exceeded in any one-second window of the run, measured from the
// jobs' completion timestamps.
//
// Nothing sleeps: the test waits for the workers with Process::wait_for,
// a bounded number of times.
#include <asyncmq/asyncmq.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <optional>
#include <vector>

namespace asyncmq::testing {
namespace {

TEST(RateLimit, GlobalLimitSharedByTwoWorkerProcessesHoldsInEveryOneSecondWindow) {
  constexpr int kJobs = 400;
  constexpr std::int64_t kMax = 100;
  constexpr std::int64_t kIntervalMs = 1000;
  TempDir dir;
  const std::string uri = "sqlite://" + dir.file("limited.db");
  {
    auto client = Client::open(uri);
    Queue queue(client, "limited");
    sync_wait(queue.set_rate_limit(RateLimit{kMax, kIntervalMs}));
    std::vector<NewJob> jobs(kJobs);
    for (auto& j : jobs) {
      j.task = "noop";
      j.payload = boost::json::object{};
    }
    ASSERT_EQ(sync_wait(queue.add_bulk(std::move(jobs))).size(), static_cast<std::size_t>(kJobs));
  }

  auto worker_argv = [&](const std::string& id) {
    return std::vector<std::string>{ASYNCMQ_CLI_PATH, "--backend", uri, "--json", "worker",
                                    "--queue", "limited", "--concurrency", "16", "--id", id};
  };
  Process a(worker_argv("worker-a"));
  Process b(worker_argv("worker-b"));

  auto client = Client::open(uri);
  Queue queue(client, "limited");
  bool done = false;
  // At most 5 minutes; the run itself needs about 4 seconds.
  for (int i = 0; i < 1500 && !done; ++i) {
    auto c = sync_wait(queue.counts());
    done = c[static_cast<int>(JobState::completed)] == static_cast<std::uint64_t>(kJobs);
    if (!done) {
      ASSERT_FALSE(a.wait_for(200)) << "worker a exited early: " << a.err_so_far();
    }
  }
  a.send_signal(SIGTERM);
  b.send_signal(SIGTERM);
  ProcessResult ra = a.wait();
  ProcessResult rb = b.wait();
  ASSERT_TRUE(done) << "not every job completed";
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  ASSERT_EQ(rb.exit_code, 0) << rb.err;

  std::vector<std::int64_t> finished;
  std::optional<JobId> after;
  do {
    JobPage page = sync_wait(queue.list(JobState::completed, after, 1000));
    for (const auto& j : page.jobs) finished.push_back(j.finished_ms);
    after = page.next;
  } while (after);
  ASSERT_EQ(finished.size(), static_cast<std::size_t>(kJobs));
  std::sort(finished.begin(), finished.end());
  std::int64_t worst = 0;
  for (std::size_t i = 0; i < finished.size(); ++i) {
    auto end = std::lower_bound(finished.begin() + i, finished.end(), finished[i] + kIntervalMs);
    std::int64_t in_window = end - (finished.begin() + i);
    worst = std::max(worst, in_window);
    EXPECT_LE(in_window, kMax) << "window from " << finished[i] << " ms";
  }
  // Both processes took part: each reports what it completed.
  auto completed_by = [](const ProcessResult& r) -> std::int64_t {
    auto v = boost::json::parse(r.out);
    return v.at("completed").to_number<std::int64_t>();
  };
  std::int64_t by_a = completed_by(ra), by_b = completed_by(rb);
  EXPECT_EQ(by_a + by_b, kJobs);
  EXPECT_GT(by_a, 0);
  EXPECT_GT(by_b, 0);
  std::cout << "[ rate ] " << kJobs << " jobs in " << (finished.back() - finished.front())
            << " ms; busiest 1 s window " << worst << " completions; worker a " << by_a
            << ", worker b " << by_b << '\n';
}

}  // namespace
}  // namespace asyncmq::testing

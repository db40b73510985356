// Acceptance of issue 4: a 10,000-job flow (one parent, 9,999 children) on
// SQLite is added in one call and completes, the parent last, seeing every
// child's result.
#include <asyncmq/asyncmq.hpp>

#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <iostream>

namespace asyncmq::testing {
namespace {

TEST(FlowScale, TenThousandJobFlowCompletesWithTheParentLast) {
  constexpr int kChildren = 9'999;
  TempDir dir;
  auto client = Client::open("sqlite://" + dir.file("flow.db"));
  Env& env = client->env();
  std::int64_t t0 = env.monotonic_ns();

  std::vector<FlowNode> nodes;
  nodes.reserve(kChildren + 1);
  FlowNode root;
  root.ref = "root";
  root.queue = "flow";
  root.task = "parent";
  root.payload = boost::json::object{};
  nodes.push_back(std::move(root));
  for (int i = 0; i < kChildren; ++i) {
    FlowNode c;
    c.ref = "c" + std::to_string(i);
    c.parent = "root";
    c.queue = "flow";
    c.task = "child";
    c.payload = boost::json::object{{"n", i}};
    nodes.push_back(std::move(c));
  }
  std::vector<JobId> ids = sync_wait(client->add_flow(std::move(nodes)));
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(kChildren + 1));
  std::int64_t added_ns = env.monotonic_ns();

  std::atomic<int> children_run{0};
  std::atomic<int> children_before_parent{-1};
  std::atomic<std::size_t> seen{0}, seen_completed{0};
  auto tasks = std::make_shared<TaskRegistry>();
  TaskOptions inline_task;
  inline_task.blocking = false;
  tasks->add("child", [&](TaskContext& ctx) -> boost::json::value {
    ++children_run;
    return ctx.payload().at("n");
  }, inline_task);
  tasks->add("parent", [&](TaskContext& ctx) -> boost::json::value {
    children_before_parent = children_run.load();
    seen = ctx.children().size();
    std::size_t ok = 0;
    for (const auto& c : ctx.children()) ok += c.state == JobState::completed && !c.result.is_null();
    seen_completed = ok;
    return static_cast<std::int64_t>(ok);
  }, inline_task);

  WorkerOptions o;
  o.queues = {"flow"};
  o.concurrency = 64;
  o.id = "flow-worker";
  Worker worker(client, tasks, o);
  Queue queue(client, "flow");
  boost::asio::io_context io;
  bool completed = false;
  boost::asio::co_spawn(io, worker.run(), boost::asio::detached);
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    // Bounded: at most 20 minutes of polling.
    for (int i = 0; i < 60'000 && !completed; ++i) {
      auto job = co_await queue.get(ids[0]);
      completed = job && job->state == JobState::completed;
      if (!completed) co_await env.sleep_for(20);
    }
    worker.stop();
  }, boost::asio::detached);
  io.run();
  std::int64_t done_ns = env.monotonic_ns();

  ASSERT_TRUE(completed);
  EXPECT_EQ(children_before_parent.load(), kChildren);
  EXPECT_EQ(seen.load(), static_cast<std::size_t>(kChildren));
  EXPECT_EQ(seen_completed.load(), static_cast<std::size_t>(kChildren));
  EXPECT_EQ(sync_wait(queue.get(ids[0]))->result, std::to_string(kChildren));
  std::cout << "[ flow ] " << kChildren + 1 << " jobs: added in " << (added_ns - t0) / 1'000'000
            << " ms, completed in " << (done_ns - added_ns) / 1'000'000 << " ms\n";
}

}  // namespace
}  // namespace asyncmq::testing

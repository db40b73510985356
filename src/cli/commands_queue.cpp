// `asyncmq queue stats | pause | resume`.
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <iostream>
#include <memory>

namespace asyncmq::cli {
namespace {

boost::asio::awaitable<std::vector<std::pair<std::string, std::pair<StateCounts, bool>>>>
gather(std::shared_ptr<Client> client, std::vector<std::string> names) {
  std::vector<std::pair<std::string, std::pair<StateCounts, bool>>> out;
  for (auto& name : names) {
    StateCounts counts = co_await client->backend().counts(name);
    bool paused = co_await client->backend().is_paused(name);
    out.push_back({std::move(name), {counts, paused}});
  }
  co_return out;
}

int do_stats(const Context& ctx, const std::string& queue) {
  if (!queue.empty()) validate_name("queue", queue);
  auto client = open_client(ctx, Access::must_exist);
  std::vector<std::string> names;
  if (queue.empty()) {
    names = sync_wait(client->queues());
  } else {
    names.push_back(queue);
  }
  auto rows = sync_wait(gather(client, names));

  if (ctx.json) {
    boost::json::array arr;
    for (const auto& [name, info] : rows) {
      boost::json::object counts;
      std::uint64_t total = 0;
      for (int s = 0; s < kJobStateCount; ++s) {
        counts[to_string(static_cast<JobState>(s))] = info.first[s];
        total += info.first[s];
      }
      arr.push_back({{"queue", name}, {"paused", info.second}, {"counts", std::move(counts)},
                     {"total", total}});
    }
    print_json({{"queues", std::move(arr)}});
    return kExitOk;
  }
  if (rows.empty()) {
    std::cout << "no queues\n";
    return kExitOk;
  }
  Table t({"QUEUE", "WAITING", "DELAYED", "ACTIVE", "COMPLETED", "FAILED", "DEAD", "PAUSED"});
  for (const auto& [name, info] : rows) {
    std::vector<std::string> row{name};
    for (int s = 0; s < kJobStateCount; ++s) row.push_back(std::to_string(info.first[s]));
    row.push_back(info.second ? "yes" : "no");
    t.add(std::move(row));
  }
  t.print(std::cout);
  return kExitOk;
}

int do_pause(const Context& ctx, const std::string& name, bool pause) {
  validate_name("queue", name);
  // Pausing an unused queue is allowed (jobs added later wait); it may create
  // the store. Resuming needs an existing one.
  auto client = open_client(ctx, pause ? Access::create : Access::must_exist);
  Queue queue(client, name);
  sync_wait(pause ? queue.pause() : queue.resume());
  if (ctx.json) {
    print_json({{"queue", name}, {"paused", pause}});
  } else {
    std::cout << (pause ? "paused " : "resumed ") << name << '\n';
  }
  return kExitOk;
}

}  // namespace

void add_queue_commands(CLI::App& app, Context& ctx) {
  auto* queue = app.add_subcommand("queue", "inspect and operate queues");
  queue->require_subcommand(1);

  auto stats_queue = std::make_shared<std::string>();
  auto* stats = queue->add_subcommand("stats", "job counts per state (all queues when none given)");
  stats->add_option("queue", *stats_queue, "queue name");
  stats->callback([&ctx, stats_queue] {
    ctx.action = [&ctx, stats_queue] { return do_stats(ctx, *stats_queue); };
  });

  auto pause_queue = std::make_shared<std::string>();
  auto* pause = queue->add_subcommand("pause", "stop workers from taking the queue's jobs");
  pause->add_option("queue", *pause_queue, "queue name")->required();
  pause->callback([&ctx, pause_queue] {
    ctx.action = [&ctx, pause_queue] { return do_pause(ctx, *pause_queue, true); };
  });

  auto resume_queue = std::make_shared<std::string>();
  auto* resume = queue->add_subcommand("resume", "let workers take the queue's jobs again");
  resume->add_option("queue", *resume_queue, "queue name")->required();
  resume->callback([&ctx, resume_queue] {
    ctx.action = [&ctx, resume_queue] { return do_pause(ctx, *resume_queue, false); };
  });
}

}  // namespace asyncmq::cli

// `asyncmq queue stats | pause | resume | clean | drain | obliterate | limit`.
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_features.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <cctype>
#include <iostream>
#include <optional>
#include <memory>

namespace asyncmq::cli {
namespace {

struct QueueInfo {
  std::string name;
  StateCounts counts{};
  bool paused = false;
  RateLimit limit;
};

boost::asio::awaitable<std::vector<QueueInfo>> gather(std::shared_ptr<Client> client,
                                                      std::vector<std::string> names) {
  std::vector<QueueInfo> out;
  for (auto& name : names) {
    QueueInfo info;
    info.counts = co_await client->backend().counts(name);
    info.paused = co_await client->backend().is_paused(name);
    info.limit = co_await client->backend().rate_limit(name);
    info.name = std::move(name);
    out.push_back(std::move(info));
  }
  co_return out;
}

boost::json::value limit_json(const RateLimit& l) {
  if (l.max <= 0) return nullptr;
  return boost::json::object{
      {"max", l.max}, {"interval_ms", l.interval_ms}, {"per_group", l.per_group}};
}

std::string limit_text(const RateLimit& l) {
  if (l.max <= 0) return "-";
  return std::to_string(l.max) + "/" + std::to_string(l.interval_ms) + "ms" +
         (l.per_group ? " per group" : "");
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
    for (const auto& info : rows) {
      boost::json::object counts;
      std::uint64_t total = 0;
      for (int s = 0; s < kJobStateCount; ++s) {
        counts[to_string(static_cast<JobState>(s))] = info.counts[s];
        total += info.counts[s];
      }
      arr.push_back({{"queue", info.name}, {"paused", info.paused}, {"counts", std::move(counts)},
                     {"total", total}, {"rate_limit", limit_json(info.limit)}});
    }
    print_json({{"queues", std::move(arr)}});
    return kExitOk;
  }
  if (rows.empty()) {
    std::cout << "no queues\n";
    return kExitOk;
  }
  std::vector<std::string> header{"QUEUE"};
  for (int s = 0; s < kJobStateCount; ++s) {
    std::string h(to_string(static_cast<JobState>(s)));
    for (auto& c : h) c = c == '_' ? '-' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    header.push_back(std::move(h));
  }
  header.push_back("PAUSED");
  header.push_back("LIMIT");
  Table t(std::move(header));
  for (const auto& info : rows) {
    std::vector<std::string> row{info.name};
    for (int s = 0; s < kJobStateCount; ++s) row.push_back(std::to_string(info.counts[s]));
    row.push_back(info.paused ? "yes" : "no");
    row.push_back(limit_text(info.limit));
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

struct CleanArgs {
  std::string queue;
  std::string state;
  std::string older_than;
  std::size_t limit = 0;
};

int do_clean(const Context& ctx, const CleanArgs& a) {
  validate_name("queue", a.queue);
  JobState state = parse_job_state(a.state);
  if (state == JobState::active) {
    throw InvalidArgument("--state active: active jobs cannot be cleaned (cancel them first)");
  }
  std::int64_t older_than = parse_cli_duration("--older-than", a.older_than);
  auto client = open_client(ctx, Access::must_exist);
  Queue queue(client, a.queue);
  std::vector<JobId> ids = sync_wait(queue.clean(state, older_than, a.limit));
  if (ctx.json) {
    boost::json::array arr;
    for (const auto& id : ids) arr.push_back(boost::json::value(id.str()));
    print_json({{"queue", a.queue}, {"state", std::string(to_string(state))},
                {"removed", ids.size()}, {"ids", std::move(arr)}});
  } else {
    std::cout << "removed " << ids.size() << ' ' << to_string(state) << " jobs from " << a.queue
              << '\n';
  }
  return kExitOk;
}

int do_drain_or_obliterate(const Context& ctx, const std::string& name, bool obliterate,
                           bool force) {
  validate_name("queue", name);
  if (obliterate && !force) {
    throw InvalidArgument("refusing to obliterate queue " + name +
                          " without --force (it deletes every job, log, repeatable and setting "
                          "of the queue, active jobs included)");
  }
  auto client = open_client(ctx, Access::must_exist);
  Queue queue(client, name);
  std::size_t n = obliterate ? sync_wait(queue.obliterate(true)) : sync_wait(queue.drain());
  if (ctx.json) {
    print_json({{"queue", name}, {"removed", n}, {obliterate ? "obliterated" : "drained", true}});
  } else {
    std::cout << (obliterate ? "obliterated " : "drained ") << name << ": removed " << n
              << " jobs\n";
  }
  return kExitOk;
}

struct LimitArgs {
  std::string queue;
  std::int64_t max = 0;
  std::string per = "1s";
  bool per_group = false;
  bool off = false;
  bool max_given = false;
};

int do_limit(const Context& ctx, const LimitArgs& a) {
  validate_name("queue", a.queue);
  std::optional<RateLimit> set;
  if (a.off) {
    set = RateLimit{0, 1000};
  } else if (a.max_given) {
    if (a.max < 1 || a.max > 1'000'000) {
      throw InvalidArgument("--max " + std::to_string(a.max) + " is outside [1, 1000000]");
    }
    std::int64_t per = parse_cli_duration("--per", a.per);
    if (per < 1) throw InvalidArgument("--per must be at least 1 ms");
    set = RateLimit{a.max, per, a.per_group};
  }
  // Setting a limit on an unused queue is allowed (like pause); showing one
  // needs an existing store.
  auto client = open_client(ctx, set ? Access::create : Access::must_exist);
  Queue queue(client, a.queue);
  if (set) sync_wait(queue.set_rate_limit(*set));
  RateLimit now = sync_wait(queue.rate_limit());
  if (ctx.json) {
    print_json({{"queue", a.queue}, {"rate_limit", limit_json(now)}});
  } else if (now.max <= 0) {
    std::cout << a.queue << ": no rate limit\n";
  } else {
    std::cout << a.queue << ": at most " << now.max << " jobs per " << now.interval_ms << " ms"
              << (now.per_group ? " for each group key" : "") << ", across all workers\n";
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

  auto clean_args = std::make_shared<CleanArgs>();
  auto* clean = queue->add_subcommand(
      "clean", "remove a queue's jobs in one state that are older than a duration");
  clean->add_option("queue", clean_args->queue, "queue name")->required();
  clean->add_option("--state", clean_args->state,
                    "completed, dead, failed, expired, cancelled, waiting, delayed or "
                    "waiting-children")
      ->required();
  clean->add_option("--older-than", clean_args->older_than,
                    "finished (unfinished states: created) at least this long ago: 30s, 5m, 1h, 7d, 0")
      ->required();
  clean->add_option("--limit", clean_args->limit, "remove at most this many (default 0: all)");
  clean->callback([&ctx, clean_args] {
    ctx.action = [&ctx, clean_args] { return do_clean(ctx, *clean_args); };
  });

  auto drain_queue = std::make_shared<std::string>();
  auto* drain = queue->add_subcommand("drain", "remove every waiting and delayed job of a queue");
  drain->add_option("queue", *drain_queue, "queue name")->required();
  drain->callback([&ctx, drain_queue] {
    ctx.action = [&ctx, drain_queue] { return do_drain_or_obliterate(ctx, *drain_queue, false, false); };
  });

  auto obl_queue = std::make_shared<std::string>();
  auto obl_force = std::make_shared<bool>(false);
  auto* obl = queue->add_subcommand("obliterate", "remove a queue and everything in it (needs --force)");
  obl->add_option("queue", *obl_queue, "queue name")->required();
  obl->add_flag("--force", *obl_force, "yes, delete it all, active jobs included");
  obl->callback([&ctx, obl_queue, obl_force] {
    ctx.action = [&ctx, obl_queue, obl_force] {
      return do_drain_or_obliterate(ctx, *obl_queue, true, *obl_force);
    };
  });

  auto limit_args = std::make_shared<LimitArgs>();
  auto* limit = queue->add_subcommand(
      "limit",
      "set (--max N --per D [--per-group]), remove (--off) or show a queue's global rate limit");
  limit->add_option("queue", limit_args->queue, "queue name")->required();
  auto* max_opt = limit->add_option("--max", limit_args->max, "at most this many jobs per interval");
  auto* per_opt = limit->add_option("--per,--interval", limit_args->per,
                                    "the interval: 1s, 500ms, 1m (default 1s)");
  per_opt->needs(max_opt);
  auto* group_opt = limit->add_flag(
      "--per-group", limit_args->per_group,
      "apply the limit to each group key (job add --group) separately; jobs without one "
      "share one group");
  group_opt->needs(max_opt);
  limit->add_flag("--off", limit_args->off, "remove the limit")
      ->excludes(max_opt)
      ->excludes(per_opt)
      ->excludes(group_opt);
  limit->callback([&ctx, limit_args, max_opt] {
    limit_args->max_given = max_opt->count() > 0;
    ctx.action = [&ctx, limit_args] { return do_limit(ctx, *limit_args); };
  });
}

}  // namespace asyncmq::cli

// `asyncmq job add | show | list | retry | remove`.
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_features.hpp"
#include "runtime/make_job.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

namespace asyncmq::cli {
namespace {

struct AddArgs {
  std::string queue;
  std::string task;
  std::string payload = "{}";
  std::string payload_file;
  JobOptionFlags flags;
  std::int64_t delay_ms = 0;
  std::string idempotency_key;
  std::string idempotency_window;  // a duration
};

int do_add(const Context& ctx, AddArgs a) {
  // All input is checked before the backend is opened: nothing is created
  // or written on bad input.
  validate_name("queue", a.queue);
  validate_name("task", a.task);
  ClientOptions limits;
  std::string text = a.payload_file.empty() ? a.payload
                                            : read_input_file("payload file", a.payload_file, limits.max_payload_bytes);
  boost::json::value payload = parse_payload(text, limits);
  JobOptions options = a.flags.resolve();
  options.delay_ms = a.delay_ms;
  options.idempotency_key = a.idempotency_key;
  if (!a.idempotency_window.empty())
    options.idempotency_window_ms = parse_cli_duration("--idempotency-window", a.idempotency_window);
  validate_options(options);
  // The payload guards run again in the codec; here they refuse before the
  // store exists, on the same text the codec will see.
  check_payload(ctx.settings.guards.limits_for(a.queue), a.queue, boost::json::serialize(payload));

  auto client = open_client(ctx, Access::create);
  // The job is built here rather than through Queue::add so that its fresh
  // id is known: a different id back from enqueue means the add was
  // answered by an existing job with the same idempotency key.
  Job job = make_job(*client, a.queue, a.task, payload, options, client->env().now_ms());
  JobId fresh = job.id;
  std::vector<Job> batch;
  batch.push_back(std::move(job));
  // Printed only once enqueue returned: the job is durable.
  JobId id = sync_wait(client->backend().enqueue(std::move(batch))).at(0);
  bool deduplicated = id != fresh;
  if (ctx.json) {
    print_json({{"id", id.str()}, {"queue", a.queue}, {"task", a.task}, {"deduplicated", deduplicated}});
  } else {
    std::cout << id.str() << '\n';
    if (deduplicated) {
      std::cerr << "deduplicated: a job with this idempotency key already stands for it; "
                   "nothing was added\n";
    }
  }
  return kExitOk;
}

int do_show(const Context& ctx, const std::string& id_text) {
  JobId id = JobId::parse(id_text);
  auto client = open_client(ctx, Access::must_exist);
  auto job = sync_wait(client->get(id));
  if (!job) throw NotFound("job " + id.str() + " not found");
  if (ctx.json) {
    print_json(job_to_json(*job));
    return kExitOk;
  }
  const Job& j = *job;
  auto row = [](const char* k, const std::string& v) {
    std::cout << k << std::string(12 - std::min<std::size_t>(12, std::strlen(k)), ' ') << v << '\n';
  };
  row("id", j.id.str());
  row("queue", j.queue);
  row("task", j.task);
  row("state", std::string(to_string(j.state)));
  row("attempts", std::to_string(j.attempts_made) + " of " + std::to_string(j.options.attempts) +
                      (j.stalls ? " (" + std::to_string(j.stalls) + " stalls)" : ""));
  row("priority", std::to_string(j.options.priority) + (j.options.lifo ? " lifo" : ""));
  row("backoff", std::string(j.options.backoff.kind == Backoff::Kind::fixed ? "fixed " : "exponential ") +
                     std::to_string(j.options.backoff.delay_ms) + " ms");
  if (j.options.timeout_ms) row("timeout", std::to_string(j.options.timeout_ms) + " ms");
  if (j.options.ttl_ms) row("ttl", std::to_string(j.options.ttl_ms) + " ms");
  if (!j.options.idempotency_key.empty()) {
    row("idem. key", j.options.idempotency_key +
                         (j.options.idempotency_window_ms
                              ? " (window " + std::to_string(j.options.idempotency_window_ms) + " ms)"
                              : ""));
  }
  if (!j.options.group.empty()) row("group", j.options.group);
  if (!j.parent.is_nil()) {
    row("parent", j.parent.str() + " (on failure: " +
                      (j.on_failure == ChildFailure::ignore ? "ignore"
                       : j.on_failure == ChildFailure::wait ? "wait"
                                                            : "fail") +
                      ")");
  }
  if (j.children > 0) {
    row("children", std::to_string(j.children) + " (" + std::to_string(j.pending_children) +
                        " pending)");
  }
  if (!j.progress.empty()) row("progress", j.progress);
  if (!j.progress_error.empty()) row("progress", "integrity error: " + j.progress_error);
  if (j.cancel_requested) row("cancel", "requested; the handler was asked to stop");
  row("created", format_time_ms(j.created_ms));
  row("run at", format_time_ms(j.run_at_ms));
  row("started", format_time_ms(j.started_ms));
  row("finished", format_time_ms(j.finished_ms));
  if (j.state == JobState::active) {
    row("lease", j.lease.owner + " until " + format_time_ms(j.lease.expires_ms));
  }
  row("payload", j.payload);
  if (!j.result.empty()) row("result", j.result);
  if (!j.error.empty()) row("error", j.error);
  return kExitOk;
}

struct ListArgs {
  std::string queue;
  std::string state = "waiting";
  std::size_t limit = 50;
  std::string after;
};

int do_list(const Context& ctx, const ListArgs& a) {
  validate_name("queue", a.queue);
  JobState state = parse_job_state(a.state);
  if (a.limit < 1 || a.limit > 1000) {
    throw InvalidArgument("--limit " + std::to_string(a.limit) + " is outside [1, 1000]");
  }
  std::optional<JobId> after;
  if (!a.after.empty()) after = JobId::parse(a.after);

  auto client = open_client(ctx, Access::must_exist);
  Queue queue(client, a.queue);
  JobPage page = sync_wait(queue.list(state, after, a.limit));
  if (ctx.json) {
    boost::json::array jobs;
    for (const auto& j : page.jobs) jobs.push_back(job_to_json(j));
    print_json({{"queue", a.queue},
                {"state", std::string(to_string(state))},
                {"jobs", std::move(jobs)},
                {"next", page.next ? boost::json::value(page.next->str()) : boost::json::value(nullptr)}});
    return kExitOk;
  }
  Table t({"ID", "TASK", "STATE", "ATTEMPTS", "PRIORITY", "CREATED", "RUN AT", "ERROR"});
  for (const auto& j : page.jobs) {
    t.add({j.id.str(), j.task, std::string(to_string(j.state)),
           std::to_string(j.attempts_made) + "/" + std::to_string(j.options.attempts),
           std::to_string(j.options.priority), format_time_ms(j.created_ms),
           format_time_ms(j.run_at_ms), ellipsize(j.error, 40)});
  }
  if (t.empty()) {
    std::cout << "no " << to_string(state) << " jobs in queue " << a.queue << '\n';
  } else {
    t.print(std::cout);
  }
  if (page.next) std::cout << "more: --after " << page.next->str() << '\n';
  return kExitOk;
}

int do_retry_or_remove(const Context& ctx, const std::string& id_text, bool retry) {
  JobId id = JobId::parse(id_text);
  auto client = open_client(ctx, Access::must_exist);
  if (retry) {
    sync_wait(client->retry(id));
  } else {
    sync_wait(client->remove(id));
  }
  if (ctx.json) {
    print_json({{"id", id.str()}, {retry ? "retried" : "removed", true}});
  } else {
    std::cout << (retry ? "retried " : "removed ") << id.str() << '\n';
  }
  return kExitOk;
}

int do_cancel(const Context& ctx, const std::string& id_text) {
  JobId id = JobId::parse(id_text);
  auto client = open_client(ctx, Access::must_exist);
  JobState state = sync_wait(client->cancel(id));
  bool cancelled = state == JobState::cancelled;
  if (ctx.json) {
    print_json({{"id", id.str()}, {"cancelled", cancelled}, {"stop_requested", !cancelled},
                {"state", std::string(to_string(state))}});
  } else if (cancelled) {
    std::cout << "cancelled " << id.str() << '\n';
  } else {
    std::cout << "asked " << id.str() << " to stop (it is active; it ends cancelled if its handler stops)\n";
  }
  return kExitOk;
}

int do_logs(const Context& ctx, const std::string& id_text, std::size_t limit) {
  JobId id = JobId::parse(id_text);
  if (limit < 1 || limit > 10000) {
    throw InvalidArgument("--limit " + std::to_string(limit) + " is outside [1, 10000]");
  }
  auto client = open_client(ctx, Access::must_exist);
  if (!sync_wait(client->backend().get(id))) throw NotFound("job " + id.str() + " not found");
  std::vector<LogLine> lines = sync_wait(client->logs(id, limit));
  // Handlers write what they like into their log: redacted line by line
  // before --json escapes it (the redaction of all output comes on top).
  for (auto& l : lines) l.text = redact_text(l.text);
  if (ctx.json) {
    boost::json::array arr;
    for (const auto& l : lines) arr.push_back({{"time_ms", l.time_ms}, {"text", l.text}});
    print_json({{"id", id.str()}, {"lines", std::move(arr)}});
    return kExitOk;
  }
  for (const auto& l : lines) std::cout << format_time_ms(l.time_ms) << "  " << l.text << '\n';
  return kExitOk;
}

}  // namespace

JobOptions JobOptionFlags::resolve() const {
  JobOptions o = options;
  o.backoff.kind = backoff_kind == "fixed" ? Backoff::Kind::fixed : Backoff::Kind::exponential;
  if (!timeout.empty()) o.timeout_ms = parse_cli_duration("--timeout", timeout);
  if (!ttl.empty()) o.ttl_ms = parse_cli_duration("--ttl", ttl);
  validate_options(o);
  return o;
}

void add_job_option_flags(CLI::App* cmd, JobOptionFlags& f) {
  JobOptions& o = f.options;
  cmd->add_option("--priority", o.priority, "lower runs first, [-1000000, 1000000] (default 0)");
  cmd->add_option("--attempts", o.attempts, "total attempts including the first, [1, 1000] (default 1)");
  cmd->add_option("--backoff", f.backoff_kind, "fixed or exponential (default exponential)")
      ->check(CLI::IsMember({"fixed", "exponential"}));
  cmd->add_option("--backoff-delay", o.backoff.delay_ms, "base wait before a retry, ms (default 1000)");
  cmd->add_option("--backoff-max", o.backoff.max_delay_ms, "longest wait before a retry, ms (default 3600000)");
  cmd->add_option("--jitter", o.backoff.jitter, "0..1: random share taken off each wait (default 0.2)");
  cmd->add_option("--timeout", f.timeout,
                  "per-attempt time limit: 500ms, 30s, 5m, 1h, or ms (default 0: none)");
  cmd->add_option("--ttl", f.ttl,
                  "expire the job if not started within this long of being added (default: never)");
  cmd->add_flag("--lifo", o.lifo, "take before other waiting jobs of the same priority");
  cmd->add_option("--subject", o.subject, "data subject id, for erasure (never printed)");
  cmd->add_option("--group", o.group,
                  "group key, e.g. a tenant (at most 256 bytes): a queue limited per group "
                  "limits each key separately");
}

void add_job_commands(CLI::App& app, Context& ctx) {
  auto* job = app.add_subcommand("job", "add, inspect and operate jobs");
  job->require_subcommand(1);

  // add
  auto add_args = std::make_shared<AddArgs>();
  auto* add = job->add_subcommand("add", "add a job; prints its id once it is durable");
  add->add_option("queue", add_args->queue, "queue name")->required();
  add->add_option("task", add_args->task, "task name")->required();
  auto* payload_opt = add->add_option("--payload", add_args->payload, "JSON payload (default {})");
  add->add_option("--payload-file", add_args->payload_file,
                  "read the JSON payload from a file ('-' for stdin)")
      ->excludes(payload_opt);
  add_job_option_flags(add, add_args->flags);
  add->add_option("--delay", add_args->delay_ms, "run no sooner than this many ms from now");
  add->add_option("--idempotency-window", add_args->idempotency_window,
                  "keep deduplicating this long after the job finished (needs --idempotency-key)");
  add->add_option("--idempotency-key", add_args->idempotency_key, "deduplication key (at most 256 bytes)");
  add->callback([&ctx, add_args] { ctx.action = [&ctx, add_args] { return do_add(ctx, *add_args); }; });

  // show
  auto show_id = std::make_shared<std::string>();
  auto* show = job->add_subcommand("show", "show one job");
  show->add_option("id", *show_id, "job id")->required();
  show->callback([&ctx, show_id] { ctx.action = [&ctx, show_id] { return do_show(ctx, *show_id); }; });

  // list
  auto list_args = std::make_shared<ListArgs>();
  auto* list = job->add_subcommand("list", "list a queue's jobs in one state, oldest first");
  list->add_option("queue", list_args->queue, "queue name")->required();
  list->add_option("--state", list_args->state,
                   "waiting, delayed, active, completed, failed, dead, expired, cancelled or "
                   "waiting-children (default waiting)");
  list->add_option("--limit", list_args->limit, "at most this many, 1..1000 (default 50)");
  list->add_option("--after", list_args->after, "start after this job id (the 'more:' cursor)");
  list->callback([&ctx, list_args] { ctx.action = [&ctx, list_args] { return do_list(ctx, *list_args); }; });

  // retry
  auto retry_id = std::make_shared<std::string>();
  auto* retry = job->add_subcommand("retry", "move a failed or dead job back to waiting");
  retry->add_option("id", *retry_id, "job id")->required();
  retry->callback([&ctx, retry_id] {
    ctx.action = [&ctx, retry_id] { return do_retry_or_remove(ctx, *retry_id, true); };
  });

  // cancel
  auto cancel_id = std::make_shared<std::string>();
  auto* cancel = job->add_subcommand(
      "cancel", "cancel a job: a waiting one at once, an active one is asked to stop");
  cancel->add_option("id", *cancel_id, "job id")->required();
  cancel->callback([&ctx, cancel_id] {
    ctx.action = [&ctx, cancel_id] { return do_cancel(ctx, *cancel_id); };
  });

  // logs
  auto logs_id = std::make_shared<std::string>();
  auto logs_limit = std::make_shared<std::size_t>(1000);
  auto* logs = job->add_subcommand("logs", "the log lines a job's handler wrote, oldest first");
  logs->add_option("id", *logs_id, "job id")->required();
  logs->add_option("--limit", *logs_limit, "at most this many lines, 1..10000 (default 1000)");
  logs->callback([&ctx, logs_id, logs_limit] {
    ctx.action = [&ctx, logs_id, logs_limit] { return do_logs(ctx, *logs_id, *logs_limit); };
  });

  // remove
  auto remove_id = std::make_shared<std::string>();
  auto* remove = job->add_subcommand("remove", "delete a job (not while it is active)");
  remove->add_option("id", *remove_id, "job id")->required();
  remove->callback([&ctx, remove_id] {
    ctx.action = [&ctx, remove_id] { return do_retry_or_remove(ctx, *remove_id, false); };
  });
}

}  // namespace asyncmq::cli

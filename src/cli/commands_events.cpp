// `asyncmq events tail [QUEUE]`: prints the backend's event log live, from
// any process (Backend::read_events), one line per event (`--json`: one
// JSON object per line).
//
// A `progress` event carries no value (see EventType in backend.hpp: the
// value is sealed in the job row only). For each one, tail reads the job and
// shows its progress as it is when the line is printed, decoded with this
// process's keys and redacted: "now: VALUE" (--json: "progress" and
// "progress_error"). A value that fails to open is shown as an integrity
// error for that field; a job removed meanwhile shows nothing.
//
// It polls: the event log is a table, not a push channel, so the poll
// interval bounds the delay. Time goes through Env (sleep_for), like every
// wait in asyncmq.
//
// A store records events only while it is followed (Backend::follow_events):
// tail holds a lease of kFollowLease and renews it as it goes, so its events
// are recorded from the moment it starts until shortly after it stops.
// `events record --for D` holds one without printing, for a later
// `tail --from-start` to find the history of that time.
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_features.hpp"
#include "security/redaction.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <iostream>
#include <map>
#include <memory>

namespace asyncmq::cli {
namespace {

// A job's current progress, as tail shows it.
struct ProgressNow {
  bool found = false;           // the job still exists
  boost::json::value value;     // decoded and redacted; null if none
  std::string error;            // why it failed to open
};

ProgressNow progress_now(Client& client, const JobId& id) {
  ProgressNow p;
  auto job = sync_wait(client.backend().get(id));
  if (!job) return p;
  p.found = true;
  if (!client.decode_progress(*job)) {
    p.error = redact_text(job->progress_error);
    return p;
  }
  if (job->progress.empty()) return p;
  boost::system::error_code ec;
  p.value = boost::json::parse(job->progress, ec);
  if (ec) p.value = job->progress;
  security::current_redactor()->redact_json(p.value);
  return p;
}

// Long enough that a tail stopped by a slow poll or a busy machine keeps
// its lease; short enough that a killed one leaves the store unfollowed soon.
constexpr std::int64_t kFollowLease = 60'000;

struct TailArgs {
  std::string queue;
  bool from_start = false;
  std::int64_t count = 0;       // stop after this many events; 0: never
  std::int64_t poll_ms = 200;
};

int do_tail(const Context& ctx, const TailArgs& a) {
  if (!a.queue.empty()) validate_name("queue", a.queue);
  if (a.count < 0) throw InvalidArgument("--count must not be negative");
  if (a.poll_ms < 10 || a.poll_ms > 60'000) {
    throw InvalidArgument("--poll-ms " + std::to_string(a.poll_ms) + " is outside [10, 60000]");
  }
  auto client = open_client(ctx, Access::must_exist);
  Backend& backend = client->backend();
  Env& env = client->env();

  std::int64_t renewed_ms = env.now_ms();
  std::int64_t after = sync_wait(backend.follow_events(renewed_ms + kFollowLease));
  if (a.from_start) after = 0;
  std::int64_t printed = 0;
  for (;;) {
    if (env.now_ms() - renewed_ms > kFollowLease / 3) {
      renewed_ms = env.now_ms();
      sync_wait(backend.follow_events(renewed_ms + kFollowLease));
    }
    EventPage page = sync_wait(backend.read_events(after, 1000));
    if (page.last_seq >= 0) after = page.last_seq;
    std::map<JobId, ProgressNow> progress;  // one read per job and page
    for (const auto& e : page.events) {
      if (!a.queue.empty() && e.queue != a.queue) continue;
      // Details are redacted here, whole, before --json escapes them or the
      // text form cuts them (the line-wise redaction of all output comes on
      // top).
      const std::string detail = redact_text(e.detail);
      const ProgressNow* now = nullptr;
      if (e.type == EventType::progress && !e.job.is_nil()) {
        auto it = progress.find(e.job);
        if (it == progress.end()) it = progress.emplace(e.job, progress_now(*client, e.job)).first;
        now = &it->second;
      }
      if (ctx.json) {
        boost::json::object o{{"seq", e.seq},
                              {"time_ms", e.time_ms},
                              {"type", std::string(to_string(e.type))},
                              {"queue", e.queue},
                              {"job", e.job.is_nil() ? boost::json::value(nullptr)
                                                     : boost::json::value(e.job.str())},
                              {"detail", detail}};
        if (now) {
          o["progress"] = now->value;
          o["progress_error"] =
              now->error.empty() ? boost::json::value(nullptr) : boost::json::value(now->error);
        }
        print_json(o);
      } else {
        std::cout << format_time_ms(e.time_ms) << "  " << to_string(e.type) << "  " << e.queue
                  << "  " << (e.job.is_nil() ? std::string("-") : e.job.str());
        if (!detail.empty()) std::cout << "  " << ellipsize(detail, 200);
        if (now && !now->error.empty()) {
          std::cout << "  now: integrity error: " << now->error;
        } else if (now && !now->value.is_null()) {
          std::cout << "  now: " << ellipsize(boost::json::serialize(now->value), 200);
        }
        std::cout << std::endl;
      }
      if (a.count > 0 && ++printed >= a.count) return kExitOk;
    }
    if (page.events.size() < 1000) sync_wait(env.sleep_for(a.poll_ms));
  }
}

struct RecordArgs {
  std::string duration;
};

int do_record(const Context& ctx, const RecordArgs& a) {
  const std::int64_t ms = parse_duration_ms(a.duration);
  constexpr std::int64_t kMaxRecordMs = 30LL * 24 * 3600 * 1000;
  if (ms <= 0 || ms > kMaxRecordMs)
    throw InvalidArgument("--for " + a.duration + " is outside (0, 30d]: give a duration such as 2h");
  auto client = open_client(ctx, Access::must_exist);
  const std::int64_t until = client->env().now_ms() + ms;
  sync_wait(client->backend().follow_events(until));
  if (ctx.json) {
    print_json(boost::json::object{{"recording_until_ms", until}});
  } else {
    std::cout << "events are recorded until " << format_time_ms(until)
              << " (or later, if another follower asked for longer)" << std::endl;
  }
  return kExitOk;
}

}  // namespace

void add_events_commands(CLI::App& app, Context& ctx) {
  auto* events = app.add_subcommand("events", "follow what happens to jobs, from any process");
  events->require_subcommand(1);
  auto args = std::make_shared<TailArgs>();
  auto* tail = events->add_subcommand("tail", "print events live (all queues when none given)");
  tail->add_option("queue", args->queue, "only this queue's events");
  tail->add_flag("--from-start", args->from_start, "start with the oldest event kept, not the next one");
  tail->add_option("--count", args->count, "exit after this many events (default: run until killed)");
  tail->add_option("--poll-ms", args->poll_ms, "how often to look for new events, ms (default 200)");
  tail->callback([&ctx, args] { ctx.action = [&ctx, args] { return do_tail(ctx, *args); }; });
  auto rec = std::make_shared<RecordArgs>();
  auto* record = events->add_subcommand(
      "record", "record events for a while without printing them (for a later tail --from-start)");
  record->add_option("--for", rec->duration, "how long, e.g. 30m, 12h, 7d (at most 30d)")->required();
  record->callback([&ctx, rec] { ctx.action = [&ctx, rec] { return do_record(ctx, *rec); }; });
}

}  // namespace asyncmq::cli

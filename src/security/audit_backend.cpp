// Coroutine bodies here follow the GCC 12 rules in backend.hpp: no braced
// initialiser lists, requests built as named variables before co_await.
#include "security/audit_backend.hpp"

#include "core/forwarding_backend.hpp"

#include <algorithm>
#include <mutex>
#include <vector>
#include <unordered_map>

namespace asyncmq::security {
namespace {

using boost::asio::awaitable;

struct Claimed {
  std::string queue;
  std::string subject;
  std::string actor;
};

class AuditingBackend final : public core::ForwardingBackend {
 public:
  AuditingBackend(std::shared_ptr<Backend> inner, std::shared_ptr<AuditLog> log, std::string actor)
      : ForwardingBackend(std::move(inner)), log_(std::move(log)), actor_(std::move(actor)) {}

  awaitable<std::vector<JobId>> enqueue(std::vector<Job> jobs) override {
    struct Added {
      JobId id;
      std::string queue, subject;
      bool delayed;
    };
    std::vector<Added> added;
    added.reserve(jobs.size());
    for (const Job& j : jobs)
      added.push_back(Added{j.id, j.queue, j.options.subject, j.state == JobState::delayed});
    std::vector<JobId> ids = co_await inner().enqueue(std::move(jobs));
    std::vector<AuditEvent> events;
    events.reserve(added.size());
    for (std::size_t i = 0; i < added.size(); ++i) {
      // A deduplicated add stored nothing: audited as such, naming the job that stands.
      bool dedup = i < ids.size() && ids[i] != added[i].id;
      events.emplace_back(dedup ? "deduplicated" : "added", actor_,
                          dedup ? ids[i].str() : added[i].id.str(), added[i].queue,
                          added[i].subject, added[i].delayed ? "delayed" : "");
    }
    log_->append(events);
    co_return ids;
  }

  awaitable<std::vector<Job>> claim(const ClaimRequest& request) override {
    std::vector<Job> jobs = co_await inner().claim(request);
    if (jobs.empty()) co_return jobs;
    std::string actor = "worker:" + request.worker_id;
    std::vector<AuditEvent> events;
    events.reserve(jobs.size());
    {
      std::lock_guard lock(mu_);
      for (const Job& j : jobs) {
        events.emplace_back("claimed", actor, j.id.str(), j.queue, j.options.subject,
                            "attempt=" + std::to_string(j.attempts_made));
        Claimed c;
        c.queue = j.queue;
        c.subject = j.options.subject;
        c.actor = actor;
        claimed_[j.id] = std::move(c);
      }
    }
    log_->append(events);
    co_return jobs;
  }

  awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) override {
    struct Brief {
      JobId id;
      Outcome::Kind kind;
      std::int64_t run_at_ms;
    };
    std::vector<Brief> brief;
    brief.reserve(outcomes.size());
    for (const Outcome& o : outcomes) {
      Brief b;
      b.id = o.id;
      b.kind = o.kind;
      b.run_at_ms = o.run_at_ms;
      brief.push_back(b);
    }
    std::vector<bool> applied = co_await inner().finish(std::move(outcomes));
    std::vector<AuditEvent> events;
    events.reserve(brief.size());
    {
      std::lock_guard lock(mu_);
      for (std::size_t i = 0; i < brief.size(); ++i) {
        auto it = claimed_.find(brief[i].id);
        Claimed c;
        if (it != claimed_.end()) {
          c = std::move(it->second);
          claimed_.erase(it);
        } else {
          c.actor = actor_;
        }
        if (i >= applied.size() || !applied[i]) continue;
        const char* action = brief[i].kind == Outcome::Kind::completed   ? "completed"
                             : brief[i].kind == Outcome::Kind::retry     ? "retried"
                             : brief[i].kind == Outcome::Kind::cancelled ? "cancelled"
                                                                         : "dead";
        std::string detail =
            brief[i].kind == Outcome::Kind::retry ? "run_at=" + std::to_string(brief[i].run_at_ms) : "";
        events.emplace_back(action, std::move(c.actor), brief[i].id.str(), std::move(c.queue),
                            std::move(c.subject), std::move(detail));
      }
    }
    log_->append(events);
    co_return applied;
  }

  awaitable<ReclaimResult> reclaim_expired(std::int64_t now_ms, int max_stalls) override {
    ReclaimResult r = co_await inner().reclaim_expired(now_ms, max_stalls);
    if (r.requeued.empty() && r.dead.empty()) co_return r;
    std::vector<AuditEvent> events;
    for (int pass = 0; pass < 2; ++pass) {
      const std::vector<JobId>& ids = pass == 0 ? r.requeued : r.dead;
      for (const JobId& id : ids) {
        AuditEvent e = co_await describe_job(id, true);
        e.action = pass == 0 ? "stalled" : "dead";
        e.detail = pass == 0 ? "lease expired" : "stalled";
        events.push_back(std::move(e));
      }
    }
    log_->append(events);
    co_return r;
  }

  awaitable<void> remove(const JobId& id) override {
    AuditEvent e = co_await describe_job(id);
    co_await inner().remove(id);
    e.action = "removed";
    log_->append(e);
  }

  awaitable<void> retry(const JobId& id, std::int64_t now_ms) override {
    AuditEvent e = co_await describe_job(id);
    co_await inner().retry(id, now_ms);
    e.action = "retried";
    e.detail = "manual";
    log_->append(e);
  }

  awaitable<void> set_paused(std::string_view queue, bool paused) override {
    std::string q(queue);
    co_await inner().set_paused(q, paused);
    AuditEvent e(paused ? "paused" : "resumed", actor_, "", q);
    log_->append(e);
  }

  // ----- issue 4's transitions -----

  awaitable<std::vector<JobId>> expire_due(std::int64_t now_ms) override {
    std::vector<JobId> ids = co_await inner().expire_due(now_ms);
    std::vector<AuditEvent> events;
    for (const JobId& id : ids) {
      AuditEvent e = co_await describe_job(id);
      e.action = "expired";
      e.detail = "ttl";
      events.push_back(std::move(e));
    }
    if (!events.empty()) log_->append(events);
    co_return ids;
  }

  awaitable<JobState> cancel(const JobId& id, std::int64_t now_ms) override {
    AuditEvent e = co_await describe_job(id);
    JobState st = co_await inner().cancel(id, now_ms);
    e.action = "cancelled";
    e.detail = st == JobState::active ? "requested" : "";
    log_->append(e);
    co_return st;
  }

  awaitable<std::vector<JobId>> clean(std::string_view queue, JobState state,
                                      std::int64_t before_ms, std::size_t limit) override {
    std::string q(queue);
    std::vector<JobId> ids = co_await inner().clean(q, state, before_ms, limit);
    std::vector<AuditEvent> events;
    for (const JobId& id : ids)
      events.emplace_back("cleaned", actor_, id.str(), q, "",
                          "state=" + std::string(to_string(state)));
    if (!events.empty()) log_->append(events);
    co_return ids;
  }

  awaitable<std::size_t> drain(std::string_view queue) override {
    std::string q(queue);
    std::size_t n = co_await inner().drain(q);
    AuditEvent e("drained", actor_, "", q, "", "removed=" + std::to_string(n));
    log_->append(e);
    co_return n;
  }

  awaitable<std::size_t> obliterate(std::string_view queue, bool force) override {
    std::string q(queue);
    std::size_t n = co_await inner().obliterate(q, force);
    AuditEvent e("obliterated", actor_, "", q, "", "removed=" + std::to_string(n));
    log_->append(e);
    co_return n;
  }

  awaitable<void> set_rate_limit(std::string_view queue, RateLimit limit) override {
    std::string q(queue);
    co_await inner().set_rate_limit(q, limit);
    AuditEvent e("rate-limited", actor_, "", q, "",
                 "max=" + std::to_string(limit.max) + " interval_ms=" +
                     std::to_string(limit.interval_ms) +
                     " per_group=" + (limit.per_group ? "true" : "false"));
    log_->append(e);
  }

  awaitable<void> upsert_repeatable(Repeatable r) override {
    std::string q = r.queue;
    std::string detail = "name=" + r.name;
    co_await inner().upsert_repeatable(std::move(r));
    AuditEvent e("repeatable-set", actor_, "", q, "", detail);
    log_->append(e);
  }

  awaitable<void> remove_repeatable(std::string_view queue, std::string_view name) override {
    std::string q(queue);
    std::string detail = "name=" + std::string(name);
    co_await inner().remove_repeatable(q, name);
    AuditEvent e("repeatable-removed", actor_, "", q, "", detail);
    log_->append(e);
  }

  awaitable<void> set_repeatable_paused(std::string_view queue, std::string_view name, bool paused,
                                        std::int64_t next_fire_ms) override {
    std::string q(queue);
    std::string detail = "name=" + std::string(name);
    co_await inner().set_repeatable_paused(q, name, paused, next_fire_ms);
    AuditEvent e(paused ? "repeatable-paused" : "repeatable-resumed", actor_, "", q, "", detail);
    log_->append(e);
  }

  awaitable<bool> fire_repeatable(std::string_view queue, std::string_view name,
                                  std::int64_t expected_fire_ms, std::int64_t next_fire_ms,
                                  Job job) override {
    std::string q(queue);
    std::string id = job.id.str();
    std::string subject = job.options.subject;
    std::string detail = "repeatable=" + std::string(name);
    bool fired = co_await inner().fire_repeatable(q, name, expected_fire_ms, next_fire_ms,
                                                  std::move(job));
    if (fired) {
      AuditEvent e("added", actor_, id, q, subject, detail);
      log_->append(e);
    }
    co_return fired;
  }

 private:
  // The actor, queue and subject of a job: from a claim seen here (which is
  // forgotten if `forget`: the job left that worker), else read from the
  // store.
  awaitable<AuditEvent> describe_job(const JobId& id, bool forget = false) {
    AuditEvent e;
    e.actor = actor_;
    e.job = id.str();
    bool known = false;
    {
      std::lock_guard lock(mu_);
      auto it = claimed_.find(id);
      if (it != claimed_.end()) {
        e.queue = it->second.queue;
        e.subject = it->second.subject;
        if (forget) claimed_.erase(it);
        known = true;
      }
    }
    if (!known) {
      std::optional<Job> job = co_await inner().get(id);
      if (job) {
        e.queue = job->queue;
        e.subject = job->options.subject;
      }
    }
    co_return e;
  }

  std::shared_ptr<AuditLog> log_;
  std::string actor_;
  std::mutex mu_;
  std::unordered_map<JobId, Claimed> claimed_;  // GUARDED_BY(mu_)
};

}  // namespace

void audit_denials(const std::shared_ptr<Policy>& policy, const std::shared_ptr<AuditLog>& log) {
  static std::mutex mu;
  static std::vector<std::pair<std::weak_ptr<Policy>, std::weak_ptr<AuditLog>>> hooked;
  auto same = [](const auto& weak, const auto& shared) {
    return !weak.owner_before(shared) && !shared.owner_before(weak);
  };
  {
    std::lock_guard lock(mu);
    std::erase_if(hooked, [](const auto& p) { return p.first.expired() || p.second.expired(); });
    for (const auto& [p, l] : hooked)
      if (same(p, policy) && same(l, log)) return;
    hooked.emplace_back(policy, log);
  }
  std::weak_ptr<AuditLog> weak = log;
  policy->on_denial([weak](const Denial& d) {
    auto log = weak.lock();
    if (!log) return;
    AuditEvent e("denied", d.principal, "", d.queue == "*" ? "" : d.queue, "",
                 "action=" + std::string(to_string(d.action)));
    log->append(e);
  });
}

std::shared_ptr<Backend> make_auditing_backend(std::shared_ptr<Backend> inner,
                                               std::shared_ptr<AuditLog> log, std::string actor) {
  return std::make_shared<AuditingBackend>(std::move(inner), std::move(log), std::move(actor));
}

}  // namespace asyncmq::security

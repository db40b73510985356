// PolicyBackend (see policy_backend.hpp). Every override checks first and
// forwards second; nothing reaches the inner backend before the check.
//
// GCC 12: request objects and vectors are named variables before each
// co_await, and no braced lists appear inside the coroutines.
#include "security/policy_backend.hpp"

#include "core/forwarding_backend.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

namespace asyncmq::security {

void redact(Job& job) {
  job.payload = std::string(kRedacted);
  if (!job.result.empty()) job.result = std::string(kRedacted);
  if (!job.error.empty()) job.error = std::string(kRedacted);
  // Progress may hold anything a handler put there, like a log line.
  if (!job.progress.empty()) job.progress = std::string(kRedacted);
}

namespace {

using boost::asio::awaitable;

class PolicyBackend final : public core::ForwardingBackend {
 public:
  PolicyBackend(std::shared_ptr<Backend> inner, std::shared_ptr<const Principal> who,
                std::shared_ptr<Policy> policy)
      : ForwardingBackend(std::move(inner)), who_(std::move(who)), policy_(std::move(policy)) {}

  awaitable<std::vector<JobId>> enqueue(std::vector<Job> jobs) override {
    // A bulk add is usually all one queue: a linear search over the
    // distinct ones, not a node per job in a set.
    std::vector<std::string_view> queues;
    for (const auto& j : jobs)
      if (std::find(queues.begin(), queues.end(), j.queue) == queues.end()) queues.push_back(j.queue);
    for (auto q : queues) check(Action::add, q);
    co_return co_await inner().enqueue(std::move(jobs));
  }

  awaitable<std::vector<Job>> claim(const ClaimRequest& request) override {
    check(Action::claim, request.queue);
    auto jobs = co_await inner().claim(request);
    if (!jobs.empty()) remember(jobs);
    co_return jobs;
  }

  awaitable<std::vector<LeaseStatus>> heartbeat(std::vector<LeaseRef> leases,
                                                std::int64_t expires_ms) override {
    auto queues = co_await queues_of(leases);
    // One check per distinct queue of the batch, not one per job.
    for (auto q : distinct(queues))
      if (!q.empty()) check(Action::heartbeat, q);
    co_return co_await inner().heartbeat(std::move(leases), expires_ms);
  }

  awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) override {
    std::vector<LeaseRef> leases;
    leases.reserve(outcomes.size());
    for (const auto& o : outcomes) {
      LeaseRef l;
      l.id = o.id;
      l.token = o.token;
      leases.push_back(l);
    }
    auto queues = co_await queues_of(leases);
    // Usually one or two (queue, action) pairs per batch: a linear search.
    std::vector<std::pair<std::string_view, Action>> needed;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      Action a = outcomes[i].kind == Outcome::Kind::completed ? Action::complete : Action::fail;
      std::pair<std::string_view, Action> p(queues[i], a);
      if (!queues[i].empty() && std::find(needed.begin(), needed.end(), p) == needed.end())
        needed.push_back(p);
    }
    for (const auto& [q, a] : needed) check(a, q);
    auto applied = co_await inner().finish(std::move(outcomes));
    // Applied or refused (lease lost), these leases are done with. A call
    // that threw keeps them: the worker sends the same outcomes again.
    forget(leases);
    co_return applied;
  }

  awaitable<std::size_t> promote_due(std::int64_t now_ms) override {
    check_anywhere(Action::claim);
    co_return co_await inner().promote_due(now_ms);
  }

  awaitable<ReclaimResult> reclaim_expired(std::int64_t now_ms, int max_stalls) override {
    check_anywhere(Action::claim);
    co_return co_await inner().reclaim_expired(now_ms, max_stalls);
  }

  awaitable<std::optional<Job>> get(const JobId& id) override {
    auto job = co_await inner().get(id);
    if (job) {
      check(Action::read, job->queue);
      if (policy_->redacted(*who_, job->queue)) redact(*job);
    }
    co_return job;
  }

  awaitable<JobPage> list(const ListRequest& request) override {
    check(Action::read, request.queue);
    auto page = co_await inner().list(request);
    if (policy_->redacted(*who_, request.queue))
      for (auto& j : page.jobs) redact(j);
    co_return page;
  }

  awaitable<StateCounts> counts(std::string_view queue) override {
    check(Action::read, queue);
    co_return co_await inner().counts(queue);
  }

  awaitable<std::vector<std::string>> queues() override {
    auto all = co_await inner().queues();
    std::vector<std::string> visible;
    for (auto& q : all)
      if (allowed(Action::read, q)) visible.push_back(std::move(q));
    co_return visible;
  }

  awaitable<void> remove(const JobId& id) override {
    std::string queue = co_await queue_of(id);
    if (!queue.empty()) check(Action::remove, queue);
    co_await inner().remove(id);
  }

  awaitable<void> retry(const JobId& id, std::int64_t now_ms) override {
    std::string queue = co_await queue_of(id);
    if (!queue.empty()) check(Action::retry, queue);
    co_await inner().retry(id, now_ms);
  }

  awaitable<void> set_paused(std::string_view queue, bool paused) override {
    check(paused ? Action::pause : Action::resume, queue);
    co_await inner().set_paused(queue, paused);
  }

  awaitable<bool> is_paused(std::string_view queue) override {
    check_read_or_claim(queue);
    co_return co_await inner().is_paused(queue);
  }

  // ----- issue 4's calls: each checked like its closest older one -----

  awaitable<std::vector<JobId>> expire_due(std::int64_t now_ms) override {
    check_anywhere(Action::claim);
    co_return co_await inner().expire_due(now_ms);
  }

  awaitable<JobState> cancel(const JobId& id, std::int64_t now_ms) override {
    std::string queue = co_await queue_of(id);
    if (!queue.empty()) check(Action::cancel, queue);
    co_return co_await inner().cancel(id, now_ms);
  }

  awaitable<bool> set_progress(LeaseRef lease, std::string progress,
                               std::int64_t now_ms) override {
    std::string queue = co_await queue_of(lease);
    if (!queue.empty()) check(Action::heartbeat, queue);
    co_return co_await inner().set_progress(lease, std::move(progress), now_ms);
  }

  awaitable<bool> append_logs(LeaseRef lease, std::vector<LogLine> lines) override {
    std::string queue = co_await queue_of(lease);
    if (!queue.empty()) check(Action::heartbeat, queue);
    co_return co_await inner().append_logs(lease, std::move(lines));
  }

  awaitable<std::vector<LogLine>> logs(const JobId& id, std::size_t limit) override {
    std::string queue = co_await queue_of(id);
    if (!queue.empty()) check(Action::read, queue);
    auto lines = co_await inner().logs(id, limit);
    if (!queue.empty() && policy_->redacted(*who_, queue))
      for (auto& l : lines) l.text = std::string(kRedacted);
    co_return lines;
  }

  awaitable<std::vector<Job>> children(const JobId& parent) override {
    // A worker running the parent reads its children's results.
    std::string queue = co_await claimed_queue_of(parent);
    if (!queue.empty() && !allowed(Action::claim, queue))
      check(Action::read, queue);
    auto kids = co_await inner().children(parent);
    std::vector<Job> out;
    for (auto& k : kids) {
      if (!allowed(Action::read, k.queue) &&
          !allowed(Action::claim, queue))
        throw policy_->deny(*who_, Action::read, k.queue);
      if (!allowed(Action::claim, queue) && policy_->redacted(*who_, k.queue))
        redact(k);
      out.push_back(std::move(k));
    }
    co_return out;
  }

  awaitable<std::vector<JobId>> clean(std::string_view queue, JobState state,
                                      std::int64_t before_ms, std::size_t limit) override {
    check(Action::clean, queue);
    co_return co_await inner().clean(queue, state, before_ms, limit);
  }

  awaitable<std::size_t> drain(std::string_view queue) override {
    check(Action::clean, queue);
    co_return co_await inner().drain(queue);
  }

  awaitable<std::size_t> obliterate(std::string_view queue, bool force) override {
    // Destroys a queue's history: an administrator's act.
    check(Action::purge, queue);
    co_return co_await inner().obliterate(queue, force);
  }

  awaitable<void> set_rate_limit(std::string_view queue, RateLimit limit) override {
    check(Action::pause, queue);
    co_await inner().set_rate_limit(queue, limit);
  }

  awaitable<RateLimit> rate_limit(std::string_view queue) override {
    check_read_or_claim(queue);
    co_return co_await inner().rate_limit(queue);
  }

  awaitable<std::int64_t> rate_limited_until(std::string_view queue, std::int64_t now_ms) override {
    check_read_or_claim(queue);
    co_return co_await inner().rate_limited_until(queue, now_ms);
  }

  awaitable<void> upsert_repeatable(Repeatable r) override {
    // A schedule adds jobs for as long as it lives.
    check(Action::add, r.queue);
    co_await inner().upsert_repeatable(std::move(r));
  }

  awaitable<void> remove_repeatable(std::string_view queue, std::string_view name) override {
    check(Action::remove, queue);
    co_await inner().remove_repeatable(queue, name);
  }

  awaitable<void> set_repeatable_paused(std::string_view queue, std::string_view name,
                                        bool paused, std::int64_t next_fire_ms) override {
    check(paused ? Action::pause : Action::resume, queue);
    co_await inner().set_repeatable_paused(queue, name, paused, next_fire_ms);
  }

  awaitable<std::vector<Repeatable>> repeatables(std::string_view queue) override {
    if (!queue.empty()) check_read_or_claim(queue);
    auto all = co_await inner().repeatables(queue);
    std::vector<Repeatable> out;
    for (auto& r : all) {
      if (!allowed(Action::read, r.queue) &&
          !allowed(Action::claim, r.queue))
        continue;
      if (policy_->redacted(*who_, r.queue)) r.payload = std::string(kRedacted);
      out.push_back(std::move(r));
    }
    co_return out;
  }

  awaitable<bool> fire_repeatable(std::string_view queue, std::string_view name,
                                  std::int64_t expected_fire_ms, std::int64_t next_fire_ms,
                                  Job job) override {
    check(Action::add, queue);
    co_return co_await inner().fire_repeatable(queue, name, expected_fire_ms, next_fire_ms,
                                               std::move(job));
  }

  // Whoever may read some queue may follow: what it then reads is cut to
  // its queues (read_events).
  awaitable<std::int64_t> follow_events(std::int64_t until_ms) override {
    check_anywhere(Action::read);
    std::int64_t seq = co_await inner().follow_events(until_ms);
    co_return seq;
  }

  awaitable<EventPage> read_events(std::int64_t after_seq, std::size_t limit) override {
    // Events of queues this principal may not read are left out; last_seq
    // still moves past them.
    EventPage page = co_await inner().read_events(after_seq, limit);
    std::erase_if(page.events, [&](const Event& e) { return !allowed(Action::read, e.queue); });
    co_return page;
  }

  // ----- issue 5's calls: whole-store administration -----
  // They cross every queue and hand out sealed bytes (scan) or replace them
  // (rewrite_sealed) or delete whole jobs (purge_subject), so a grant on
  // some queues is not enough: the admin action on all of them ("*", as the
  // CLI's own check asks).

  awaitable<JobPage> scan(std::optional<JobId> after, std::size_t limit) override {
    check(Action::keys, "*");
    co_return co_await inner().scan(after, limit);
  }

  awaitable<std::vector<bool>> rewrite_sealed(std::vector<SealedRewrite> rewrites) override {
    check(Action::keys, "*");
    co_return co_await inner().rewrite_sealed(std::move(rewrites));
  }

  awaitable<PurgeResult> purge_subject(std::string subject) override {
    check(Action::purge, "*");
    co_return co_await inner().purge_subject(std::move(subject));
  }

  // The audit table holds every queue's records: an administrator's, on
  // every queue ("*"), like `asyncmq audit verify|export`. Appending is the
  // auditing decorator's, below this one; through here it needs the same.
  awaitable<void> append_audit_chain(std::vector<AuditChainLine> lines) override {
    check(Action::audit, "*");
    co_await inner().append_audit_chain(std::move(lines));
  }

  awaitable<std::vector<AuditChainLine>> read_audit_chain(std::int64_t after_seq,
                                                         std::size_t limit) override {
    check(Action::audit, "*");
    co_return co_await inner().read_audit_chain(after_seq, limit);
  }

  awaitable<std::int64_t> audit_chain_head() override {
    check(Action::audit, "*");
    co_return co_await inner().audit_chain_head();
  }

 private:
  // Policy::allowed for this principal, from the decisions kept under the
  // policy's current generation when one is there. Only grants are kept: a
  // denial asks the policy every time, so that every one is counted, logged
  // and audited by check() (and a grant added by a reload is seen at once).
  bool allowed(Action a, std::string_view queue) { return allowed(a, queue, false); }

  // allowed(), or Policy::deny's error (counter, log, observers) thrown.
  void check(Action a, std::string_view queue) {
    if (!allowed(a, queue, false)) throw policy_->deny(*who_, a, queue);
  }

  bool allowed(Action a, std::string_view queue, bool anywhere) {
    // Read first: a decision made below is then at least as new as the
    // generation it is kept under, never older.
    const std::uint64_t generation = policy_->generation();
    {
      std::lock_guard lock(cache_mu_);
      if (generation != cache_generation_) {
        granted_.clear();
        cache_generation_ = generation;
      }
      for (const auto& g : granted_)
        if (g.action == a && g.anywhere == anywhere && g.queue == queue) return true;
    }
    bool ok = anywhere ? policy_->allowed_anywhere(*who_, a) : policy_->allowed(*who_, a, queue);
    if (!ok) return false;
    std::lock_guard lock(cache_mu_);
    // Another thread may have seen a newer generation meanwhile: then this
    // decision is not kept (the next call decides again).
    if (generation == cache_generation_) {
      // Bounded: a principal that touches many queues decides afresh
      // rather than growing the handle without limit.
      if (granted_.size() >= kMaxGranted) granted_.clear();
      granted_.push_back(Granted{a, anywhere, std::string(queue)});
    }
    return true;
  }

  void check_read_or_claim(std::string_view queue) {
    if (!allowed(Action::read, queue) &&
        !allowed(Action::claim, queue))
      throw policy_->deny(*who_, Action::read, queue);
  }

  void check_anywhere(Action a) {
    if (!allowed(a, "*", true)) throw policy_->deny(*who_, a, "*");
  }

  // A job claimed through here and not yet finished: its lease and its
  // queue's name in queue_names_ (nullptr: being forgotten).
  struct Claimed {
    std::uint64_t token = 0;
    JobId id;
    const std::string* queue = nullptr;
    bool operator<(const Claimed& o) const {
      return token != o.token ? token < o.token : id < o.id;
    }
  };

  // Records the leases `jobs` were just claimed under, with their queue.
  void remember(const std::vector<Job>& jobs) {
    std::lock_guard lock(mu_);
    const std::string* queue = nullptr;
    for (const auto& j : jobs) {
      // A claim names one queue: one interning per batch, not per job.
      if (!queue || *queue != j.queue) queue = &intern_locked(j.queue);
      Claimed c{j.lease.token, j.id, queue};
      // Tokens grow claim by claim, so this is nearly always an append.
      if (claimed_.empty() || !(c < claimed_.back()))
        claimed_.push_back(c);
      else
        claimed_.insert(std::upper_bound(claimed_.begin(), claimed_.end(), c), c);
    }
  }

  // Drops the entries of `leases` (those that have one).
  void forget(const std::vector<LeaseRef>& leases) {
    std::lock_guard lock(mu_);
    bool any = false;
    for (const auto& l : leases) {
      auto it = find_locked(l);
      if (it != claimed_.end()) {
        it->queue = nullptr;
        any = true;
      }
    }
    // One compaction per batch: erasing one by one would move the tail once
    // per job.
    if (any) std::erase_if(claimed_, [](const Claimed& c) { return c.queue == nullptr; });
  }

  // REQUIRES: mu_ held.
  std::vector<Claimed>::iterator find_locked(const LeaseRef& l) {
    Claimed key{l.token, l.id, nullptr};
    auto it = std::lower_bound(claimed_.begin(), claimed_.end(), key);
    return it != claimed_.end() && it->token == l.token && it->id == l.id && it->queue ? it
                                                                                        : claimed_.end();
  }

  // The queues of leases `leases`, in order: remembered from claim (one lock
  // for the batch), else looked up one by one. Empty for a job that does not
  // exist (the inner call then reports it). The views point into
  // queue_names_, which only grows: they stay valid after the lock.
  awaitable<std::vector<std::string_view>> queues_of(const std::vector<LeaseRef>& leases) {
    std::vector<std::string_view> out(leases.size());
    std::vector<std::size_t> unknown;
    {
      std::lock_guard lock(mu_);
      for (std::size_t i = 0; i < leases.size(); ++i) {
        auto it = find_locked(leases[i]);
        if (it != claimed_.end()) {
          out[i] = *it->queue;
        } else {
          unknown.push_back(i);
        }
      }
    }
    for (std::size_t i : unknown) {
      std::string q = co_await queue_of(leases[i].id);
      std::lock_guard lock(mu_);
      out[i] = intern_locked(q);
    }
    co_return out;
  }

  static std::vector<std::string_view> distinct(const std::vector<std::string_view>& queues) {
    std::vector<std::string_view> out;
    for (auto q : queues)
      if (std::find(out.begin(), out.end(), q) == out.end()) out.push_back(q);
    return out;
  }

  // The one stored copy of queue name `q`. REQUIRES: mu_ held.
  const std::string& intern_locked(std::string_view q) {
    auto it = queue_names_.find(q);
    if (it == queue_names_.end()) it = queue_names_.emplace(q).first;
    return *it;
  }

  // The queue of the job under lease `lease`: remembered from claim, else
  // looked up. Empty when the job does not exist (the inner call then
  // reports that).
  awaitable<std::string> queue_of(const LeaseRef& lease) {
    std::string known;
    {
      std::lock_guard lock(mu_);
      auto it = find_locked(lease);
      if (it != claimed_.end()) known = *it->queue;
    }
    if (!known.empty()) co_return known;
    co_return co_await queue_of(lease.id);
  }

  // The queue of job `id`: remembered from claim (under any lease: the
  // caller has only the id), else looked up. A linear search: children() is
  // a handler's call, not the worker loop's.
  awaitable<std::string> claimed_queue_of(const JobId& id) {
    std::string known;
    {
      std::lock_guard lock(mu_);
      for (const auto& c : claimed_)
        if (c.id == id && c.queue) {
          known = *c.queue;
          break;
        }
    }
    if (!known.empty()) co_return known;
    co_return co_await queue_of(id);
  }

  // The queue of job `id`, looked up. Empty when the job does not exist.
  awaitable<std::string> queue_of(const JobId& id) {
    auto job = co_await inner().get(id);
    co_return job ? job->queue : std::string();
  }

  // A decision that allowed: `action` on `queue`, or on some queue
  // (`anywhere`, the maintenance calls; queue "*").
  struct Granted {
    Action action;
    bool anywhere;
    std::string queue;
  };
  static constexpr std::size_t kMaxGranted = 64;

  std::shared_ptr<const Principal> who_;
  std::shared_ptr<Policy> policy_;
  // Why keep decisions: without it every call ran the whole policy (every
  // grant's principal and queue globs, and the principal's id built anew)
  // however often the same worker asked the same question; a worker asks
  // a handful of them. A linear search: the pairs are few.
  std::mutex cache_mu_;
  std::uint64_t cache_generation_ = 0;  // GUARDED_BY(cache_mu_)
  std::vector<Granted> granted_;        // GUARDED_BY(cache_mu_)
  std::mutex mu_;
  // The jobs claimed through here and not yet finished, sorted by (token,
  // id). Keyed by the whole lease, not the id alone, and found only when
  // both match: an entry says what this decorator's own claim returned, so
  // its queue is the job's whatever a caller names. Why a sorted vector and
  // not a hash map by id: the map was a node allocation and a free per job
  // on the worker's path, between a claim's return and its jobs starting
  // and between a finish and the next claim; here a claim appends (tokens
  // grow) into reused capacity and a finish compacts once. Why not a map
  // to a std::string, as first: a node and two string copies per job
  // (policy on/off 0.96 end to end). The queue names this principal works
  // on are few, kept for the decorator's life.
  std::vector<Claimed> claimed_;                      // GUARDED_BY(mu_)
  std::set<std::string, std::less<>> queue_names_;          // GUARDED_BY(mu_)
};

}  // namespace

std::shared_ptr<Backend> make_policy_backend(std::shared_ptr<Backend> inner,
                                             std::shared_ptr<const Principal> who,
                                             std::shared_ptr<Policy> policy) {
  if (!inner || !who || !policy) throw InvalidArgument("a policy backend needs a backend, a principal and a policy");
  return std::make_shared<PolicyBackend>(std::move(inner), std::move(who), std::move(policy));
}

}  // namespace asyncmq::security

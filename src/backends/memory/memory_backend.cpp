#include "backends/memory/memory_backend.hpp"
#include "backends/audit_entries.hpp"
#include "core/audit_actor.hpp"
#include "backends/validate.hpp"

#include <asyncmq/env.hpp>
#include <asyncmq/error.hpp>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace asyncmq::backends {
namespace {

// Claim order: priority ascending, then LIFO jobs newest first (negative
// ord), then FIFO jobs oldest first.
using WaitKey = std::tuple<std::int32_t, std::int64_t, JobId>;

std::int64_t ord_of(const Job& j) {
  return j.options.lifo ? -j.id.order_key() : j.id.order_key();
}

// Deliberately not noexcept: libstdc++ then caches each node's hash code, so
// lookups and rehashes of a large table compare cached codes instead of
// re-hashing every node they pass (a cache miss each). Measured: about a
// third of the backend's time went there.
struct IdHash {
  std::size_t operator()(const JobId& id) const { return std::hash<JobId>()(id); }
};

struct QueueData {
  std::set<WaitKey> waiting;
  std::multimap<std::int64_t, JobId> timed;  // delayed and failed, by run_at
  StateCounts counts{};
  bool paused = false;
  RateLimit limit;
  // Finish times inside the limit's window, with each job's group, kept while
  // the queue is limited in either mode: switching modes counts the same jobs.
  std::deque<std::pair<std::int64_t, std::string>> finished_log;
  // Only while the limit is per group: each group's waiting jobs in claim
  // order (a subset of `waiting`; no empty sets), so that a claim looks at
  // each group's head instead of walking past a busy group's backlog.
  std::map<std::string, std::set<WaitKey>, std::less<>> group_waiting;
};

// A group's use of its per-group limit: jobs active or finished within the
// window, and the oldest such finish (while `has_oldest`).
struct GroupUse {
  std::int64_t used = 0;
  std::int64_t oldest = 0;
  bool has_oldest = false;
};

struct IdemEntry {
  JobId job;
  std::int64_t until_ms = 0;  // 0: for as long as the job exists
};

// True if `lines` begins with exactly `texts` (rewrite_sealed's compare of
// log lines; lines after them are not looked at).
bool first_lines_are(const std::vector<LogLine>& lines, const std::vector<std::string>& texts) {
  if (lines.size() < texts.size()) return false;
  for (std::size_t k = 0; k < texts.size(); ++k)
    if (lines[k].text != texts[k]) return false;
  return true;
}

std::int64_t ttl_deadline(const Job& j) {
  return j.options.ttl_ms > 0 && j.attempts_made == 0 ? j.created_ms + j.options.ttl_ms : 0;
}

// The event log's newest kEventRetention events, oldest first. Why a ring
// of compact entries and not a deque of Event: every transition of every job
// of a followed store emits an event, and an Event carried a heap copy of
// its queue's name while the deque took a new block every six events; that
// was most of the allocations the event bus added to a job's way through
// the store. Entries name their queue by a pointer into `names`, whose
// strings outlive every entry; seqs are consecutive, so none is stored.
//
// Only events of times before the follow lease's end are kept (see
// Backend::follow_events).
class EventRing {
 public:
  void push(std::int64_t time_ms, EventType type, const std::string& queue, const JobId& job,
            std::string detail) {
    if (time_ms >= followed_until_) return;
    Entry e{time_ms, &*names_.insert(queue).first, job, std::move(detail), type};
    if (entries_.size() < static_cast<std::size_t>(kEventRetention)) {
      entries_.push_back(std::move(e));
    } else {
      entries_[head_] = std::move(e);
      head_ = (head_ + 1) % entries_.size();
    }
    ++last_seq_;
  }
  // Returns the newest seq (0: none yet).
  std::int64_t follow_until(std::int64_t until_ms) {
    followed_until_ = std::max(followed_until_, until_ms);
    return last_seq_;
  }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  std::int64_t first_seq() const {
    return last_seq_ - static_cast<std::int64_t>(entries_.size()) + 1;
  }
  // The i-th oldest event held.
  Event at(std::size_t i) const {
    const Entry& e = entries_[(head_ + i) % entries_.size()];
    Event out;
    out.seq = first_seq() + static_cast<std::int64_t>(i);
    out.time_ms = e.time_ms;
    out.type = e.type;
    out.queue = *e.queue;
    out.job = e.job;
    out.detail = e.detail;
    return out;
  }

 private:
  struct Entry {
    std::int64_t time_ms;
    const std::string* queue;
    JobId job;
    std::string detail;
    EventType type;
  };
  std::vector<Entry> entries_;
  std::size_t head_ = 0;  // the oldest entry, once the ring is full
  std::int64_t last_seq_ = 0;
  std::int64_t followed_until_ = 0;  // events of times before it are kept
  // Every queue name an event has carried (a queue's removal leaves its
  // name: older events still show it).
  std::set<std::string, std::less<>> names_;
};

class MemoryBackend final : public Backend {
 public:
  explicit MemoryBackend(Env& env) : env_(env), next_token_(env.random_u64() | 1) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(env.random_u64()));
    store_id_ = hex;
  }

  boost::asio::awaitable<std::vector<JobId>> enqueue(std::vector<Job> jobs) override {
    std::lock_guard lock(mu_);
    AuditEntries audit = audit_locked();
    auto ids = enqueue_locked(std::move(jobs), audit);
    commit_audit_locked(audit);
    co_return ids;
  }

  boost::asio::awaitable<std::vector<Job>> claim(const ClaimRequest& r) override {
    std::vector<Job> out;
    std::lock_guard lock(mu_);
    auto it = queues_.find(r.queue);
    if (it == queues_.end()) co_return out;
    QueueData& q = it->second;
    promote_locked(q, r.now_ms);
    if (q.paused) co_return out;
    AuditEntries audit = audit_locked();
    if (q.limit.max > 0 && q.limit.per_group) {
      claim_per_group_locked(q, r, out, audit);
      commit_audit_locked(audit);
      co_return out;
    }
    std::size_t max = std::min(r.max, allowance_locked(q, r.now_ms));
    out.reserve(std::min(max, q.waiting.size()));
    while (out.size() < max && !q.waiting.empty()) {
      auto node = q.waiting.extract(q.waiting.begin());
      Job& j = jobs_.at(std::get<2>(node.value()));
      if (std::int64_t d = ttl_deadline(j); d > 0 && d <= r.now_ms) {
        expire_locked(q, j, r.now_ms, audit);
        continue;
      }
      activate_locked(q, j, r, out, audit);
    }
    commit_audit_locked(audit);
    co_return out;
  }

  boost::asio::awaitable<std::vector<LeaseStatus>> heartbeat(std::vector<LeaseRef> leases,
                                                             std::int64_t expires_ms) override {
    std::vector<LeaseStatus> ok(leases.size(), LeaseStatus::lost);
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < leases.size(); ++i) {
      Job* j = active_job_locked(leases[i]);
      if (j) {
        j->lease.expires_ms = expires_ms;
        ok[i] = j->cancel_requested ? LeaseStatus::cancel_requested : LeaseStatus::held;
      }
    }
    co_return ok;
  }

  boost::asio::awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) override {
    std::vector<bool> ok(outcomes.size());
    std::lock_guard lock(mu_);
    AuditEntries audit = audit_locked();
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      auto& o = outcomes[i];
      Job* j = active_job_locked({o.id, o.token});
      if (!j) continue;
      ok[i] = true;
      QueueData& q = queues_[j->queue];
      audit.finished(o.kind, j->id, j->queue, j->options.subject, o.run_at_ms, j->lease.owner);
      active_.erase(j->id);
      j->lease = {};
      j->cancel_requested = false;
      if (q.limit.max > 0) q.finished_log.emplace_back(o.now_ms, j->options.group);
      switch (o.kind) {
        case Outcome::Kind::completed:
          j->result = std::move(o.result);
          j->finished_ms = o.now_ms;
          move_state(q, *j, JobState::completed);
          emit(EventType::completed, *j, o.now_ms);
          child_ended_locked(*j, true, o.now_ms);
          break;
        case Outcome::Kind::retry:
          j->error = std::move(o.error);
          j->run_at_ms = o.run_at_ms;
          move_state(q, *j, JobState::failed);
          q.timed.emplace(j->run_at_ms, j->id);
          emit(EventType::failed, *j, o.now_ms, std::to_string(j->attempts_made));
          break;
        case Outcome::Kind::dead:
        case Outcome::Kind::cancelled: {
          bool dead = o.kind == Outcome::Kind::dead;
          j->error = std::move(o.error);
          j->finished_ms = o.now_ms;
          move_state(q, *j, dead ? JobState::dead : JobState::cancelled);
          emit(dead ? EventType::dead : EventType::cancelled, *j, o.now_ms);
          child_ended_locked(*j, false, o.now_ms);
          break;
        }
      }
    }
    commit_audit_locked(audit);
    co_return ok;
  }

  boost::asio::awaitable<std::size_t> promote_due(std::int64_t now_ms) override {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (auto& [name, q] : queues_) n += promote_locked(q, now_ms);
    co_return n;
  }

  boost::asio::awaitable<ReclaimResult> reclaim_expired(std::int64_t now_ms,
                                                       int max_stalls) override {
    ReclaimResult out;
    std::lock_guard lock(mu_);
    std::vector<JobId> expired;
    for (const auto& id : active_) {
      if (jobs_.at(id).lease.expires_ms < now_ms) expired.push_back(id);
    }
    std::sort(expired.begin(), expired.end());
    AuditEntries audit = audit_locked();
    for (const auto& id : expired) {
      Job& j = jobs_.at(id);
      QueueData& q = queues_[j.queue];
      active_.erase(id);
      j.lease = {};
      j.cancel_requested = false;
      j.stalls++;
      if (q.limit.max > 0) q.finished_log.emplace_back(now_ms, j.options.group);
      if (j.stalls > max_stalls) {
        j.error = std::string(1, kSystemError) + "stalled: lease expired " +
                  std::to_string(j.stalls) + " times";
        j.finished_ms = now_ms;
        move_state(q, j, JobState::dead);
        emit(EventType::dead, j, now_ms);
        child_ended_locked(j, false, now_ms);
        audit.job("dead", id, j.queue, j.options.subject, "stalled");
        out.dead.push_back(id);
      } else {
        move_state(q, j, JobState::waiting);
        add_waiting(q, j);
        emit(EventType::stalled, j, now_ms);
        audit.job("stalled", id, j.queue, j.options.subject, "lease expired");
        out.requeued.push_back(id);
      }
    }
    commit_audit_locked(audit);
    co_return out;
  }

  boost::asio::awaitable<std::optional<Job>> get(const JobId& id) override {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) co_return std::nullopt;
    co_return it->second;
  }

  boost::asio::awaitable<JobPage> list(const ListRequest& r) override {
    if (r.limit < 1 || r.limit > 1000)
      throw InvalidArgument("list limit " + std::to_string(r.limit) + " is outside [1, 1000]");
    JobPage page;
    std::lock_guard lock(mu_);
    std::vector<const Job*> match;
    for (const auto& [id, j] : jobs_) {
      if (j.queue == r.queue && j.state == r.state && (!r.after || *r.after < id))
        match.push_back(&j);
    }
    auto by_id = [](const Job* a, const Job* b) { return a->id < b->id; };
    std::size_t n = std::min(r.limit, match.size());
    std::partial_sort(match.begin(), match.begin() + static_cast<std::ptrdiff_t>(n), match.end(),
                      by_id);
    for (std::size_t i = 0; i < n; ++i) {
      page.jobs.push_back(*match[i]);
      // One lookup per job; logs_ holds no entry for a job that never logged.
      if (auto it = logs_.find(match[i]->id); it != logs_.end() && !it->second.empty())
        page.logs.push_back(JobLogLines{match[i]->id, it->second});
    }
    if (match.size() > n) page.next = page.jobs.back().id;
    co_return page;
  }

  boost::asio::awaitable<StateCounts> counts(std::string_view queue) override {
    std::lock_guard lock(mu_);
    auto it = queues_.find(std::string(queue));
    co_return it == queues_.end() ? StateCounts{} : it->second.counts;
  }

  boost::asio::awaitable<std::vector<std::string>> queues() override {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [name, q] : queues_) out.push_back(name);
    co_return out;
  }

  boost::asio::awaitable<void> remove(const JobId& id) override {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw NotFound("job " + id.str() + " not found");
    // The job and its unfinished descendants; refuse if any is active.
    std::vector<JobId> doomed{id};
    for (std::size_t i = 0; i < doomed.size(); ++i) {
      const Job& j = jobs_.at(doomed[i]);
      if (j.state == JobState::active)
        throw Conflict("job " + j.id.str() + " is active; it can be removed once it finishes");
      if (auto c = children_.find(j.id); c != children_.end())
        for (const JobId& child : c->second)
          if (auto cj = jobs_.find(child); cj != jobs_.end() && !is_final(cj->second.state))
            doomed.push_back(child);
    }
    AuditEntries audit = audit_locked();
    audit.job("removed", id, it->second.queue, it->second.options.subject);
    std::int64_t now = env_.now_ms();
    for (const JobId& d : doomed) erase_locked(d, now);
    commit_audit_locked(audit);
    co_return;
  }

  boost::asio::awaitable<void> retry(const JobId& id, std::int64_t now_ms) override {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw NotFound("job " + id.str() + " not found");
    Job& j = it->second;
    if (j.state != JobState::failed && j.state != JobState::dead &&
        j.state != JobState::expired && j.state != JobState::cancelled)
      throw Conflict("job " + id.str() + " is " + std::string(to_string(j.state)) +
                     "; only failed, dead, expired or cancelled jobs can be retried");
    QueueData& q = queues_[j.queue];
    unlink_locked(q, j);
    j.attempts_made = 0;
    j.stalls = 0;
    j.run_at_ms = now_ms;
    j.finished_ms = 0;
    j.options.ttl_ms = 0;  // retried by hand: the TTL has done its job
    move_state(q, j, JobState::waiting);
    add_waiting(q, j);
    emit(EventType::waiting, j, now_ms);
    AuditEntries audit = audit_locked();
    audit.job("retried", id, j.queue, j.options.subject, "manual");
    commit_audit_locked(audit);
    co_return;
  }

  boost::asio::awaitable<void> set_paused(std::string_view queue, bool paused) override {
    std::lock_guard lock(mu_);
    queues_[std::string(queue)].paused = paused;
    AuditEntries audit = audit_locked();
    audit.queue(paused ? "paused" : "resumed", queue);
    commit_audit_locked(audit);
    co_return;
  }

  boost::asio::awaitable<bool> is_paused(std::string_view queue) override {
    std::lock_guard lock(mu_);
    auto it = queues_.find(std::string(queue));
    co_return it != queues_.end() && it->second.paused;
  }

  // ----- issue 4 -----

  boost::asio::awaitable<std::vector<JobId>> expire_due(std::int64_t now_ms) override {
    std::lock_guard lock(mu_);
    std::vector<JobId> due;
    for (auto it = ttl_due_.begin(); it != ttl_due_.end() && it->first <= now_ms;) {
      auto jt = jobs_.find(it->second);
      if (jt == jobs_.end() || ttl_deadline(jt->second) == 0 || is_final(jt->second.state)) {
        it = ttl_due_.erase(it);  // gone, started or done: it can no longer expire
      } else if (jt->second.state == JobState::waiting || jt->second.state == JobState::delayed) {
        due.push_back(it->second);
        it = ttl_due_.erase(it);
      } else {
        ++it;  // waiting for its children: it may expire once it waits
      }
    }
    std::sort(due.begin(), due.end());
    AuditEntries audit = audit_locked();
    for (const JobId& id : due) {
      Job& j = jobs_.at(id);
      QueueData& q = queues_[j.queue];
      unlink_locked(q, j);
      expire_locked(q, j, now_ms, audit);
    }
    commit_audit_locked(audit);
    co_return due;
  }

  boost::asio::awaitable<JobState> cancel(const JobId& id, std::int64_t now_ms) override {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw NotFound("job " + id.str() + " not found");
    Job& j = it->second;
    if (is_final(j.state))
      throw Conflict("job " + id.str() + " is already " + std::string(to_string(j.state)));
    AuditEntries audit = audit_locked();
    if (j.state == JobState::active) {
      j.cancel_requested = true;
      audit.job("cancelled", id, j.queue, j.options.subject, "requested");
      commit_audit_locked(audit);
      co_return JobState::active;
    }
    QueueData& q = queues_[j.queue];
    unlink_locked(q, j);
    j.finished_ms = now_ms;
    move_state(q, j, JobState::cancelled);
    emit(EventType::cancelled, j, now_ms);
    audit.job("cancelled", id, j.queue, j.options.subject);
    child_ended_locked(j, false, now_ms);
    commit_audit_locked(audit);
    co_return JobState::cancelled;
  }

  boost::asio::awaitable<bool> set_progress(LeaseRef lease, std::string progress,
                                            std::int64_t now_ms) override {
    std::lock_guard lock(mu_);
    Job* j = active_job_locked(lease);
    if (!j) co_return false;
    j->progress = std::move(progress);
    emit(EventType::progress, *j, now_ms);  // no detail: see EventType
    co_return true;
  }

  boost::asio::awaitable<bool> append_logs(LeaseRef lease, std::vector<LogLine> lines) override {
    std::lock_guard lock(mu_);
    Job* j = active_job_locked(lease);
    if (!j) co_return false;
    auto& v = logs_[j->id];
    for (auto& l : lines) v.push_back(std::move(l));
    co_return true;
  }

  boost::asio::awaitable<std::vector<LogLine>> logs(const JobId& id, std::size_t limit) override {
    check_limit("log limit", limit, 10000);
    std::lock_guard lock(mu_);
    std::vector<LogLine> out;
    if (auto it = logs_.find(id); it != logs_.end())
      out.assign(it->second.begin(),
                 it->second.begin() + static_cast<std::ptrdiff_t>(std::min(limit, it->second.size())));
    co_return out;
  }

  boost::asio::awaitable<std::vector<Job>> children(const JobId& parent) override {
    std::lock_guard lock(mu_);
    std::vector<Job> out;
    if (auto it = children_.find(parent); it != children_.end())
      for (const JobId& c : it->second)
        if (auto cj = jobs_.find(c); cj != jobs_.end()) out.push_back(cj->second);
    std::sort(out.begin(), out.end(), [](const Job& a, const Job& b) { return a.id < b.id; });
    co_return out;
  }

  boost::asio::awaitable<std::vector<JobId>> clean(std::string_view queue, JobState state,
                                                   std::int64_t before_ms,
                                                   std::size_t limit) override {
    check_limit("clean limit", limit, 10000);
    if (state == JobState::active)
      throw InvalidArgument("active jobs cannot be cleaned; cancel them first");
    std::lock_guard lock(mu_);
    std::vector<std::pair<std::int64_t, JobId>> match;
    for (const auto& [id, j] : jobs_) {
      if (j.queue != queue || j.state != state) continue;
      std::int64_t at = is_final(state) ? j.finished_ms : j.created_ms;
      if (at < before_ms) match.emplace_back(at, id);
    }
    std::sort(match.begin(), match.end());
    if (match.size() > limit) match.resize(limit);
    std::vector<JobId> out;
    std::int64_t now = env_.now_ms();
    AuditEntries audit = audit_locked();
    for (const auto& [at, id] : match) {
      erase_locked(id, now);
      audit.job("cleaned", id, queue, "", "state=" + std::string(to_string(state)));
      out.push_back(id);
    }
    commit_audit_locked(audit);
    co_return out;
  }

  boost::asio::awaitable<std::size_t> drain(std::string_view queue) override {
    std::lock_guard lock(mu_);
    std::vector<JobId> doomed;
    for (const auto& [id, j] : jobs_)
      if (j.queue == queue && (j.state == JobState::waiting || j.state == JobState::delayed) &&
          j.parent.is_nil() && j.children == 0)
        doomed.push_back(id);
    std::int64_t now = env_.now_ms();
    for (const JobId& id : doomed) erase_locked(id, now);
    AuditEntries audit = audit_locked();
    audit.queue("drained", queue, "removed=" + std::to_string(doomed.size()));
    commit_audit_locked(audit);
    co_return doomed.size();
  }

  boost::asio::awaitable<std::size_t> obliterate(std::string_view queue, bool force) override {
    std::lock_guard lock(mu_);
    std::vector<JobId> doomed;
    for (const auto& [id, j] : jobs_) {
      if (j.queue != queue) continue;
      if (j.state == JobState::active && !force)
        throw Conflict("queue " + std::string(queue) +
                       " has active jobs; stop its workers first or force");
      doomed.push_back(id);
    }
    std::int64_t now = env_.now_ms();
    for (const JobId& id : doomed) {
      active_.erase(id);
      erase_locked(id, now, /*keep_key=*/false);
    }
    queues_.erase(std::string(queue));
    for (auto it = repeatables_.begin(); it != repeatables_.end();)
      it = it->first.first == queue ? repeatables_.erase(it) : std::next(it);
    AuditEntries audit = audit_locked();
    audit.queue("obliterated", queue, "removed=" + std::to_string(doomed.size()));
    commit_audit_locked(audit);
    co_return doomed.size();
  }

  boost::asio::awaitable<void> set_rate_limit(std::string_view queue, RateLimit limit) override {
    validate_limit(limit);
    std::lock_guard lock(mu_);
    AuditEntries audit = audit_locked();
    audit.queue("rate-limited", queue, AuditEntries::rate_limit_detail(limit));
    commit_audit_locked(audit);
    QueueData& q = queues_[std::string(queue)];
    if (limit.max == 0) {
      limit = RateLimit{};
      q.finished_log.clear();
    }
    bool was_per_group = q.limit.per_group;
    q.limit = limit;
    if (limit.per_group && !was_per_group) {
      for (const WaitKey& k : q.waiting)
        q.group_waiting[jobs_.at(std::get<2>(k)).options.group].insert(k);
    } else if (!limit.per_group) {
      q.group_waiting.clear();
    }
    co_return;
  }

  boost::asio::awaitable<RateLimit> rate_limit(std::string_view queue) override {
    std::lock_guard lock(mu_);
    auto it = queues_.find(queue);
    co_return it == queues_.end() ? RateLimit{} : it->second.limit;
  }

  boost::asio::awaitable<std::int64_t> rate_limited_until(std::string_view queue,
                                                         std::int64_t now_ms) override {
    std::lock_guard lock(mu_);
    auto it = queues_.find(queue);
    if (it == queues_.end() || it->second.limit.max == 0) co_return 0;
    QueueData& q = it->second;
    if (q.limit.per_group) {
      // The earliest time one of the waiting jobs' groups frees a slot; 0 if
      // one has a slot now (or nothing waits).
      auto use = group_use_locked(it->first, q, now_ms);
      std::int64_t until = 0;
      for (const auto& [group, keys] : q.group_waiting) {
        auto u = use.find(group);
        if (u == use.end() || u->second.used < q.limit.max) co_return 0;
        std::int64_t t = u->second.has_oldest
                             ? std::max(u->second.oldest + q.limit.interval_ms, now_ms + 1)
                             : now_ms + q.limit.interval_ms;
        until = until == 0 ? t : std::min(until, t);
      }
      co_return until;
    }
    if (allowance_locked(q, now_ms) > 0) co_return 0;
    co_return q.finished_log.empty()
        ? now_ms + q.limit.interval_ms
        : std::max(q.finished_log.front().first + q.limit.interval_ms, now_ms + 1);
  }

  boost::asio::awaitable<void> upsert_repeatable(Repeatable r) override {
    std::lock_guard lock(mu_);
    queues_[r.queue];
    AuditEntries audit = audit_locked();
    audit.queue("repeatable-set", r.queue, "name=" + r.name);
    commit_audit_locked(audit);
    auto key = std::make_pair(r.queue, r.name);
    repeatables_[key] = std::move(r);
    co_return;
  }

  boost::asio::awaitable<void> remove_repeatable(std::string_view queue,
                                                 std::string_view name) override {
    std::lock_guard lock(mu_);
    if (repeatables_.erase({std::string(queue), std::string(name)}) == 0)
      throw NotFound("repeatable " + std::string(name) + " not found in queue " + std::string(queue));
    AuditEntries audit = audit_locked();
    audit.queue("repeatable-removed", queue, "name=" + std::string(name));
    commit_audit_locked(audit);
    co_return;
  }

  boost::asio::awaitable<void> set_repeatable_paused(std::string_view queue, std::string_view name,
                                                     bool paused, std::int64_t next_fire_ms) override {
    std::lock_guard lock(mu_);
    auto it = repeatables_.find({std::string(queue), std::string(name)});
    if (it == repeatables_.end())
      throw NotFound("repeatable " + std::string(name) + " not found in queue " + std::string(queue));
    it->second.paused = paused;
    if (!paused) it->second.next_fire_ms = next_fire_ms;
    AuditEntries audit = audit_locked();
    audit.queue(paused ? "repeatable-paused" : "repeatable-resumed", queue,
                "name=" + std::string(name));
    commit_audit_locked(audit);
    co_return;
  }

  boost::asio::awaitable<std::vector<Repeatable>> repeatables(std::string_view queue) override {
    std::lock_guard lock(mu_);
    std::vector<Repeatable> out;
    for (const auto& [key, r] : repeatables_)
      if (queue.empty() || key.first == queue) out.push_back(r);
    co_return out;
  }

  boost::asio::awaitable<bool> fire_repeatable(std::string_view queue, std::string_view name,
                                               std::int64_t expected_fire_ms,
                                               std::int64_t next_fire_ms, Job job) override {
    std::lock_guard lock(mu_);
    auto it = repeatables_.find({std::string(queue), std::string(name)});
    if (it == repeatables_.end() || it->second.paused ||
        it->second.next_fire_ms != expected_fire_ms)
      co_return false;
    std::vector<Job> batch;
    batch.push_back(std::move(job));
    AuditEntries audit = audit_locked();
    // validates first: throws before changing anything
    enqueue_locked(std::move(batch), audit, "repeatable=" + std::string(name));
    it->second.next_fire_ms = next_fire_ms;
    it->second.last_fire_ms = expected_fire_ms;
    commit_audit_locked(audit);
    co_return true;
  }

  boost::asio::awaitable<std::int64_t> follow_events(std::int64_t until_ms) override {
    std::lock_guard lock(mu_);
    co_return events_.follow_until(until_ms);
  }

  boost::asio::awaitable<EventPage> read_events(std::int64_t after_seq,
                                                std::size_t limit) override {
    check_limit("event limit", limit, 10000);
    std::lock_guard lock(mu_);
    EventPage page;
    std::vector<Event>& out = page.events;
    if (events_.empty()) co_return page;
    std::int64_t first = events_.first_seq();
    std::size_t start;
    if (after_seq < 0) {
      start = events_.size() > limit ? events_.size() - limit : 0;
    } else {
      start = after_seq < first ? 0 : static_cast<std::size_t>(after_seq - first + 1);
    }
    for (std::size_t i = start; i < events_.size() && out.size() < limit; ++i)
      out.push_back(events_.at(i));
    if (!out.empty()) page.last_seq = out.back().seq;
    co_return page;
  }

  std::string describe() const override { return "memory://"; }

  // ---- Data protection (issue 5) ----------------------------------------

  boost::asio::awaitable<JobPage> scan(std::optional<JobId> after, std::size_t limit) override {
    if (limit < 1 || limit > 1000)
      throw InvalidArgument("scan limit " + std::to_string(limit) + " is outside [1, 1000]");
    JobPage page;
    std::lock_guard lock(mu_);
    std::vector<const Job*> match;
    for (const auto& [id, j] : jobs_)
      if (!after || *after < id) match.push_back(&j);
    auto by_id = [](const Job* a, const Job* b) { return a->id < b->id; };
    std::size_t n = std::min(limit, match.size());
    std::partial_sort(match.begin(), match.begin() + static_cast<std::ptrdiff_t>(n), match.end(),
                      by_id);
    for (std::size_t i = 0; i < n; ++i) {
      page.jobs.push_back(*match[i]);
      // One lookup per job; logs_ holds no entry for a job that never logged.
      if (auto it = logs_.find(match[i]->id); it != logs_.end() && !it->second.empty())
        page.logs.push_back(JobLogLines{match[i]->id, it->second});
    }
    if (match.size() > n) page.next = page.jobs.back().id;
    co_return page;
  }

  boost::asio::awaitable<std::vector<bool>> rewrite_sealed(
      std::vector<SealedRewrite> rewrites) override {
    validate_log_rewrites(rewrites);
    std::vector<bool> ok(rewrites.size());
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < rewrites.size(); ++i) {
      auto& w = rewrites[i];
      auto it = jobs_.find(w.id);
      if (it == jobs_.end()) continue;
      Job& j = it->second;
      if (j.payload != w.expected_payload || j.result != w.expected_result ||
          j.error != w.expected_error || j.progress != w.expected_progress)
        continue;
      std::vector<LogLine>* lines = nullptr;
      if (!w.expected_logs.empty()) {
        auto l = logs_.find(w.id);
        if (l == logs_.end() || !first_lines_are(l->second, w.expected_logs)) continue;
        lines = &l->second;
      }
      j.payload = std::move(w.payload);
      j.result = std::move(w.result);
      j.error = std::move(w.error);
      j.progress = std::move(w.progress);
      for (std::size_t k = 0; k < w.logs.size(); ++k) (*lines)[k].text = std::move(w.logs[k]);
      ok[i] = true;
    }
    co_return ok;
  }

  boost::asio::awaitable<PurgeResult> purge_subject(std::string subject) override {
    if (subject.empty()) throw InvalidArgument("purge needs a subject");
    PurgeResult out;
    std::lock_guard lock(mu_);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      Job& j = it->second;
      if (j.options.subject != subject) {
        ++it;
        continue;
      }
      QueueData& q = queues_[j.queue];
      unlink_locked(q, j);
      active_.erase(j.id);
      q.counts[static_cast<int>(j.state)]--;
      logs_.erase(j.id);
      children_.erase(j.id);
      forget_key_locked(j, 0, true);
      it = jobs_.erase(it);
      ++out.jobs;
    }
    co_return out;
  }

  // ---- Audit outbox (issue 6) ---------------------------------------------

  void enable_audit_outbox(std::string actor) override {
    std::lock_guard lock(mu_);
    if (!audit_actor_) audit_actor_ = std::move(actor);
  }

  boost::asio::awaitable<std::vector<AuditOutboxRow>> read_audit_outbox(
      std::int64_t after_seq, std::size_t limit) override {
    check_limit("outbox limit", limit, 10000);
    std::lock_guard lock(mu_);
    std::vector<AuditOutboxRow> out;
    for (const AuditOutboxRow& r : outbox_) {
      if (out.size() == limit) break;
      if (r.seq > after_seq) out.push_back(r);
    }
    co_return out;
  }

  void trim_audit_outbox(std::int64_t through_seq) override {
    std::lock_guard lock(mu_);
    while (!outbox_.empty() && outbox_.front().seq <= through_seq) outbox_.pop_front();
  }

  std::string store_id() const override { return store_id_; }

  // ---- Audit table (issue 6) ------------------------------------------------

  boost::asio::awaitable<void> append_audit_chain(std::vector<AuditChainLine> lines) override {
    validate_audit_chain(lines);
    std::lock_guard lock(mu_);
    // Check the whole batch first: all or none.
    std::map<std::int64_t, const std::string*> batch;
    for (const AuditChainLine& l : lines) {
      auto it = chain_.find(l.seq);
      const std::string* have = it != chain_.end() ? &it->second : nullptr;
      if (auto b = batch.find(l.seq); b != batch.end()) have = b->second;
      if (have && *have != l.text) throw audit_chain_conflict(l.seq);
      batch.emplace(l.seq, &l.text);
    }
    for (AuditChainLine& l : lines) chain_.try_emplace(l.seq, std::move(l.text));
    co_return;
  }

  boost::asio::awaitable<std::vector<AuditChainLine>> read_audit_chain(
      std::int64_t after_seq, std::size_t limit) override {
    check_limit("audit table limit", limit, 10000);
    std::lock_guard lock(mu_);
    std::vector<AuditChainLine> out;
    for (auto it = chain_.upper_bound(after_seq); it != chain_.end() && out.size() < limit; ++it) {
      AuditChainLine l;
      l.seq = it->first;
      l.text = it->second;
      out.push_back(std::move(l));
    }
    co_return out;
  }

  boost::asio::awaitable<std::int64_t> audit_chain_head() override {
    std::lock_guard lock(mu_);
    co_return chain_.empty() ? 0 : std::max<std::int64_t>(0, chain_.rbegin()->first);
  }

 private:
  // The entries of a call, by the calling decorator's actor (read here, at
  // the start of the call's body: core/audit_actor.hpp), else the default.
  AuditEntries audit_locked() const {
    if (!audit_actor_) return AuditEntries(nullptr);
    const std::string* now = core::current_audit_actor();
    return AuditEntries(now ? now : &*audit_actor_);
  }
  // The outbox row of one call, stored with its changes (under mu_, which
  // is this backend's transaction).
  void commit_audit_locked(AuditEntries& audit) {
    if (audit.empty()) return;
    AuditOutboxRow row;
    row.seq = ++outbox_seq_;
    row.events = audit.take();
    outbox_.push_back(std::move(row));
  }

  // Stores a batch (see Backend::enqueue); validates everything first.
  // `via`, if not empty, is the detail of the audit entries (a repeatable's
  // tick), else "delayed" for a delayed job.
  std::vector<JobId> enqueue_locked(std::vector<Job> jobs, AuditEntries& audit,
                                    std::string_view via = {}) {
    // Ids that exist or repeat within the batch are refused before anything
    // is written. A sorted copy, not a hash set: that was a node per job.
    std::vector<JobId> batch_ids;
    batch_ids.reserve(jobs.size());
    for (const auto& j : jobs) {
      if (jobs_.count(j.id)) throw Conflict("job id " + j.id.str() + " already exists");
      batch_ids.push_back(j.id);
    }
    // Ids made by JobId::generate come in order: skip the sort then.
    if (!std::is_sorted(batch_ids.begin(), batch_ids.end()))
      std::sort(batch_ids.begin(), batch_ids.end());
    if (auto d = std::adjacent_find(batch_ids.begin(), batch_ids.end()); d != batch_ids.end())
      throw Conflict("job id " + d->str() + " already exists");
    std::vector<JobId> ids;
    ids.reserve(jobs.size());
    std::map<std::pair<std::string, std::string>, JobId> batch_keys;
    for (auto& j : jobs) {
      bool flow = !j.parent.is_nil() || j.children > 0;
      if (!j.options.idempotency_key.empty() && !flow) {
        auto key = std::make_pair(j.queue, j.options.idempotency_key);
        std::optional<JobId> existing;
        if (auto b = batch_keys.find(key); b != batch_keys.end()) {
          existing = b->second;
        } else if (auto e = idem_.find(key); e != idem_.end()) {
          if (jobs_.count(e->second.job) || e->second.until_ms > j.created_ms)
            existing = e->second.job;
        }
        if (existing) {
          ids.push_back(*existing);
          events_.push(j.created_ms, EventType::deduplicated, j.queue, *existing, j.id.str());
          audit.deduplicated(j, *existing);
          continue;
        }
        batch_keys[key] = j.id;
        idem_[key] = IdemEntry{j.id, 0};
      }
      ids.push_back(j.id);
      audit.added(j, j.state == JobState::delayed, via);
      Job& stored = jobs_.emplace(j.id, std::move(j)).first->second;
      if (std::int64_t d = ttl_deadline(stored); d > 0) ttl_due_.emplace(d, stored.id);
      auto& q = queues_[stored.queue];
      if (!stored.parent.is_nil()) children_[stored.parent].push_back(stored.id);
      if (stored.state == JobState::waiting_children) {
        emit(EventType::waiting_children, stored, stored.created_ms);
      } else if (stored.state == JobState::delayed || stored.state == JobState::failed) {
        q.timed.emplace(stored.run_at_ms, stored.id);
        emit(EventType::delayed, stored, stored.created_ms);
      } else {
        stored.state = JobState::waiting;
        add_waiting(q, stored);
        emit(EventType::waiting, stored, stored.created_ms);
      }
      q.counts[static_cast<int>(stored.state)]++;
    }
    return ids;
  }

  // Moves `j` (just taken off the waiting indexes) to active under a new
  // lease and appends it to `out`.
  void activate_locked(QueueData& q, Job& j, const ClaimRequest& r, std::vector<Job>& out,
                       AuditEntries& audit) {
    move_state(q, j, JobState::active);
    j.attempts_made++;
    j.started_ms = r.now_ms;
    j.lease = Lease{next_token_++, r.worker_id, r.now_ms + r.lease_ms};
    active_.insert(j.id);
    emit(EventType::active, j, r.now_ms);
    audit.claimed(j, r.worker_id);
    out.push_back(j);
  }

  // A claim on a queue limited per group: repeatedly takes the first job in
  // claim order among the heads of the groups below their limit. Cost per
  // job taken: one look at each waiting group's head, never at a group's
  // backlog behind it.
  void claim_per_group_locked(QueueData& q, const ClaimRequest& r, std::vector<Job>& out,
                              AuditEntries& audit) {
    auto use = group_use_locked(r.queue, q, r.now_ms);
    while (out.size() < r.max) {
      const WaitKey* best = nullptr;
      for (const auto& [group, keys] : q.group_waiting) {
        auto u = use.find(group);
        if (u != use.end() && u->second.used >= q.limit.max) continue;
        if (!best || *keys.begin() < *best) best = &*keys.begin();
      }
      if (!best) break;
      Job& j = jobs_.at(std::get<2>(*best));
      unlink_locked(q, j);  // invalidates `best`
      if (std::int64_t d = ttl_deadline(j); d > 0 && d <= r.now_ms) {
        expire_locked(q, j, r.now_ms, audit);  // takes no slot
        continue;
      }
      use[j.options.group].used++;
      activate_locked(q, j, r, out, audit);
    }
  }

  // Each group's use of a per-group limit at now_ms: its active jobs plus
  // its finishes within the window. Prunes the finish log. Cost: the
  // store's active jobs plus the queue's finishes within the window.
  std::map<std::string, GroupUse, std::less<>> group_use_locked(std::string_view queue,
                                                                QueueData& q,
                                                                std::int64_t now_ms) {
    prune_finished_locked(q, now_ms);
    std::map<std::string, GroupUse, std::less<>> use;
    for (const auto& [at, group] : q.finished_log) {
      GroupUse& u = use[group];
      u.used++;
      if (!u.has_oldest || at < u.oldest) u.oldest = at;
      u.has_oldest = true;
    }
    for (const JobId& id : active_) {
      const Job& j = jobs_.at(id);
      if (j.queue == queue) use[j.options.group].used++;
    }
    return use;
  }

  void prune_finished_locked(QueueData& q, std::int64_t now_ms) {
    while (!q.finished_log.empty() &&
           q.finished_log.front().first <= now_ms - q.limit.interval_ms)
      q.finished_log.pop_front();
  }

  // How many more jobs the queue's rate limit lets start now.
  std::size_t allowance_locked(QueueData& q, std::int64_t now_ms) {
    if (q.limit.max <= 0) return static_cast<std::size_t>(-1);
    prune_finished_locked(q, now_ms);
    auto used = static_cast<std::int64_t>(q.counts[static_cast<int>(JobState::active)] +
                                          q.finished_log.size());
    return used >= q.limit.max ? 0 : static_cast<std::size_t>(q.limit.max - used);
  }

  // `j` is unlinked from the indexes already.
  void expire_locked(QueueData& q, Job& j, std::int64_t now_ms, AuditEntries& audit) {
    j.finished_ms = now_ms;
    j.error = std::string(1, kSystemError) + "expired: not started within its TTL of " +
              std::to_string(j.options.ttl_ms) + " ms";
    move_state(q, j, JobState::expired);
    emit(EventType::expired, j, now_ms);
    audit.job("expired", j.id, j.queue, j.options.subject, "ttl");
    child_ended_locked(j, false, now_ms);
  }

  // A flow child reached a final state: count its parent down, or act on
  // the child's on_failure.
  void child_ended_locked(const Job& child, bool ok, std::int64_t now_ms) {
    if (child.parent.is_nil()) return;
    auto it = jobs_.find(child.parent);
    if (it == jobs_.end() || it->second.state != JobState::waiting_children) return;
    Job& p = it->second;
    QueueData& q = queues_[p.queue];
    if (ok || child.on_failure == ChildFailure::ignore) {
      if (--p.pending_children > 0) return;
      if (p.run_at_ms > now_ms) {
        move_state(q, p, JobState::delayed);
        q.timed.emplace(p.run_at_ms, p.id);
      } else {
        move_state(q, p, JobState::waiting);
        add_waiting(q, p);
      }
      emit(EventType::waiting, p, now_ms);
    } else if (child.on_failure == ChildFailure::fail_parent) {
      p.error = std::string(1, kSystemError) + "child " + child.id.str() + " ended " +
                std::string(to_string(child.state));
      p.finished_ms = now_ms;
      move_state(q, p, JobState::dead);
      emit(EventType::dead, p, now_ms);
      child_ended_locked(p, false, now_ms);
    }
  }

  // Deletes one job (not active) and what hangs off it. Its idempotency key
  // lives on for the key's window unless `keep_key` is false.
  void erase_locked(const JobId& id, std::int64_t now_ms, bool keep_key = true) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    Job& j = it->second;
    QueueData& q = queues_[j.queue];
    unlink_locked(q, j);
    q.counts[static_cast<int>(j.state)]--;
    if (auto c = children_.find(j.parent); c != children_.end()) std::erase(c->second, id);
    children_.erase(id);
    logs_.erase(id);
    forget_key_locked(j, now_ms, !keep_key);
    emit(EventType::removed, j, now_ms);
    jobs_.erase(it);
  }

  // The job is going away: its idempotency key lives on for its window.
  void forget_key_locked(const Job& j, std::int64_t now_ms, bool always) {
    if (j.options.idempotency_key.empty()) return;
    auto it = idem_.find({j.queue, j.options.idempotency_key});
    if (it == idem_.end() || it->second.job != j.id) return;
    std::int64_t w = j.options.idempotency_window_ms;
    if (!always && w > 0 && j.finished_ms > 0 && j.finished_ms + w > now_ms)
      it->second.until_ms = j.finished_ms + w;
    else
      idem_.erase(it);
  }

  void emit(EventType type, const Job& j, std::int64_t now_ms, std::string detail = {}) {
    events_.push(now_ms, type, j.queue, j.id, std::move(detail));
  }

  static void check_limit(const char* what, std::size_t limit, std::size_t max) {
    if (limit < 1 || limit > max)
      throw InvalidArgument(std::string(what) + " " + std::to_string(limit) + " is outside [1, " +
                            std::to_string(max) + "]");
  }

  static void move_state(QueueData& q, Job& j, JobState to) {
    q.counts[static_cast<int>(j.state)]--;
    q.counts[static_cast<int>(to)]++;
    j.state = to;
  }

  static void add_waiting(QueueData& q, const Job& j) {
    WaitKey k{j.options.priority, ord_of(j), j.id};
    q.waiting.insert(k);
    if (q.limit.per_group) q.group_waiting[j.options.group].insert(k);
  }

  // Removes `j` from the queue's waiting or timed index (not from counts).
  static void unlink_locked(QueueData& q, const Job& j) {
    if (j.state == JobState::waiting) {
      WaitKey k{j.options.priority, ord_of(j), j.id};
      q.waiting.erase(k);
      if (auto g = q.group_waiting.find(j.options.group); g != q.group_waiting.end()) {
        g->second.erase(k);
        if (g->second.empty()) q.group_waiting.erase(g);
      }
    } else if (j.state == JobState::delayed || j.state == JobState::failed) {
      auto [b, e] = q.timed.equal_range(j.run_at_ms);
      for (auto t = b; t != e; ++t) {
        if (t->second == j.id) {
          q.timed.erase(t);
          break;
        }
      }
    }
  }

  std::size_t promote_locked(QueueData& q, std::int64_t now_ms) {
    std::size_t n = 0;
    while (!q.timed.empty() && q.timed.begin()->first <= now_ms) {
      Job& j = jobs_.at(q.timed.begin()->second);
      q.timed.erase(q.timed.begin());
      move_state(q, j, JobState::waiting);
      add_waiting(q, j);
      emit(EventType::waiting, j, now_ms);
      ++n;
    }
    return n;
  }

  Job* active_job_locked(const LeaseRef& ref) {
    auto it = jobs_.find(ref.id);
    if (it == jobs_.end()) return nullptr;
    Job& j = it->second;
    if (j.state != JobState::active || j.lease.token != ref.token) return nullptr;
    return &j;
  }

  Env& env_;
  std::mutex mu_;
  std::unordered_map<JobId, Job, IdHash> jobs_;
  // (TTL deadline, job) of every job added with a TTL, soonest first, for
  // expire_due. Why: it walked every stored job on each call, under the
  // lock, though most stores hold no TTL job at all (an unused feature:
  // ~2.5 % of a memory:// bench's samples with 100,000 jobs kept, growing
  // with the store). Entries go lazily: expire_due drops those past their deadline
  // whose job is gone, started or done, so at most the TTL jobs added
  // within one TTL are held.
  std::set<std::pair<std::int64_t, JobId>> ttl_due_;
  std::map<std::string, QueueData, std::less<>> queues_;
  std::unordered_set<JobId, IdHash> active_;
  std::uint64_t next_token_;
  std::map<std::pair<std::string, std::string>, IdemEntry> idem_;
  std::unordered_map<JobId, std::vector<JobId>, IdHash> children_;
  std::unordered_map<JobId, std::vector<LogLine>, IdHash> logs_;
  std::map<std::pair<std::string, std::string>, Repeatable> repeatables_;
  EventRing events_;
  std::optional<std::string> audit_actor_;  // set: the outbox is on
  std::deque<AuditOutboxRow> outbox_;
  std::int64_t outbox_seq_ = 0;
  std::string store_id_;
  std::map<std::int64_t, std::string> chain_;  // the audit table: seq -> line
};

}  // namespace

std::shared_ptr<Backend> make_memory_backend(Env& env) {
  return std::make_shared<MemoryBackend>(env);
}

}  // namespace asyncmq::backends

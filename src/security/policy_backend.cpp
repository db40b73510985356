// PolicyBackend (see policy_backend.hpp). Every override checks first and
// forwards second; nothing reaches the inner backend before the check.
//
// GCC 12: request objects and vectors are named variables before each
// co_await, and no braced lists appear inside the coroutines.
#include "security/policy_backend.hpp"

#include "core/forwarding_backend.hpp"

#include <map>
#include <mutex>
#include <set>

namespace asyncmq::security {

void redact(Job& job) {
  job.payload = std::string(kRedacted);
  if (!job.result.empty()) job.result = std::string(kRedacted);
  if (!job.error.empty()) job.error = std::string(kRedacted);
}

namespace {

using boost::asio::awaitable;

class PolicyBackend final : public core::ForwardingBackend {
 public:
  PolicyBackend(std::shared_ptr<Backend> inner, std::shared_ptr<const Principal> who,
                std::shared_ptr<Policy> policy)
      : ForwardingBackend(std::move(inner)), who_(std::move(who)), policy_(std::move(policy)) {}

  awaitable<void> enqueue(std::vector<Job> jobs) override {
    std::set<std::string_view> queues;
    for (const auto& j : jobs) queues.insert(j.queue);
    for (auto q : queues) policy_->check(*who_, Action::add, q);
    co_await inner().enqueue(std::move(jobs));
  }

  awaitable<std::vector<Job>> claim(const ClaimRequest& request) override {
    policy_->check(*who_, Action::claim, request.queue);
    auto jobs = co_await inner().claim(request);
    if (!jobs.empty()) {
      std::lock_guard lock(mu_);
      for (const auto& j : jobs) claimed_[j.id] = j.queue;
    }
    co_return jobs;
  }

  awaitable<std::vector<bool>> heartbeat(std::vector<LeaseRef> leases,
                                         std::int64_t expires_ms) override {
    std::vector<JobId> ids;
    ids.reserve(leases.size());
    for (const auto& l : leases) ids.push_back(l.id);
    auto queues = co_await queues_of(ids);
    // One check per distinct queue of the batch, not one per job.
    std::set<std::string_view> distinct(queues.begin(), queues.end());
    for (auto q : distinct)
      if (!q.empty()) policy_->check(*who_, Action::heartbeat, q);
    co_return co_await inner().heartbeat(std::move(leases), expires_ms);
  }

  awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) override {
    std::vector<JobId> ids;
    ids.reserve(outcomes.size());
    for (const auto& o : outcomes) ids.push_back(o.id);
    auto queues = co_await queues_of(ids);
    std::set<std::pair<std::string_view, Action>> needed;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      Action a = outcomes[i].kind == Outcome::Kind::completed ? Action::complete : Action::fail;
      if (!queues[i].empty()) needed.emplace(queues[i], a);
    }
    for (const auto& [q, a] : needed) policy_->check(*who_, a, q);
    auto applied = co_await inner().finish(outcomes);
    {
      std::lock_guard lock(mu_);
      for (const auto& o : outcomes) claimed_.erase(o.id);
    }
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
      policy_->check(*who_, Action::read, job->queue);
      if (policy_->redacted(*who_, job->queue)) redact(*job);
    }
    co_return job;
  }

  awaitable<JobPage> list(const ListRequest& request) override {
    policy_->check(*who_, Action::read, request.queue);
    auto page = co_await inner().list(request);
    if (policy_->redacted(*who_, request.queue))
      for (auto& j : page.jobs) redact(j);
    co_return page;
  }

  awaitable<StateCounts> counts(std::string_view queue) override {
    policy_->check(*who_, Action::read, queue);
    co_return co_await inner().counts(queue);
  }

  awaitable<std::vector<std::string>> queues() override {
    auto all = co_await inner().queues();
    std::vector<std::string> visible;
    for (auto& q : all)
      if (policy_->allowed(*who_, Action::read, q)) visible.push_back(std::move(q));
    co_return visible;
  }

  awaitable<void> remove(const JobId& id) override {
    std::string queue = co_await queue_of(id, true);
    if (!queue.empty()) policy_->check(*who_, Action::remove, queue);
    co_await inner().remove(id);
  }

  awaitable<void> retry(const JobId& id, std::int64_t now_ms) override {
    std::string queue = co_await queue_of(id, true);
    if (!queue.empty()) policy_->check(*who_, Action::retry, queue);
    co_await inner().retry(id, now_ms);
  }

  awaitable<void> set_paused(std::string_view queue, bool paused) override {
    policy_->check(*who_, paused ? Action::pause : Action::resume, queue);
    co_await inner().set_paused(queue, paused);
  }

  awaitable<bool> is_paused(std::string_view queue) override {
    if (!policy_->allowed(*who_, Action::read, queue) &&
        !policy_->allowed(*who_, Action::claim, queue))
      throw policy_->deny(*who_, Action::read, queue);
    co_return co_await inner().is_paused(queue);
  }

 private:
  void check_anywhere(Action a) {
    if (!policy_->allowed_anywhere(*who_, a)) throw policy_->deny(*who_, a, "*");
  }

  // The queues of jobs `ids`, in order: remembered from claim (one lock for
  // the batch), else looked up one by one. Empty for a job that does not
  // exist (the inner call then reports it).
  awaitable<std::vector<std::string>> queues_of(const std::vector<JobId>& ids) {
    std::vector<std::string> out(ids.size());
    std::vector<std::size_t> unknown;
    {
      std::lock_guard lock(mu_);
      for (std::size_t i = 0; i < ids.size(); ++i) {
        auto it = claimed_.find(ids[i]);
        if (it != claimed_.end()) {
          out[i] = it->second;
        } else {
          unknown.push_back(i);
        }
      }
    }
    for (std::size_t i : unknown) out[i] = co_await queue_of(ids[i], true);
    co_return out;
  }

  // The queue of job `id`: remembered from claim, else looked up. Empty
  // when the job does not exist (the inner call then reports that).
  awaitable<std::string> queue_of(const JobId& id, bool lookup_only) {
    std::string known;
    if (!lookup_only) {
      std::lock_guard lock(mu_);
      auto it = claimed_.find(id);
      if (it != claimed_.end()) known = it->second;
    }
    if (!known.empty()) co_return known;
    auto job = co_await inner().get(id);
    co_return job ? job->queue : std::string();
  }

  std::shared_ptr<const Principal> who_;
  std::shared_ptr<Policy> policy_;
  std::mutex mu_;
  std::map<JobId, std::string> claimed_;  // GUARDED_BY(mu_)
};

}  // namespace

std::shared_ptr<Backend> make_policy_backend(std::shared_ptr<Backend> inner,
                                             std::shared_ptr<const Principal> who,
                                             std::shared_ptr<Policy> policy) {
  if (!inner || !who || !policy) throw InvalidArgument("a policy backend needs a backend, a principal and a policy");
  return std::make_shared<PolicyBackend>(std::move(inner), std::move(who), std::move(policy));
}

}  // namespace asyncmq::security

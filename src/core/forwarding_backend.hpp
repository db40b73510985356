// ForwardingBackend: a Backend that passes every call to another one.
//
// Decorators (policy enforcement, auditing) derive from it and override only
// the calls they act on, so that a method added to the Backend contract is
// forwarded by default instead of breaking every decorator. Whoever adds a
// method to Backend adds its forwarder here.
//
// Thread safety: as safe as the inner backend. Lifetime: holds the inner
// backend (shared).
#pragma once

#include <asyncmq/backend.hpp>

#include <memory>
#include <utility>

namespace asyncmq::core {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::shared_ptr<Backend> inner) : inner_(std::move(inner)) {}

  boost::asio::awaitable<std::vector<JobId>> enqueue(std::vector<Job> jobs) override {
    return inner_->enqueue(std::move(jobs));
  }
  boost::asio::awaitable<std::vector<Job>> claim(const ClaimRequest& request) override {
    return inner_->claim(request);
  }
  boost::asio::awaitable<std::vector<LeaseStatus>> heartbeat(std::vector<LeaseRef> leases,
                                                             std::int64_t expires_ms) override {
    return inner_->heartbeat(std::move(leases), expires_ms);
  }
  boost::asio::awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) override {
    return inner_->finish(std::move(outcomes));
  }
  boost::asio::awaitable<std::size_t> promote_due(std::int64_t now_ms) override {
    return inner_->promote_due(now_ms);
  }
  boost::asio::awaitable<ReclaimResult> reclaim_expired(std::int64_t now_ms,
                                                       int max_stalls) override {
    return inner_->reclaim_expired(now_ms, max_stalls);
  }
  boost::asio::awaitable<std::optional<Job>> get(const JobId& id) override {
    return inner_->get(id);
  }
  boost::asio::awaitable<JobPage> list(const ListRequest& request) override {
    return inner_->list(request);
  }
  boost::asio::awaitable<StateCounts> counts(std::string_view queue) override {
    return inner_->counts(queue);
  }
  boost::asio::awaitable<std::vector<std::string>> queues() override { return inner_->queues(); }
  boost::asio::awaitable<void> remove(const JobId& id) override { return inner_->remove(id); }
  boost::asio::awaitable<void> retry(const JobId& id, std::int64_t now_ms) override {
    return inner_->retry(id, now_ms);
  }
  boost::asio::awaitable<void> set_paused(std::string_view queue, bool paused) override {
    return inner_->set_paused(queue, paused);
  }
  boost::asio::awaitable<bool> is_paused(std::string_view queue) override {
    return inner_->is_paused(queue);
  }
  boost::asio::awaitable<std::vector<JobId>> expire_due(std::int64_t now_ms) override {
    return inner_->expire_due(now_ms);
  }
  boost::asio::awaitable<JobState> cancel(const JobId& id, std::int64_t now_ms) override {
    return inner_->cancel(id, now_ms);
  }
  boost::asio::awaitable<bool> set_progress(LeaseRef lease, std::string progress,
                                            std::int64_t now_ms) override {
    return inner_->set_progress(lease, std::move(progress), now_ms);
  }
  boost::asio::awaitable<bool> append_logs(LeaseRef lease, std::vector<LogLine> lines) override {
    return inner_->append_logs(lease, std::move(lines));
  }
  boost::asio::awaitable<std::vector<LogLine>> logs(const JobId& id, std::size_t limit) override {
    return inner_->logs(id, limit);
  }
  boost::asio::awaitable<std::vector<Job>> children(const JobId& parent) override {
    return inner_->children(parent);
  }
  boost::asio::awaitable<std::vector<JobId>> clean(std::string_view queue, JobState state,
                                                   std::int64_t before_ms,
                                                   std::size_t limit) override {
    return inner_->clean(queue, state, before_ms, limit);
  }
  boost::asio::awaitable<std::size_t> drain(std::string_view queue) override {
    return inner_->drain(queue);
  }
  boost::asio::awaitable<std::size_t> obliterate(std::string_view queue, bool force) override {
    return inner_->obliterate(queue, force);
  }
  boost::asio::awaitable<void> set_rate_limit(std::string_view queue, RateLimit limit) override {
    return inner_->set_rate_limit(queue, limit);
  }
  boost::asio::awaitable<RateLimit> rate_limit(std::string_view queue) override {
    return inner_->rate_limit(queue);
  }
  boost::asio::awaitable<std::int64_t> rate_limited_until(std::string_view queue,
                                                         std::int64_t now_ms) override {
    return inner_->rate_limited_until(queue, now_ms);
  }
  boost::asio::awaitable<void> upsert_repeatable(Repeatable r) override {
    return inner_->upsert_repeatable(std::move(r));
  }
  boost::asio::awaitable<void> remove_repeatable(std::string_view queue,
                                                 std::string_view name) override {
    return inner_->remove_repeatable(queue, name);
  }
  boost::asio::awaitable<void> set_repeatable_paused(std::string_view queue, std::string_view name,
                                                     bool paused, std::int64_t next_fire_ms) override {
    return inner_->set_repeatable_paused(queue, name, paused, next_fire_ms);
  }
  boost::asio::awaitable<std::vector<Repeatable>> repeatables(std::string_view queue) override {
    return inner_->repeatables(queue);
  }
  boost::asio::awaitable<bool> fire_repeatable(std::string_view queue, std::string_view name,
                                               std::int64_t expected_fire_ms,
                                               std::int64_t next_fire_ms, Job job) override {
    return inner_->fire_repeatable(queue, name, expected_fire_ms, next_fire_ms, std::move(job));
  }
  boost::asio::awaitable<std::int64_t> follow_events(std::int64_t until_ms) override {
    return inner_->follow_events(until_ms);
  }
  boost::asio::awaitable<EventPage> read_events(std::int64_t after_seq,
                                                         std::size_t limit) override {
    return inner_->read_events(after_seq, limit);
  }
  std::string describe() const override { return inner_->describe(); }

  // Data protection (issue 5)
  boost::asio::awaitable<JobPage> scan(std::optional<JobId> after, std::size_t limit) override {
    return inner_->scan(std::move(after), limit);
  }
  boost::asio::awaitable<std::vector<bool>> rewrite_sealed(
      std::vector<SealedRewrite> rewrites) override {
    return inner_->rewrite_sealed(std::move(rewrites));
  }
  boost::asio::awaitable<PurgeResult> purge_subject(std::string subject) override {
    return inner_->purge_subject(std::move(subject));
  }
  // Audit outbox (issue 6)
  void enable_audit_outbox(std::string actor) override {
    inner_->enable_audit_outbox(std::move(actor));
  }
  boost::asio::awaitable<std::vector<AuditOutboxRow>> read_audit_outbox(std::int64_t after_seq,
                                                                       std::size_t limit) override {
    return inner_->read_audit_outbox(after_seq, limit);
  }
  void trim_audit_outbox(std::int64_t through_seq) override {
    inner_->trim_audit_outbox(through_seq);
  }
  std::string store_id() const override { return inner_->store_id(); }
  boost::asio::awaitable<void> append_audit_chain(std::vector<AuditChainLine> lines) override {
    return inner_->append_audit_chain(std::move(lines));
  }
  boost::asio::awaitable<std::vector<AuditChainLine>> read_audit_chain(
      std::int64_t after_seq, std::size_t limit) override {
    return inner_->read_audit_chain(after_seq, limit);
  }
  boost::asio::awaitable<std::int64_t> audit_chain_head() override {
    return inner_->audit_chain_head();
  }

 protected:
  Backend& inner() const { return *inner_; }

 private:
  std::shared_ptr<Backend> inner_;
};

}  // namespace asyncmq::core

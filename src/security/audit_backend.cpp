// Coroutine bodies here follow the GCC 12 rules in backend.hpp: no braced
// initialiser lists, requests built as named variables before co_await.
#include "security/audit_backend.hpp"

#include <asyncmq/sync.hpp>

#include "core/audit_actor.hpp"
#include "core/foreign_post.hpp"
#include "core/forwarding_backend.hpp"
#include "core/log.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sched.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace asyncmq::security {
namespace {

using boost::asio::awaitable;

// The N of ASYNCMQ_FAULT_KILL_BEFORE_AUDIT_RELAY (see the header), or 0.
std::uint64_t kill_before_relay_at() {
  const char* v = std::getenv("ASYNCMQ_FAULT_KILL_BEFORE_AUDIT_RELAY");
  if (!v || !*v) return 0;
  return std::strtoull(v, nullptr, 10);
}

class AuditingBackend final : public core::ForwardingBackend {
 public:
  AuditingBackend(std::shared_ptr<Backend> inner, std::shared_ptr<AuditLog> log, std::string actor,
                  RenderExecutor render_on)
      : ForwardingBackend(std::move(inner)),
        log_(std::move(log)),
        actor_(std::move(actor)),
        kill_at_(kill_before_relay_at()),
        relay_work_(boost::asio::make_work_guard(relay_io_)),
        round_done_(relay_io_, boost::asio::steady_timer::time_point::max()),
        render_on_(std::move(render_on)),
        render_work_(boost::asio::make_work_guard(render_io_)),
        rendered_(relay_io_, boost::asio::steady_timer::time_point::max()) {
    ForwardingBackend::inner().enable_audit_outbox(actor_);
    store_ = ForwardingBackend::inner().store_id();
    if (render_on_) {
      render_idle_ = true;
    } else {
      renderer_ = std::thread([this] {
        // Any thread may lower itself (coming back is what needs a
        // privilege); this one never comes back, and holds no lock that
        // anybody could wait for. Where even this is refused, the rounds
        // render on the relay thread.
        sched_param p{};
        p.sched_priority = 0;
        render_idle_ = ::sched_setscheduler(0, SCHED_IDLE, &p) == 0;
        render_io_.run();
      });
    }
    relayer_ = std::thread([this] { relay_io_.run(); });
  }

  // Relays what is left, then stops the relay thread (before the inner
  // backend goes: the base class destructor runs after this one).
  ~AuditingBackend() override {
    stopping_ = true;  // the last rounds render on the relay thread
    urgent();
    boost::asio::co_spawn(relay_io_, last_rounds(), boost::asio::detached);
    relay_work_.reset();
    relayer_.join();
    render_work_.reset();
    if (renderer_.joinable()) renderer_.join();
  }

  // Relays what an earlier process left in the outbox (it crashed between a
  // commit and its relay). Separate from the constructor: it co_awaits.
  awaitable<void> recover() { co_await on_relay_thread(recover_on_relay_thread()); }

  awaitable<std::vector<JobId>> enqueue(std::vector<Job> jobs) override {
    core::AuditActorScope as(actor_);
    std::vector<JobId> ids = co_await inner().enqueue(std::move(jobs));
    co_await relay();
    co_return ids;
  }

  awaitable<std::vector<Job>> claim(const ClaimRequest& request) override {
    core::AuditActorScope as(actor_);
    std::vector<Job> jobs = co_await inner().claim(request);
    if (!jobs.empty()) kick();
    co_return jobs;
  }

  awaitable<std::vector<bool>> finish(std::vector<Outcome> outcomes) override {
    core::AuditActorScope as(actor_);
    std::vector<bool> applied = co_await inner().finish(std::move(outcomes));
    kick();
    co_return applied;
  }

  awaitable<ReclaimResult> reclaim_expired(std::int64_t now_ms, int max_stalls) override {
    core::AuditActorScope as(actor_);
    ReclaimResult r = co_await inner().reclaim_expired(now_ms, max_stalls);
    if (!r.requeued.empty() || !r.dead.empty()) kick();
    co_return r;
  }

  awaitable<void> remove(const JobId& id) override {
    core::AuditActorScope as(actor_);
    co_await inner().remove(id);
    co_await relay();
  }

  awaitable<void> retry(const JobId& id, std::int64_t now_ms) override {
    core::AuditActorScope as(actor_);
    co_await inner().retry(id, now_ms);
    co_await relay();
  }

  awaitable<void> set_paused(std::string_view queue, bool paused) override {
    std::string q(queue);
    core::AuditActorScope as(actor_);
    co_await inner().set_paused(q, paused);
    co_await relay();
  }

  awaitable<std::vector<JobId>> expire_due(std::int64_t now_ms) override {
    core::AuditActorScope as(actor_);
    std::vector<JobId> ids = co_await inner().expire_due(now_ms);
    if (!ids.empty()) kick();
    co_return ids;
  }

  awaitable<JobState> cancel(const JobId& id, std::int64_t now_ms) override {
    core::AuditActorScope as(actor_);
    JobState st = co_await inner().cancel(id, now_ms);
    co_await relay();
    co_return st;
  }

  awaitable<std::vector<JobId>> clean(std::string_view queue, JobState state,
                                      std::int64_t before_ms, std::size_t limit) override {
    std::string q(queue);
    core::AuditActorScope as(actor_);
    std::vector<JobId> ids = co_await inner().clean(q, state, before_ms, limit);
    if (!ids.empty()) co_await relay();
    co_return ids;
  }

  awaitable<std::size_t> drain(std::string_view queue) override {
    std::string q(queue);
    core::AuditActorScope as(actor_);
    std::size_t n = co_await inner().drain(q);
    co_await relay();
    co_return n;
  }

  awaitable<std::size_t> obliterate(std::string_view queue, bool force) override {
    std::string q(queue);
    core::AuditActorScope as(actor_);
    std::size_t n = co_await inner().obliterate(q, force);
    co_await relay();
    co_return n;
  }

  awaitable<void> set_rate_limit(std::string_view queue, RateLimit limit) override {
    std::string q(queue);
    core::AuditActorScope as(actor_);
    co_await inner().set_rate_limit(q, limit);
    co_await relay();
  }

  awaitable<void> upsert_repeatable(Repeatable r) override {
    core::AuditActorScope as(actor_);
    co_await inner().upsert_repeatable(std::move(r));
    co_await relay();
  }

  awaitable<void> remove_repeatable(std::string_view queue, std::string_view name) override {
    std::string q(queue), n(name);
    core::AuditActorScope as(actor_);
    co_await inner().remove_repeatable(q, n);
    co_await relay();
  }

  awaitable<void> set_repeatable_paused(std::string_view queue, std::string_view name, bool paused,
                                        std::int64_t next_fire_ms) override {
    std::string q(queue), n(name);
    core::AuditActorScope as(actor_);
    co_await inner().set_repeatable_paused(q, n, paused, next_fire_ms);
    co_await relay();
  }

  awaitable<bool> fire_repeatable(std::string_view queue, std::string_view name,
                                  std::int64_t expected_fire_ms, std::int64_t next_fire_ms,
                                  Job job) override {
    std::string q(queue), n(name);
    core::AuditActorScope as(actor_);
    bool fired = co_await inner().fire_repeatable(q, n, expected_fire_ms, next_fire_ms,
                                                  std::move(job));
    if (fired) co_await relay();
    co_return fired;
  }

 private:
  // The fault-injection point: committed, nothing of it in the chain yet.
  void fault_point() {
    if (kill_at_ != 0 && relays_.fetch_add(1) + 1 == kill_at_) ::raise(SIGKILL);
  }

  // After an audited call that a user or an operator makes (enqueue, the
  // queue and job acts): returns once its records are in the chain, as the
  // header promises for a call made alone.
  awaitable<void> relay() {
    fault_point();
    // The caller waits: the round renders on the relay thread (append_rows).
    struct Waiting {
      AuditingBackend& b;
      explicit Waiting(AuditingBackend& a) : b(a) {
        b.waiting_.fetch_add(1, std::memory_order_acq_rel);
        b.urgent();
      }
      ~Waiting() { b.waiting_.fetch_sub(1, std::memory_order_acq_rel); }
    };
    Waiting waiting(*this);
    co_await on_relay_thread(relay_rounds());
  }

  // Wakes a round that waits for the renderer (append_rows): the render is
  // done, or somebody waits (a caller, the destructor) and the round
  // renders its batch on the relay thread instead.
  void urgent() {
    boost::asio::post(relay_io_, [this] { rendered_.cancel(); });
  }
  bool is_urgent() const {
    return waiting_.load(std::memory_order_acquire) > 0 || stopping_.load(std::memory_order_acquire);
  }

  // Appends a page of outbox rows to the chain. Unless somebody waits for
  // the round (is_urgent), the records are rendered (HMACs, JSON lines:
  // nearly all of the relay's CPU time) on the renderer thread, at idle
  // priority, holding no lock; the relay thread only picks the events and
  // writes the lines (AuditLog::prepare_outbox, render, commit_outbox).
  // Should the renderer not get the CPU within kRenderWait, or before
  // somebody waits, the relay thread relays the page itself (the
  // renderer's late result is dropped): a machine kept busy by others
  // delays the chain by that much, never without bound.
  static constexpr std::chrono::milliseconds kRenderWait{20};
  awaitable<std::int64_t> append_rows(std::vector<AuditOutboxRow> rows) {
    if (!render_idle_ || is_urgent()) co_return log_->append_outbox(store_, rows);
    std::shared_ptr<AuditLog::OutboxBatch> batch = log_->prepare_outbox(store_, std::move(rows));
    rendered_.expires_after(kRenderWait);
    auto job = [this, batch] {
      AuditLog::render(*batch);
      urgent();  // wakes the round
    };
    if (render_on_)
      render_on_(std::move(job));
    else
      boost::asio::post(render_io_, std::move(job));
    while (!AuditLog::rendered(*batch) && !is_urgent()) {
      boost::system::error_code ec;  // operation_aborted: rendered, or urgent
      co_await rendered_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (!ec) break;  // kRenderWait is up
    }
    if (AuditLog::rendered(*batch)) co_return log_->commit_outbox(*batch);
    co_return log_->append_outbox(store_, AuditLog::rows_of(*batch));
  }

  // Runs `op` on the relay thread; the caller resumes on its own executor.
  // Not co_spawn(relay_io_, op, use_awaitable): its completion resumes the
  // caller and only then, on the relay thread, drops its work guard on the
  // caller's io_context, whose last unit of work may run stop() there. A
  // caller that does not run its io_context until it runs out of work (one
  // it polls or stops, as run_until and programs on a signal do) may have
  // destroyed it by then: TSan reported ~io_context vs scheduler::stop()
  // from ~co_spawn_work_guard on the relay thread, and the freed
  // io_context's stack slot reused by the next one. Here the work guard
  // travels with the completion and is dropped on the caller's thread, and
  // post_from_foreign_thread covers the post itself.
  awaitable<void> on_relay_thread(awaitable<void> op) {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                       void(std::exception_ptr)>(
        [this](auto handler, awaitable<void> body) {
          auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
          // The lambda has no associated executor: co_spawn completes it on
          // the relay thread and tracks work on relay_io_ only.
          boost::asio::co_spawn(
              relay_io_, std::move(body),
              [h = std::move(handler), w = std::move(work)](std::exception_ptr e) mutable {
                auto ex = w.get_executor();
                core::post_from_foreign_thread(ex, [h = std::move(h), w = std::move(w), e]() mutable {
                  w.reset();
                  std::move(h)(e);
                });
              });
        },
        boost::asio::use_awaitable, std::move(op));
  }

  // After a worker's calls (claim, finish, reclaims, expiry): the records
  // are committed in the outbox; the relay runs on the relay thread while
  // the worker goes on. Why: waiting for the chain write on the worker's
  // event loop put the HMAC, the JSON lines and the write(2) on its
  // critical path for every batch (audit on/off 0.65 end to end; 0.76 with
  // this). Nothing is lost by not waiting: the rows stay in the outbox
  // until the chain holds them, and the destructor relays what is left.
  // Kicks coalesce: while one is queued and not yet begun, the next ones
  // find kick_queued_ set and spawn nothing, as the queued one's round reads
  // their rows too (it clears the flag before it reads the outbox).
  void kick() {
    fault_point();
    if (kick_queued_.exchange(true)) return;
    boost::asio::co_spawn(relay_io_, kicked_round(), boost::asio::detached);
  }

  // A kicked round waits kKickDelay first, so that the commits of that
  // window share one round (one outbox read, one write, one wake-up of this
  // thread) instead of a round each: the worker commits a claim or a finish
  // every few tens of microseconds, and a wake-up of this thread per commit
  // made auditing switch threads about three times as often as the worker
  // alone (a 30,000-job SQLite bench: 17.3k context switches, 6.3k without
  // auditing; 11.1k with this delay). The rows wait in the outbox meanwhile,
  // committed; a request that must see its records in the chain (relay())
  // does not wait for this.
  static constexpr std::chrono::microseconds kKickDelay{2000};
  awaitable<void> kicked_round() {
    boost::asio::steady_timer delay(relay_io_, kKickDelay);
    boost::system::error_code ec;
    co_await delay.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    kick_queued_ = false;
    co_await relay_rounds();
  }

  // Runs on the relay thread only, as all the relay state does. A request
  // is covered by a round that began after it was made: the first caller
  // runs rounds while requests arrive; the others wait for theirs.
  awaitable<void> relay_rounds() {
    const std::uint64_t ticket = ++asked_;
    if (relaying_) {
      while (covered_ < ticket) {
        boost::system::error_code ec;  // operation_aborted: a round ended
        co_await round_done_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      }
      co_return;
    }
    relaying_ = true;
    while (covered_ < asked_) {
      const std::uint64_t begun = asked_;
      try {
        co_await relay_once();
      } catch (const std::exception& ex) {
        // The outbox read failed: the rows stay for the next relay.
        core::log(core::LogLevel::error, "audit",
                  std::string("reading the audit outbox failed: ") + ex.what());
      }
      covered_ = begun;
      round_done_.cancel();
    }
    relaying_ = false;
  }

  // The destructor's: what is left, on disk, and trimmed.
  awaitable<void> last_rounds() {
    co_await relay_rounds();
    try {
      log_->flush();
      trim();
    } catch (const std::exception& ex) {
      core::log(core::LogLevel::error, "audit",
                std::string("trimming the audit outbox at close failed (its rows stay; the next "
                            "relay skips what the chain holds): ") + ex.what());
    }
  }

  // The outbox keeps a row until the chain holds it on disk (see
  // AuditLog::trimmable_through), not only in the page cache.
  void trim() {
    if (const std::int64_t t = log_->trimmable_through(store_); t > trimmed_) {
      trimmed_ = t;
      inner().trim_audit_outbox(t);
    }
  }

  awaitable<void> recover_on_relay_thread() {
    co_await relay_rounds();
    co_await copy_chain_to_backend();  // also when the outbox was empty
  }

  // Every committed outbox row after the cursor, in pages, into the chain.
  awaitable<void> relay_once() {
    constexpr std::size_t kPage = 1000;
    for (;;) {
      std::vector<AuditOutboxRow> rows = co_await inner().read_audit_outbox(cursor_, kPage);
      if (rows.empty()) {
        trim();
        co_return;
      }
      const std::size_t n = rows.size();
      const std::int64_t last = rows.back().seq;
      std::int64_t through = co_await append_rows(std::move(rows));
      co_await copy_chain_to_backend();  // before the trim: see copy_chain_to_backend
      if (through > cursor_) cursor_ = through;
      trim();
      // A failed append leaves the cursor short of the rows: stop, retry later.
      if (n < kPage || through < last) co_return;
    }
  }

  // The backend sink (AuditOptions::backend_sink): copies the log's lines
  // that the store's audit table lacks into it, in pages, each page one
  // append_audit_chain (one transaction). The source is the log, not this
  // round's outbox rows, so the table also gets the records appended
  // directly (denials, key changes) and those of other processes sharing
  // the log, and a crash between the log write and the copy (or a failed
  // copy) loses nothing: the next round copies from where the table ends,
  // and re-sent lines are no-ops (idempotent by seq). It runs after the log
  // write and before the trim, so whatever this round relayed is in both
  // sinks by the time its outbox rows may go. A failure is logged (once
  // until the copy works again) and never thrown: the transition committed
  // and its record is in the log. Only the relaying coroutine (and
  // recover(), before the object is shared) calls it.
  awaitable<void> copy_chain_to_backend() {
    if (!log_->backend_sink()) co_return;
    constexpr std::size_t kPage = 1000;
    try {
      if (table_head_ < 0) table_head_ = co_await table_head_of_this_chain();
      for (;;) {
        std::vector<AuditChainLine> lines =
            log_->read_lines(static_cast<std::uint64_t>(table_head_), kPage);
        if (lines.empty()) break;
        const std::int64_t last = lines.back().seq;
        const bool more = lines.size() == kPage;
        co_await inner().append_audit_chain(std::move(lines));
        table_head_ = last;
        if (!more) break;
      }
      sink_failing_ = false;
    } catch (const std::exception& ex) {
      table_head_ = -1;  // read the table's head again next time
      if (!sink_failing_)
        core::log(core::LogLevel::error, "audit",
                  std::string("copying the audit chain into the backend's audit table failed "
                              "(the records are in the log; the copy is retried at each relay): ") +
                      ex.what());
      sink_failing_ = true;
    }
  }

  // The audit table's last seq, after checking that its line there is
  // this log's: a store holds one chain, and copying on after another
  // chain's head would splice two chains. Throws IntegrityError if not.
  awaitable<std::int64_t> table_head_of_this_chain() {
    std::int64_t head = co_await inner().audit_chain_head();
    if (head == 0) co_return 0;
    std::vector<AuditChainLine> theirs = co_await inner().read_audit_chain(head - 1, 1);
    std::vector<AuditChainLine> mine = log_->read_lines(static_cast<std::uint64_t>(head - 1), 1);
    if (theirs.empty() || mine.empty() || !(theirs[0] == mine[0]))
      throw IntegrityError("the store's audit table ends at seq " + std::to_string(head) +
                           " with a line this log does not hold (another chain's, or the log "
                           "was replaced); not copying into it");
    co_return head;
  }

  std::shared_ptr<AuditLog> log_;
  const std::string actor_;  // named to the backend for each call (core/audit_actor.hpp)
  std::string store_;
  const std::uint64_t kill_at_;
  std::atomic<std::uint64_t> relays_{0};
  std::atomic<bool> kick_queued_{false};
  // The relay thread and its state (touched on that thread only).
  boost::asio::io_context relay_io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> relay_work_;
  boost::asio::steady_timer round_done_;  // never expires; cancelled as each round ends
  std::uint64_t asked_ = 0;    // relay requests so far
  std::uint64_t covered_ = 0;  // requests that a finished round began after
  bool relaying_ = false;
  std::int64_t cursor_ = 0;  // rows through it are in the chain (as far as this object knows)
  std::int64_t trimmed_ = 0;  // the last seq given to trim_audit_outbox
  std::int64_t table_head_ = -1;  // the audit table holds the chain through it; -1: read it
  bool sink_failing_ = false;     // the last copy failed (and was logged)
  // The renderer thread (append_rows), at idle priority if render_idle_
  // (or the test's render_on_ in its place). Why a thread of its own: on the
  // 30,000-job SQLite bench (audit on/off, 7 rounds) a relay that skipped
  // the chain work altogether scored 0.953 against 0.888 for the full
  // relay, though the process used under one of two cores: the chain's CPU
  // time hurt by taking a core just when the SQLite writer or the worker
  // woke, and a SCHED_IDLE thread never does (the scheduler counts its core
  // as idle). With the renderer, in one run of 11 rounds: 0.907 (0.913
  // with CAP_SYS_NICE dropped), against 0.885 for the relay thread doing
  // it all (at idle priority only where it may come back: 0.928 as root).
  // `waiting_`: relay() calls in progress; `stopping_`: the destructor runs.
  const RenderExecutor render_on_;
  boost::asio::io_context render_io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> render_work_;
  std::atomic<bool> render_idle_{false};
  std::atomic<int> waiting_{0};
  std::atomic<bool> stopping_{false};
  boost::asio::steady_timer rendered_;  // on relay_io_; cancelled by urgent()
  std::thread renderer_;
  std::thread relayer_;      // last: started once the rest exists
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
  return make_auditing_backend(std::move(inner), std::move(log), std::move(actor), nullptr);
}

std::shared_ptr<Backend> make_auditing_backend(std::shared_ptr<Backend> inner,
                                               std::shared_ptr<AuditLog> log, std::string actor,
                                               RenderExecutor render_on) {
  auto b = std::make_shared<AuditingBackend>(std::move(inner), std::move(log), std::move(actor),
                                             std::move(render_on));
  try {
    sync_wait(b->recover());
  } catch (const std::exception& ex) {
    // The backend works; its records wait in the outbox for the next relay.
    core::log(core::LogLevel::error, "audit",
              std::string("relaying the audit outbox on open failed: ") + ex.what());
  }
  return b;
}

}  // namespace asyncmq::security

#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>

#include "runtime/make_job.hpp"

#include <boost/json/serialize.hpp>

#include <map>

namespace asyncmq {

void validate_options(const JobOptions& o) {
  auto fail = [](const std::string& what) { throw InvalidArgument("invalid job option: " + what); };
  if (o.priority < -1'000'000 || o.priority > 1'000'000)
    fail("priority " + std::to_string(o.priority) + " is outside [-1000000, 1000000]");
  if (o.delay_ms < 0) fail("delay must not be negative");
  if (o.delay_ms > 10LL * 365 * 24 * 3600 * 1000) fail("delay is over ten years");
  if (o.attempts < 1 || o.attempts > 1000)
    fail("attempts " + std::to_string(o.attempts) + " is outside [1, 1000]");
  if (o.backoff.delay_ms < 0) fail("backoff delay must not be negative");
  if (o.backoff.max_delay_ms < o.backoff.delay_ms)
    fail("backoff max delay is smaller than its delay");
  if (!(o.backoff.jitter >= 0.0 && o.backoff.jitter <= 1.0)) fail("backoff jitter is outside [0, 1]");
  if (o.timeout_ms < 0) fail("timeout must not be negative");
  if (o.ttl_ms < 0) fail("ttl must not be negative");
  if (o.ttl_ms > 10LL * 365 * 24 * 3600 * 1000) fail("ttl is over ten years");
  if (o.idempotency_window_ms < 0) fail("idempotency window must not be negative");
  if (o.idempotency_window_ms > 0 && o.idempotency_key.empty())
    fail("an idempotency window needs an idempotency key");
  if (o.idempotency_key.size() > 256) fail("idempotency key is longer than 256 bytes");
  if (o.subject.size() > 256) fail("subject is longer than 256 bytes");
  if (o.group.size() > 256)
    fail("group key is " + std::to_string(o.group.size()) + " bytes, over the limit of 256");
}

Queue::Queue(std::shared_ptr<Client> client, std::string name)
    : client_(std::move(client)), name_(std::move(name)) {
  validate_name("queue", name_);
  if (!client_) throw InvalidArgument("Queue needs a client");
}

Job make_job(Client& c, const std::string& queue, std::string task,
             const boost::json::value& payload, const JobOptions& options, std::int64_t now_ms) {
  validate_name("task", task);
  validate_options(options);
  std::string text = boost::json::serialize(payload);
  if (text.size() > c.options().max_payload_bytes) {
    throw InvalidArgument("payload is " + std::to_string(text.size()) +
                              " bytes, over the limit of " +
                              std::to_string(c.options().max_payload_bytes) + " bytes",
                          errc::payload_too_large);
  }
  Job job;
  job.id = JobId::generate(c.env());
  job.queue = queue;
  job.task = std::move(task);
  job.options = options;
  if (!options.subject.empty()) job.options.subject = c.codec().encode_subject(options.subject);
  job.payload = c.codec().encode(codec_context(job, Field::payload), text);
  job.created_ms = now_ms;
  job.run_at_ms = now_ms + options.delay_ms;
  job.state = options.delay_ms > 0 ? JobState::delayed : JobState::waiting;
  return job;
}

Job Queue::make_job(std::string task, const boost::json::value& payload, const JobOptions& options,
                    std::int64_t now_ms) {
  return asyncmq::make_job(*client_, name_, std::move(task), payload, options, now_ms);
}

boost::asio::awaitable<JobId> Queue::add(std::string task, boost::json::value payload,
                                         JobOptions options) {
  std::vector<Job> batch;
  batch.push_back(make_job(std::move(task), payload, options, client_->env().now_ms()));
  auto ids = co_await client_->backend().enqueue(std::move(batch));
  co_return ids.at(0);
}

boost::asio::awaitable<JobId> Queue::add_json(std::string task, std::string_view payload_json,
                                              JobOptions options) {
  auto value = parse_payload(payload_json, client_->options());
  co_return co_await add(std::move(task), std::move(value), std::move(options));
}

boost::asio::awaitable<std::vector<JobId>> Queue::add_bulk(std::vector<NewJob> jobs) {
  std::vector<Job> batch;
  std::vector<JobId> ids;
  batch.reserve(jobs.size());
  ids.reserve(jobs.size());
  std::int64_t now = client_->env().now_ms();
  for (auto& j : jobs) batch.push_back(make_job(std::move(j.task), j.payload, j.options, now));
  if (!batch.empty()) ids = co_await client_->backend().enqueue(std::move(batch));
  co_return ids;
}

boost::asio::awaitable<std::optional<Job>> Queue::get(const JobId& id) {
  auto job = co_await client_->backend().get(id);
  if (!job || job->queue != name_) co_return std::nullopt;
  client_->decode(*job);
  co_return job;
}

boost::asio::awaitable<JobPage> Queue::list(JobState state, std::optional<JobId> after,
                                            std::size_t limit) {
  ListRequest req{name_, state, after, limit};
  auto page = co_await client_->backend().list(req);
  for (auto& job : page.jobs) client_->decode(job);
  co_return page;
}

boost::asio::awaitable<StateCounts> Queue::counts() {
  co_return co_await client_->backend().counts(name_);
}

boost::asio::awaitable<void> Queue::remove(const JobId& id) {
  auto job = co_await client_->backend().get(id);
  if (!job || job->queue != name_) throw NotFound("job " + id.str() + " not found in queue " + name_);
  co_await client_->backend().remove(id);
}

boost::asio::awaitable<void> Queue::retry(const JobId& id) {
  auto job = co_await client_->backend().get(id);
  if (!job || job->queue != name_) throw NotFound("job " + id.str() + " not found in queue " + name_);
  co_await client_->backend().retry(id, client_->env().now_ms());
}

boost::asio::awaitable<void> Queue::pause() { co_await client_->backend().set_paused(name_, true); }
boost::asio::awaitable<void> Queue::resume() { co_await client_->backend().set_paused(name_, false); }
boost::asio::awaitable<bool> Queue::is_paused() { co_return co_await client_->backend().is_paused(name_); }

boost::asio::awaitable<JobState> Queue::cancel(const JobId& id) {
  auto job = co_await client_->backend().get(id);
  if (!job || job->queue != name_) throw NotFound("job " + id.str() + " not found in queue " + name_);
  co_return co_await client_->backend().cancel(id, client_->env().now_ms());
}

boost::asio::awaitable<std::vector<JobId>> Queue::clean(JobState state, std::int64_t older_than_ms,
                                                        std::size_t limit, std::size_t batch) {
  if (state == JobState::active)
    throw InvalidArgument("active jobs cannot be cleaned; cancel them first");
  if (older_than_ms < 0) throw InvalidArgument("clean: older-than must not be negative");
  if (batch < 1 || batch > 10000) throw InvalidArgument("clean: batch size is outside [1, 10000]");
  std::int64_t before = client_->env().now_ms() - older_than_ms;
  std::vector<JobId> out;
  for (;;) {
    std::size_t want = limit == 0 ? batch : std::min(batch, limit - out.size());
    if (want == 0) break;
    auto ids = co_await client_->backend().clean(name_, state, before, want);
    out.insert(out.end(), ids.begin(), ids.end());
    if (ids.size() < want) break;
  }
  co_return out;
}

boost::asio::awaitable<std::size_t> Queue::drain() {
  co_return co_await client_->backend().drain(name_);
}

boost::asio::awaitable<std::size_t> Queue::obliterate(bool force) {
  co_return co_await client_->backend().obliterate(name_, force);
}

boost::asio::awaitable<void> Queue::set_rate_limit(RateLimit limit) {
  co_await client_->backend().set_rate_limit(name_, limit);
}

boost::asio::awaitable<RateLimit> Queue::rate_limit() {
  co_return co_await client_->backend().rate_limit(name_);
}

}  // namespace asyncmq

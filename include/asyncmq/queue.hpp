// A Queue is a named handle for producing jobs into, and operating, one queue.
//
// Thread safety: safe for concurrent use from any thread or coroutine.
// Lifetime: cheap to copy; holds its Client.
// Errors: InvalidArgument for bad names, JSON or options (nothing is written);
// BackendError for store failures; NotFound and Conflict as documented.
#pragma once

#include <asyncmq/backend.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/job.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <memory>
#include <string>
#include <vector>

namespace asyncmq {

// One job to add, as given by a producer.
struct NewJob {
  std::string task;
  boost::json::value payload;
  JobOptions options;
};

// A flow as a tree: a job and the children it waits for (any depth). A
// child's queue defaults to its parent's.
struct FlowJob {
  std::string queue;  // empty: the parent's (the root: the Queue's)
  std::string task;
  boost::json::value payload;
  JobOptions options;
  ChildFailure on_failure = ChildFailure::fail_parent;  // what this child's failure does
  std::vector<FlowJob> children;
};

struct FlowIds {
  JobId root;
  std::vector<JobId> all;  // depth-first, the root first
};

// Throws InvalidArgument if an option is out of range (priority, attempts,
// delay, timeout, backoff, key sizes), naming the option.
void validate_options(const JobOptions& options);

class Queue {
 public:
  // Throws InvalidArgument if `name` is not a valid queue name.
  Queue(std::shared_ptr<Client> client, std::string name);

  const std::string& name() const { return name_; }
  Client& client() const { return *client_; }

  // Adds one job and returns its id once it is durable (see backend.hpp).
  // Concurrent adds may share one commit.
  boost::asio::awaitable<JobId> add(std::string task, boost::json::value payload,
                                    JobOptions options = {});
  // As above, with the payload given as JSON text (validated and normalised).
  boost::asio::awaitable<JobId> add_json(std::string task, std::string_view payload_json,
                                         JobOptions options = {});
  // Adds every job or none, in one backend transaction. Returns ids in order.
  // With idempotency keys, a deduplicated job's slot holds the existing id.
  boost::asio::awaitable<std::vector<JobId>> add_bulk(std::vector<NewJob> jobs);
  // Adds a flow (the root in this queue) atomically. See Client::add_flow.
  boost::asio::awaitable<FlowIds> add_flow(FlowJob root);

  // A job of this queue, decoded; nullopt if absent or in another queue.
  boost::asio::awaitable<std::optional<Job>> get(const JobId& id);
  // A page of this queue's jobs in `state`, in creation order, decoded.
  boost::asio::awaitable<JobPage> list(JobState state, std::optional<JobId> after = {},
                                       std::size_t limit = 50);
  boost::asio::awaitable<StateCounts> counts();
  boost::asio::awaitable<void> remove(const JobId& id);
  boost::asio::awaitable<void> retry(const JobId& id);
  boost::asio::awaitable<void> pause();
  boost::asio::awaitable<void> resume();
  boost::asio::awaitable<bool> is_paused();
  // See Client::cancel. Throws NotFound if the job is not in this queue.
  boost::asio::awaitable<JobState> cancel(const JobId& id);

  // Housekeeping. clean removes jobs of `state` older than `older_than_ms`
  // (finished that long ago; for unfinished states, created), in batches of
  // at most `batch` (one transaction each), up to `limit` in all (0: no
  // limit). Returns the ids removed.
  boost::asio::awaitable<std::vector<JobId>> clean(JobState state, std::int64_t older_than_ms,
                                                   std::size_t limit = 0,
                                                   std::size_t batch = 1000);
  // Removes every waiting and delayed job (flow jobs excepted).
  boost::asio::awaitable<std::size_t> drain();
  // Removes the queue and everything in it (see Backend::obliterate).
  boost::asio::awaitable<std::size_t> obliterate(bool force = false);

  // A global rate limit shared by every worker; max = 0 removes it.
  boost::asio::awaitable<void> set_rate_limit(RateLimit limit);
  boost::asio::awaitable<RateLimit> rate_limit();

 private:
  Job make_job(std::string task, const boost::json::value& payload, const JobOptions& options,
               std::int64_t now_ms);

  std::shared_ptr<Client> client_;
  std::string name_;
};

}  // namespace asyncmq

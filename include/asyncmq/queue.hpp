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
  boost::asio::awaitable<std::vector<JobId>> add_bulk(std::vector<NewJob> jobs);

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

 private:
  Job make_job(std::string task, const boost::json::value& payload, const JobOptions& options,
               std::int64_t now_ms);

  std::shared_ptr<Client> client_;
  std::string name_;
};

}  // namespace asyncmq

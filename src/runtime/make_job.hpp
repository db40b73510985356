// Building a stored Job from what a producer gives: validation and encoding
// through the client's codec. Shared by Queue, flows and the scheduler.
#pragma once

#include <asyncmq/client.hpp>

namespace asyncmq {

// Throws InvalidArgument (task name, options, payload size); the payload is
// encoded under the new job's id.
Job make_job(Client& c, const std::string& queue, std::string task,
             const boost::json::value& payload, const JobOptions& options, std::int64_t now_ms);

}  // namespace asyncmq

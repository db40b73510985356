// Flows: a parent job with children, added atomically.
#include <asyncmq/client.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>

#include "runtime/make_job.hpp"

#include <algorithm>
#include <unordered_map>

namespace asyncmq {
namespace {

[[noreturn]] void refuse(const std::string& why) { throw InvalidArgument("invalid flow: " + why); }

std::string shown(std::string_view ref) { return "'" + std::string(ref.substr(0, 64)) + "'"; }

// Refs unique, one root, parents known, no cycle.
void check_shape(const std::vector<FlowNode>& nodes) {
  if (nodes.empty()) refuse("it has no jobs");
  if (nodes.size() > kMaxFlowJobs)
    refuse("it has " + std::to_string(nodes.size()) + " jobs, over the limit of " +
           std::to_string(kMaxFlowJobs));
  std::unordered_map<std::string_view, std::size_t> index;
  std::size_t roots = 0;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto& n = nodes[i];
    if (n.ref.empty()) refuse("job " + std::to_string(i + 1) + " has no ref");
    if (n.ref.size() > 128) refuse("job " + std::to_string(i + 1) + " has a ref over 128 bytes");
    if (!index.emplace(n.ref, i).second) refuse("ref " + shown(n.ref) + " is used twice");
    if (n.parent.empty()) ++roots;
  }
  if (roots != 1)
    refuse(roots == 0 ? "it has no root (every job names a parent: a cycle)"
                      : "it has " + std::to_string(roots) + " roots; a flow has exactly one");
  for (const auto& n : nodes)
    if (!n.parent.empty() && !index.count(n.parent))
      refuse("job " + shown(n.ref) + " names unknown parent " + shown(n.parent));
  // Walk up from each job; 0 = unseen, 1 = on the current path, 2 = reaches the root.
  std::vector<std::uint8_t> mark(nodes.size(), 0);
  for (std::size_t start = 0; start < nodes.size(); ++start) {
    std::vector<std::size_t> path;
    std::size_t i = start;
    while (mark[i] == 0) {
      mark[i] = 1;
      path.push_back(i);
      if (nodes[i].parent.empty()) break;
      i = index.at(nodes[i].parent);
      if (mark[i] == 1) {
        std::string cycle = shown(nodes[i].ref);
        auto it = std::find(path.begin(), path.end(), i);
        for (++it; it != path.end(); ++it) cycle += " -> " + shown(nodes[*it].ref);
        refuse("it has a cycle: " + cycle + " -> " + shown(nodes[i].ref));
      }
    }
    for (std::size_t k : path) mark[k] = 2;
  }
}

}  // namespace

boost::asio::awaitable<std::vector<JobId>> Client::add_flow(std::vector<FlowNode> nodes) {
  check_shape(nodes);
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<std::int32_t> children(nodes.size(), 0);
  for (std::size_t i = 0; i < nodes.size(); ++i) index.emplace(nodes[i].ref, i);
  for (const auto& n : nodes)
    if (!n.parent.empty()) ++children[index.at(n.parent)];
  std::int64_t now = env_.now_ms();
  std::vector<Job> batch;
  batch.reserve(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    auto& n = nodes[i];
    validate_name("queue", n.queue);
    JobOptions options = n.options;
    options.idempotency_key.clear();  // flows are never deduplicated
    options.idempotency_window_ms = 0;
    batch.push_back(make_job(*this, n.queue, std::move(n.task), n.payload, options, now));
    Job& j = batch.back();
    j.on_failure = n.on_failure;
    j.children = j.pending_children = children[i];
    if (children[i] > 0) j.state = JobState::waiting_children;
  }
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (!nodes[i].parent.empty()) batch[i].parent = batch[index.at(nodes[i].parent)].id;
  co_return co_await backend_->enqueue(std::move(batch));
}

namespace {
void flatten(FlowJob& job, const std::string& parent, const std::string& default_queue,
             std::vector<FlowNode>& out) {
  FlowNode n;
  n.ref = std::to_string(out.size());
  n.parent = parent;
  n.queue = job.queue.empty() ? default_queue : job.queue;
  n.task = std::move(job.task);
  n.payload = std::move(job.payload);
  n.options = std::move(job.options);
  n.on_failure = job.on_failure;
  std::string ref = n.ref;
  std::string queue = n.queue;
  out.push_back(std::move(n));
  for (auto& child : job.children) flatten(child, ref, queue, out);
}
}  // namespace

boost::asio::awaitable<FlowIds> Queue::add_flow(FlowJob root) {
  std::vector<FlowNode> nodes;
  flatten(root, "", name_, nodes);
  FlowIds out;
  out.all = co_await client_->add_flow(std::move(nodes));
  out.root = out.all.at(0);
  co_return out;
}

}  // namespace asyncmq

// Placeholder: the worker runtime is being written.
#include <asyncmq/error.hpp>
#include <asyncmq/worker.hpp>

namespace asyncmq {
struct Worker::Impl {
  WorkerOptions options;
};
Worker::Worker(std::shared_ptr<Client>, std::shared_ptr<const TaskRegistry>, WorkerOptions o)
    : impl_(std::make_unique<Impl>()) { impl_->options = std::move(o); }
Worker::~Worker() = default;
boost::asio::awaitable<void> Worker::run() { co_return; }
void Worker::stop() {}
WorkerStats Worker::stats() const { return {}; }
const std::string& Worker::id() const { return impl_->options.id; }
}  // namespace asyncmq

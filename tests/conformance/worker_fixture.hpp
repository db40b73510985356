// The fixture of the worker conformance tests (worker_conformance_test.cpp,
// worker_features_test.cpp): a BackendConformance with a task registry and
// helpers that run a Worker over the FakeEnv until a condition holds.
#pragma once

#include "conformance/backend_fixture.hpp"

#include <asyncmq/task.hpp>
#include <asyncmq/worker.hpp>

#include <boost/asio/co_spawn.hpp>

#include <functional>
#include <memory>

namespace asyncmq::testing {

class WorkerConformance : public BackendConformance {
 protected:
  std::shared_ptr<TaskRegistry> tasks = std::make_shared<TaskRegistry>();

  WorkerOptions options(std::string queue = "q") {
    WorkerOptions o;
    o.queues = {std::move(queue)};
    o.concurrency = 4;
    o.lease_ms = 10'000;
    o.id = "test-worker";
    o.blocking_threads = 2;
    return o;
  }

  // Starts `worker` on `io`; `finished` turns true when run() returns.
  void start(Worker& worker, boost::asio::io_context& io, bool& finished) {
    boost::asio::co_spawn(io, worker.run(), [&finished](std::exception_ptr e) {
      finished = true;
      if (e) std::rethrow_exception(e);
    });
  }

  // Runs a worker with `o` until `done` holds, then stops it gracefully.
  WorkerStats run_worker(WorkerOptions o, const std::function<bool()>& done) {
    Worker worker(client(), tasks, std::move(o));
    boost::asio::io_context io;
    bool finished = false;
    start(worker, io, finished);
    EXPECT_TRUE(run_until(io, env(), done)) << "the condition never held";
    worker.stop();
    EXPECT_TRUE(run_until(io, env(), [&] { return finished; })) << "the worker did not stop";
    return worker.stats();
  }

  JobState state_of(const JobId& id) { return sync_wait(backend().get(id))->state; }

  bool all_in(const std::vector<JobId>& ids, JobState s) {
    for (auto& id : ids)
      if (state_of(id) != s) return false;
    return true;
  }
};

}  // namespace asyncmq::testing

// The fixture of the conformance suite: one parameter per backend.
// To add a backend, add it to all_backends() below.
#pragma once

#include <asyncmq/backend.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>

#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>

namespace asyncmq::testing {

struct BackendParam {
  std::string name;
  // Makes the URI of a fresh, empty store inside `dir`.
  std::function<std::string(const std::string& dir)> uri;
};

inline std::string PrintToString(const BackendParam& p) { return p.name; }

// Every backend the suite runs against. Redis and PostgreSQL join here.
inline auto all_backends() {
  return ::testing::Values(
      BackendParam{"memory", [](const std::string&) { return std::string("memory://"); }},
      BackendParam{"sqlite", [](const std::string& dir) { return "sqlite://" + dir + "/store.db"; }});
}

inline std::string backend_name(const ::testing::TestParamInfo<BackendParam>& info) {
  return info.param.name;
}

class BackendConformance : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    client_ = Client::open(GetParam().uri(dir_.path()), env_);
    follow_all_events();
  }
  // The suite states what each transition records in the event log, which
  // a store keeps only while followed (EventFollowing tests that part).
  void follow_all_events() {
    sync_wait(backend().follow_events(std::numeric_limits<std::int64_t>::max()));
  }
  void TearDown() override { client_.reset(); }

  FakeEnv& env() { return env_; }
  Backend& backend() { return client_->backend(); }
  std::shared_ptr<Client> client() { return client_; }

  JobId add(const std::string& queue, const std::string& task, boost::json::value payload,
            JobOptions options) {
    Queue q(client_, queue);
    return sync_wait(q.add(task, std::move(payload), std::move(options)));
  }

  std::vector<Job> claim(const std::string& queue, std::size_t max, std::int64_t lease_ms = 30000,
                         const std::string& worker = "worker") {
    return sync_wait(backend().claim({queue, worker, max, lease_ms, env_.now_ms()}));
  }

  std::vector<bool> finish(std::vector<Outcome> outcomes) {
    return sync_wait(backend().finish(std::move(outcomes)));
  }

  Outcome completed(const Job& job, std::string result) {
    return Outcome{job.id, job.lease.token, Outcome::Kind::completed, std::move(result), "", 0,
                   env_.now_ms()};
  }

  StateCounts counts(const std::string& queue) { return sync_wait(backend().counts(queue)); }

  Job make_job(const std::string& queue, const std::string& task) {
    Job j;
    j.id = JobId::generate(env_);
    j.queue = queue;
    j.task = task;
    j.payload = "{}";
    j.created_ms = j.run_at_ms = env_.now_ms();
    return j;
  }

  TempDir dir_;
  FakeEnv env_;
  std::shared_ptr<Client> client_;
};

}  // namespace asyncmq::testing

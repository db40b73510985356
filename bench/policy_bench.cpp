// Micro-benchmarks of the policy check: the cost added to each backend call
// of a Client that carries a principal. A realistic policy (a dozen grants,
// globs, a claim grant) and a file-backed policy (whose recheck interval
// has passed, so a check also stats the file) are measured.
//
// Compare with end-to-end jobs/s from `asyncmq bench` (each job costs about
// four checks: add, claim, heartbeat, finish; claim and finish are batched
// so fewer in practice).
#include <asyncmq/backend.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>

#include <boost/json.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace {

std::string policy_text() {
  std::string t;
  for (int i = 0; i < 10; ++i)
    t += "[[grant]]\nprincipal = \"apikey:svc-" + std::to_string(i) +
         "\"\nroles = [\"producer\", \"viewer\"]\nqueues = [\"team" + std::to_string(i) + ".*\"]\n";
  t += "[[grant]]\nclaims = { groups = \"ops\" }\nroles = [\"operator\"]\nqueues = [\"*\"]\n";
  t += "[[grant]]\nprincipal = \"apikey:worker-*\"\nroles = [\"worker\"]\nqueues = [\"emails\", \"billing.*\"]\n";
  return t;
}

asyncmq::Principal worker() {
  asyncmq::Principal p;
  p.kind = "apikey";
  p.name = "worker-7";
  return p;
}

void BM_PolicyCheckAllowed(benchmark::State& state) {
  auto policy = asyncmq::Policy::parse(policy_text(), "bench");
  auto who = worker();
  for (auto _ : state) policy->check(who, asyncmq::Action::claim, "billing.invoices");
}
BENCHMARK(BM_PolicyCheckAllowed);

void BM_PolicyAllowedDenied(benchmark::State& state) {
  // allowed() without the denial side effects: the full scan of grants.
  auto policy = asyncmq::Policy::parse(policy_text(), "bench");
  auto who = worker();
  for (auto _ : state) benchmark::DoNotOptimize(policy->allowed(who, asyncmq::Action::add, "billing.invoices"));
}
BENCHMARK(BM_PolicyAllowedDenied);

void BM_PolicyCheckFileRecheckEveryCall(benchmark::State& state) {
  std::string path = "/tmp/asyncmq-policy-bench.toml";
  std::ofstream(path) << policy_text();
  asyncmq::PolicyOptions o;
  o.recheck_ms = 0;  // worst case: stat the file on every check
  auto policy = asyncmq::Policy::load_file(path, asyncmq::Env::system(), o);
  auto who = worker();
  for (auto _ : state) policy->check(who, asyncmq::Action::claim, "billing.invoices");
  std::remove(path.c_str());
}
BENCHMARK(BM_PolicyCheckFileRecheckEveryCall);

// The decorator's cost per job on the worker's path: enqueue a batch, claim
// it, finish it, through a Client on memory:// with and without a
// principal attached (arg 1 / 0). The difference per job, against the
// per-job time of `asyncmq bench` on sqlite://, is the policy overhead.
void BM_ClaimFinishBatch(benchmark::State& state) {
  const bool policed = state.range(0) != 0;
  constexpr int kBatch = 32;
  auto backend = asyncmq::open_backend("memory://", asyncmq::Env::system());
  asyncmq::ClientOptions o;
  if (policed) {
    o.principal = std::make_shared<asyncmq::Principal>(worker());
    // The worker also produces here, so it needs add.
    o.policy = asyncmq::Policy::parse(policy_text() +
                                          "[[grant]]\nprincipal = \"apikey:worker-7\"\nroles = "
                                          "[\"producer\"]\nqueues = [\"emails\"]\n",
                                      "bench");
  }
  auto client = std::make_shared<asyncmq::Client>(backend, asyncmq::Env::system(), o);
  asyncmq::Queue q(client, "emails");
  std::vector<asyncmq::NewJob> jobs(kBatch);
  for (auto& j : jobs) {
    j.task = "t";
    j.payload = boost::json::object{{"d", "xxxxxxxxxxxxxxxx"}};
  }
  for (auto _ : state) {
    asyncmq::sync_wait(q.add_bulk(jobs));
    asyncmq::ClaimRequest req;
    req.queue = "emails";
    req.worker_id = "w";
    req.max = kBatch;
    req.now_ms = asyncmq::Env::system().now_ms();
    auto claimed = asyncmq::sync_wait(client->backend().claim(req));
    std::vector<asyncmq::Outcome> outcomes;
    for (const auto& j : claimed) {
      asyncmq::Outcome out;
      out.id = j.id;
      out.token = j.lease.token;
      out.result = "{}";
      out.now_ms = req.now_ms;
      outcomes.push_back(std::move(out));
    }
    asyncmq::sync_wait(client->backend().finish(std::move(outcomes)));
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_ClaimFinishBatch)->Arg(0)->Arg(1);

}  // namespace

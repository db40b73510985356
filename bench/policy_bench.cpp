// Micro-benchmarks of the policy check: the cost added to each backend call
// of a Client that carries a principal. A realistic policy (a dozen grants,
// globs, a claim grant) and a file-backed policy (whose recheck interval
// has passed, so a check also stats the file) are measured.
//
// Compare with end-to-end jobs/s from `asyncmq bench` (each job costs about
// four checks: add, claim, heartbeat, finish; claim and finish are batched
// so fewer in practice).
#include <asyncmq/env.hpp>
#include <asyncmq/identity.hpp>

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

}  // namespace

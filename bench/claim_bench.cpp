// The backend's hot path on memory://: enqueue a batch, claim it in one
// call, finish it in one call. Measures the Backend contract's overhead
// without I/O: ordering, leases, fencing checks.
#include <asyncmq/backend.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/job.hpp>
#include <asyncmq/sync.hpp>

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace {

boost::asio::awaitable<std::size_t> cycle(asyncmq::Backend& backend, asyncmq::Env& env,
                                          std::size_t n, const std::string& payload) {
  std::vector<asyncmq::Job> batch;
  batch.reserve(n);
  std::int64_t now = env.now_ms();
  for (std::size_t i = 0; i < n; ++i) {
    asyncmq::Job j;
    j.id = asyncmq::JobId::generate(env);
    j.queue = "bench";
    j.task = "noop";
    j.payload = payload;
    j.created_ms = now;
    j.run_at_ms = now;
    batch.push_back(std::move(j));
  }
  co_await backend.enqueue(std::move(batch));
  asyncmq::ClaimRequest req{"bench", "bench-worker", n, 30'000, now};
  auto claimed = co_await backend.claim(req);
  std::vector<asyncmq::Outcome> outcomes;
  outcomes.reserve(claimed.size());
  for (auto& j : claimed) {
    asyncmq::Outcome o;
    o.id = j.id;
    o.token = j.lease.token;
    o.kind = asyncmq::Outcome::Kind::completed;
    o.result = "null";
    o.now_ms = now;
    outcomes.push_back(std::move(o));
  }
  auto applied = co_await backend.finish(std::move(outcomes));
  co_return applied.size();
}

void BM_MemoryEnqueueClaimFinish(benchmark::State& state) {
  asyncmq::Env& env = asyncmq::Env::system();
  auto backend = asyncmq::open_backend("memory://", env);
  std::size_t n = static_cast<std::size_t>(state.range(0));
  std::string payload(64, 'x');
  for (auto _ : state) {
    std::size_t done = asyncmq::sync_wait(cycle(*backend, env, n, payload));
    if (done != n) state.SkipWithError("claim returned fewer jobs than enqueued");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_MemoryEnqueueClaimFinish)->Arg(32);

}  // namespace

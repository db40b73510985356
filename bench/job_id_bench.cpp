// JobId::generate: taken once per job on the enqueue path.
#include <asyncmq/env.hpp>
#include <asyncmq/job.hpp>

#include <benchmark/benchmark.h>

namespace {

void BM_JobIdGenerate(benchmark::State& state) {
  asyncmq::Env& env = asyncmq::Env::system();
  for (auto _ : state) {
    auto id = asyncmq::JobId::generate(env);
    benchmark::DoNotOptimize(id);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_JobIdGenerate);
// Contention on the per-process counter.
BENCHMARK(BM_JobIdGenerate)->Threads(2);

void BM_JobIdFormatParse(benchmark::State& state) {
  auto id = asyncmq::JobId::generate(asyncmq::Env::system());
  for (auto _ : state) {
    auto back = asyncmq::JobId::parse(id.str());
    benchmark::DoNotOptimize(back);
  }
}
BENCHMARK(BM_JobIdFormatParse);

}  // namespace

// CronSchedule::next_after: taken once per repeatable per scheduler tick, and
// in loops when listing upcoming fire times.
#include <asyncmq/cron.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

const char* const kExpressions[] = {
    "*/5 * * * *",        // 0: frequent
    "0 9 * * 1-5",        // 1: weekdays
    "0 0 1 */3 *",        // 2: quarterly
    "0 0 29 2 1",         // 3: Feb 29 or a Monday in February (Vixie OR)
    "*/10 * * * * *",     // 4: six fields
    "0 0 29 2 *",         // 5: leap days only: a long jump
};

// Starts spread over 2024 so that caches and branch predictors see a mix.
void run(benchmark::State& state, const char* zone) {
  const auto schedule = asyncmq::CronSchedule::parse(kExpressions[state.range(0)], zone);
  constexpr std::int64_t kStart = 1'704'067'200'000;  // 2024-01-01T00:00:00Z
  constexpr std::int64_t kStride = 7'919'993;          // ~2.2 h, co-prime with minutes
  std::int64_t t = kStart;
  for (auto _ : state) {
    benchmark::DoNotOptimize(schedule.next_after(t));
    t += kStride;
    if (t > kStart + 366LL * 86'400'000) t = kStart;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_CronNextAfterUtc(benchmark::State& state) { run(state, "UTC"); }
BENCHMARK(BM_CronNextAfterUtc)->DenseRange(0, 5);

void BM_CronNextAfterNewYork(benchmark::State& state) { run(state, "America/New_York"); }
BENCHMARK(BM_CronNextAfterNewYork)->DenseRange(0, 5);

void BM_CronParse(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(asyncmq::CronSchedule::parse("0,30 9-17 * JAN-NOV MON-FRI", "UTC"));
}
BENCHMARK(BM_CronParse);

}  // namespace

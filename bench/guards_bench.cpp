// The cost of the payload guards (issue 5): the single-pass checker alone,
// a second full parse for comparison (what the guards avoid), and the
// producer's payload path (parse, serialise, encode) with and without the
// guarded codec, plain and sealed. The ratio of interest is
// BM_AddPath/guarded over BM_AddPath/plain for the same codec.
#include <asyncmq/client.hpp>
#include <asyncmq/codec.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/job.hpp>
#include <asyncmq/security.hpp>

#include "security/crypto.hpp"

#include <benchmark/benchmark.h>
#include <boost/json.hpp>

#include <string>

namespace {

// About 1 KiB of mixed JSON: nested objects, numbers, ids, dates, free text.
std::string make_payload() {
  boost::json::object o;
  o["order_id"] = "ord-2024-000123";
  o["customer"] = {{"id", 123456789}, {"name", "Jane Roe"}, {"email", "jane@example.com"},
                   {"phone", "+44 20 7946 0958"}};
  boost::json::array items;
  for (int i = 0; i < 8; ++i)
    items.push_back({{"sku", "SKU-" + std::to_string(1000 + i)}, {"qty", i + 1},
                     {"price", 19.99 + i}, {"added", "2024-05-01T12:34:56Z"}});
  o["items"] = std::move(items);
  o["note"] = "Please leave the parcel at the back door; ring twice. Reference 2024-05-01 #77.";
  std::string s = boost::json::serialize(o);
  while (s.size() < 1024) {
    o["pad"] = std::string(1024 - s.size() + 1, 'x');
    s = boost::json::serialize(o);
  }
  return s;
}

void BM_GuardCheck(benchmark::State& state) {
  std::string text = make_payload();
  asyncmq::GuardLimits limits;
  for (auto _ : state) asyncmq::check_payload(limits, "bench", text);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_GuardCheck);

void BM_SecondParse(benchmark::State& state) {
  std::string text = make_payload();
  for (auto _ : state) {
    auto v = boost::json::parse(text);
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_SecondParse);

// range(0): 0 plain codec, 1 sealing codec; range(1): 0 unguarded, 1 guarded.
void BM_AddPath(benchmark::State& state) {
  std::string text = make_payload();
  std::shared_ptr<asyncmq::Codec> codec = asyncmq::make_plain_codec();
  if (state.range(0) == 1) {
    auto ring = std::make_shared<asyncmq::Keyring>();
    ring->add("k1", asyncmq::KeyState::primary,
              asyncmq::Secret(asyncmq::security::random_bytes(32)));
    codec = asyncmq::make_sealing_codec(ring);
  }
  if (state.range(1) == 1) codec = asyncmq::make_guarded_codec(codec);
  asyncmq::ClientOptions options;
  asyncmq::JobId id = asyncmq::JobId::generate(asyncmq::Env::system());
  for (auto _ : state) {
    auto v = asyncmq::parse_payload(text, options);
    std::string stored =
        codec->encode({"bench", id, asyncmq::Field::payload}, boost::json::serialize(v));
    benchmark::DoNotOptimize(stored);
  }
  state.SetLabel(std::string(state.range(0) ? "sealed" : "plain") +
                 (state.range(1) ? "+guards" : ""));
}
BENCHMARK(BM_AddPath)->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({1, 1});

}  // namespace

// Micro-benchmarks of the payload path a job takes on its way to a backend:
// parse the producer's JSON text (with the input limits), serialise it,
// and pass it through the codec seam (plain codec: encode and decode).
#include <asyncmq/client.hpp>
#include <asyncmq/codec.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/job.hpp>

#include <benchmark/benchmark.h>
#include <boost/json.hpp>

#include <string>

namespace {

// A realistic JSON object of about `bytes` bytes.
std::string make_payload(std::size_t bytes) {
  boost::json::object o{{"user_id", 123456}, {"email", "someone@example.com"}, {"retry", false}};
  std::string base = boost::json::serialize(o);
  std::size_t framing = base.size() + std::string(R"(,"note":"")").size();
  o["note"] = std::string(bytes > framing ? bytes - framing : 0, 'n');
  return boost::json::serialize(o);
}

void BM_ParsePayload(benchmark::State& state) {
  std::string text = make_payload(static_cast<std::size_t>(state.range(0)));
  asyncmq::ClientOptions options;
  for (auto _ : state) {
    auto v = asyncmq::parse_payload(text, options);
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParsePayload)->Arg(64)->Arg(1024);

void BM_Serialize(benchmark::State& state) {
  auto value = boost::json::parse(make_payload(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    auto s = boost::json::serialize(value);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_Serialize)->Arg(64)->Arg(1024);

void BM_PlainCodecEncode(benchmark::State& state) {
  std::string text = make_payload(static_cast<std::size_t>(state.range(0)));
  auto codec = asyncmq::make_plain_codec();
  asyncmq::JobId id = asyncmq::JobId::generate(asyncmq::Env::system());
  for (auto _ : state) {
    auto s = codec->encode({"bench", id, asyncmq::Field::payload}, text);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_PlainCodecEncode)->Arg(64)->Arg(1024);

void BM_PlainCodecDecode(benchmark::State& state) {
  auto codec = asyncmq::make_plain_codec();
  asyncmq::JobId id = asyncmq::JobId::generate(asyncmq::Env::system());
  std::string stored = codec->encode({"bench", id, asyncmq::Field::payload},
                                     make_payload(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    auto s = codec->decode({"bench", id, asyncmq::Field::payload}, stored);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_PlainCodecDecode)->Arg(64)->Arg(1024);

// The whole producer-to-handler payload path: parse, serialise, encode,
// decode, parse again (what the worker hands the handler).
void BM_PayloadRoundTrip(benchmark::State& state) {
  std::string text = make_payload(static_cast<std::size_t>(state.range(0)));
  asyncmq::ClientOptions options;
  auto codec = asyncmq::make_plain_codec();
  asyncmq::JobId id = asyncmq::JobId::generate(asyncmq::Env::system());
  for (auto _ : state) {
    auto v = asyncmq::parse_payload(text, options);
    std::string stored = codec->encode({"bench", id, asyncmq::Field::payload}, boost::json::serialize(v));
    auto back = boost::json::parse(codec->decode({"bench", id, asyncmq::Field::payload}, stored));
    benchmark::DoNotOptimize(back);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_PayloadRoundTrip)->Arg(64)->Arg(1024);

}  // namespace

// Micro-benchmarks of the security layer's per-job costs: the CSPRNG draw
// per nonce, AES-256-GCM per field (a fresh context per message versus a
// key prepared once, GcmKey), the sealing codec's encode and decode, and
// HMAC-SHA-256 per audit record (one-shot versus a keyed HmacSha256).
//
// Compare with end-to-end jobs/s from `asyncmq bench --seal` and
// `asyncmq --audit-dir DIR bench`: a sealed job costs one encode (payload),
// one decode (payload) and one encode (result); an audited job writes about
// three records (added, claimed, completed).
#include <asyncmq/audit.hpp>
#include <asyncmq/codec.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/job.hpp>
#include <asyncmq/security.hpp>

#include "security/crypto.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace sec = asyncmq::security;

void BM_RandomBytes12(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sec::random_bytes(sec::kGcmNonceBytes));
}
BENCHMARK(BM_RandomBytes12);

void BM_RandomGcmNonce(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sec::random_gcm_nonce());
}
BENCHMARK(BM_RandomGcmNonce);

void BM_GcmSealOneShot(benchmark::State& state) {
  const std::string key = sec::random_bytes(32), nonce = sec::random_bytes(12);
  const std::string aad(60, 'a'), plain(static_cast<std::size_t>(state.range(0)), 'p');
  for (auto _ : state) benchmark::DoNotOptimize(sec::aes256_gcm_seal(key, nonce, aad, plain));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain.size()));
}
BENCHMARK(BM_GcmSealOneShot)->Arg(4)->Arg(1024);

void BM_GcmKeySeal(benchmark::State& state) {
  const sec::GcmKey key(sec::random_bytes(32));
  const std::string nonce = sec::random_bytes(12);
  const std::string aad(60, 'a'), plain(static_cast<std::size_t>(state.range(0)), 'p');
  for (auto _ : state) {
    std::string out;
    key.seal(nonce, aad, plain, out);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain.size()));
}
BENCHMARK(BM_GcmKeySeal)->Arg(4)->Arg(1024);

void BM_GcmKeyOpen(benchmark::State& state) {
  const sec::GcmKey key(sec::random_bytes(32));
  const std::string nonce = sec::random_bytes(12);
  const std::string aad(60, 'a'), plain(static_cast<std::size_t>(state.range(0)), 'p');
  std::string sealed;
  key.seal(nonce, aad, plain, sealed);
  const std::string_view ct = std::string_view(sealed).substr(0, plain.size());
  const std::string_view tag = std::string_view(sealed).substr(plain.size());
  for (auto _ : state) {
    std::string out;
    if (!key.open(nonce, aad, ct, tag, out)) state.SkipWithError("did not open");
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain.size()));
}
BENCHMARK(BM_GcmKeyOpen)->Arg(4)->Arg(1024);

std::shared_ptr<asyncmq::Codec> sealing_codec() {
  auto keys = std::make_shared<asyncmq::Keyring>();
  keys->add("bench", asyncmq::KeyState::primary, asyncmq::Secret(sec::random_bytes(32)));
  return asyncmq::make_sealing_codec(keys);
}

void BM_SealingCodecEncode(benchmark::State& state) {
  auto codec = sealing_codec();
  const std::string plain(static_cast<std::size_t>(state.range(0)), 'p');
  asyncmq::JobId id = asyncmq::JobId::generate(asyncmq::Env::system());
  for (auto _ : state)
    benchmark::DoNotOptimize(codec->encode({"bench", id, asyncmq::Field::payload}, plain));
}
BENCHMARK(BM_SealingCodecEncode)->Arg(4)->Arg(1024);

void BM_SealingCodecDecode(benchmark::State& state) {
  auto codec = sealing_codec();
  asyncmq::JobId id = asyncmq::JobId::generate(asyncmq::Env::system());
  const std::string stored = codec->encode({"bench", id, asyncmq::Field::payload},
                                           std::string(static_cast<std::size_t>(state.range(0)), 'p'));
  for (auto _ : state)
    benchmark::DoNotOptimize(codec->decode({"bench", id, asyncmq::Field::payload}, stored));
}
BENCHMARK(BM_SealingCodecDecode)->Arg(4)->Arg(1024);

// About the size of an audit record's canonical encoding.
const std::string kRecord(200, 'r');

void BM_HmacSha256OneShot(benchmark::State& state) {
  const std::string key = sec::random_bytes(32);
  for (auto _ : state) benchmark::DoNotOptimize(sec::hmac_sha256(key, kRecord));
}
BENCHMARK(BM_HmacSha256OneShot);

void BM_HmacSha256Keyed(benchmark::State& state) {
  sec::HmacSha256 mac(sec::random_bytes(32));
  for (auto _ : state) benchmark::DoNotOptimize(mac.mac(kRecord));
}
BENCHMARK(BM_HmacSha256Keyed);

// AuditLog::append of a batch of range(0) events (an auditing Backend
// appends one batch per enqueue, claim and finish call), with the fsync
// policy range(1): 0 never, 1 group, 2 always. A fresh chain in a
// temporary directory under $TMPDIR (default /tmp): the disk there decides
// what `always` costs.
void BM_AuditAppend(benchmark::State& state) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir_template = std::string(tmp && *tmp ? tmp : "/tmp") + "/asyncmq-audit-bench-XXXXXX";
  if (!::mkdtemp(dir_template.data())) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  const std::filesystem::path dir = dir_template;
  asyncmq::audit_keygen(dir / "writer.key", dir / "verify.key");
  asyncmq::AuditOptions o = asyncmq::AuditOptions::in_dir(dir);
  o.fsync = state.range(1) == 0   ? asyncmq::AuditFsync::never
            : state.range(1) == 1 ? asyncmq::AuditFsync::group
                                  : asyncmq::AuditFsync::always;
  {
    auto log = asyncmq::AuditLog::open(o, asyncmq::Env::system());
    std::vector<asyncmq::AuditEvent> batch;
    for (std::int64_t i = 0; i < state.range(0); ++i)
      batch.emplace_back("completed", "worker:host-1234-abcd", "01J9Z3Q4M8X6W2V5T7R9P1N3K5",
                         "emails", "", "");
    for (auto _ : state) log->append(batch);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
    log->close();
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AuditAppend)
    ->ArgNames({"batch", "fsync"})
    ->Args({1, 0})->Args({32, 0})
    ->Args({1, 1})->Args({32, 1})
    ->Args({1, 2})->Args({32, 2})
    ->UseRealTime();

}  // namespace

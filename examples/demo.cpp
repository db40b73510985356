// asyncmq demo: a worker program with realistic tasks, end to end in one
// process.
//
//   asyncmq_demo [BACKEND_URI]        (default sqlite:///./demo.db)
//
// It enqueues a few hundred jobs into three queues, runs a Worker with
// concurrency 8 until every job is completed or dead, shows a live progress
// line on stderr and prints a summary. The tasks:
//   thumbnail            CPU: box-filter a generated 320x240 RGB image to 64x48
//   hash                 CPU: SHA-256 (OpenSSL EVP) of generated data
//   send-email           I/O: a coroutine that waits like an SMTP round trip
//   flaky                fails its first attempt(s), succeeds on a retry
//   charge-expired-card  always fails; after its retry it ends dead
// Afterwards the jobs stay in the store for the CLI, e.g.
//   asyncmq --backend sqlite:///./demo.db job list billing --state dead
#include <asyncmq/asyncmq.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <openssl/evp.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using asyncmq::TaskContext;
namespace json = boost::json;

// A small deterministic generator, so each job's input depends on its seed.
struct XorShift {
  std::uint64_t s;
  explicit XorShift(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ULL + 1) {}
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

std::int64_t int_field(const TaskContext& ctx, const char* key, std::int64_t fallback) {
  if (const auto* o = ctx.payload().if_object())
    if (const auto* v = o->if_contains(key); v && v->is_int64()) return v->as_int64();
  return fallback;
}

// CPU work: render a gradient-and-noise RGB image and downscale it with a box
// filter, as a thumbnail service would.
json::value thumbnail(TaskContext& ctx) {
  const int w = 320, h = 240, tw = 64, th = 48;
  XorShift rng(static_cast<std::uint64_t>(int_field(ctx, "seed", 1)));
  std::vector<std::uint8_t> img(static_cast<std::size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      std::size_t i = (static_cast<std::size_t>(y) * w + x) * 3;
      std::uint8_t noise = static_cast<std::uint8_t>(rng.next() & 0x1f);
      img[i] = static_cast<std::uint8_t>(x * 255 / w) ^ noise;
      img[i + 1] = static_cast<std::uint8_t>(y * 255 / h) ^ noise;
      img[i + 2] = static_cast<std::uint8_t>((x + y) & 0xff);
    }
  const int fx = w / tw, fy = h / th;
  std::uint64_t checksum = 0;
  for (int ty = 0; ty < th; ++ty)
    for (int tx = 0; tx < tw; ++tx)
      for (int c = 0; c < 3; ++c) {
        unsigned sum = 0;
        for (int dy = 0; dy < fy; ++dy)
          for (int dx = 0; dx < fx; ++dx)
            sum += img[((static_cast<std::size_t>(ty) * fy + dy) * w + tx * fx + dx) * 3 + c];
        checksum = checksum * 31 + sum / static_cast<unsigned>(fx * fy);
      }
  return {{"width", tw}, {"height", th}, {"checksum", checksum}};
}

// CPU work: SHA-256 of generated data through OpenSSL's EVP interface.
json::value hash(TaskContext& ctx) {
  std::int64_t n = int_field(ctx, "bytes", 1 << 18);
  if (n < 0 || n > (64 << 20)) throw asyncmq::UnrecoverableError("hash: bytes must be in [0, 64 MiB]");
  XorShift rng(static_cast<std::uint64_t>(int_field(ctx, "seed", 1)));
  std::vector<std::uint8_t> data(static_cast<std::size_t>(n));
  for (auto& b : data) b = static_cast<std::uint8_t>(rng.next());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(md.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(md.get(), digest, &len) != 1) {
    throw std::runtime_error("hash: OpenSSL SHA-256 failed");
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return {{"sha256", out}, {"bytes", n}};
}

// I/O work: waits like a call to a mail server, without blocking the loop.
boost::asio::awaitable<json::value> send_email(TaskContext& ctx) {
  std::int64_t ms = 5 + static_cast<std::int64_t>(ctx.env().random_u64() % 20);
  co_await ctx.env().sleep_for(ms);
  if (ctx.cancelled()) throw std::runtime_error("send-email: cancelled");
  co_return json::value{{"accepted", true}, {"smtp_ms", ms}};
}

// Fails its first `fail_first` attempts (an upstream hiccup), then succeeds.
json::value flaky(TaskContext& ctx) {
  std::int64_t fail_first = int_field(ctx, "fail_first", 1);
  if (ctx.attempt() <= fail_first) {
    throw std::runtime_error("upstream returned 503 on attempt " + std::to_string(ctx.attempt()));
  }
  return {{"ok", true}, {"attempt", ctx.attempt()}};
}

// Always fails: the card on file has expired. Ends in the dead-letter state.
json::value charge_expired_card(TaskContext&) {
  throw std::runtime_error("card declined: expired");
}

struct Plan {
  std::string queue;
  std::vector<asyncmq::NewJob> jobs;
};

std::vector<Plan> make_plan() {
  std::vector<Plan> plans(3);
  plans[0].queue = "media";
  plans[1].queue = "email";
  plans[2].queue = "billing";
  asyncmq::JobOptions plain;
  for (int i = 0; i < 120; ++i) {
    plans[0].jobs.push_back({"thumbnail", {{"seed", i}, {"source", "upload-" + std::to_string(i) + ".png"}}, plain});
    plans[0].jobs.push_back({"hash", {{"seed", i}, {"bytes", 1 << 16}}, plain});
  }
  asyncmq::JobOptions email;
  email.attempts = 3;
  email.backoff = {asyncmq::Backoff::Kind::exponential, 50, 1000, 0.2};
  for (int i = 0; i < 100; ++i) {
    asyncmq::JobOptions o = email;
    o.subject = "user-" + std::to_string(i);  // erasable by subject
    plans[1].jobs.push_back({"send-email", {{"template", "welcome"}, {"user", i}}, o});
  }
  asyncmq::JobOptions retrying;
  retrying.attempts = 3;
  retrying.backoff = {asyncmq::Backoff::Kind::fixed, 50, 1000, 0.0};
  for (int i = 0; i < 40; ++i)
    plans[2].jobs.push_back({"flaky", {{"fail_first", 1 + i % 2}, {"order", i}}, retrying});
  asyncmq::JobOptions doomed;
  doomed.attempts = 2;
  doomed.backoff = {asyncmq::Backoff::Kind::fixed, 50, 1000, 0.0};
  for (int i = 0; i < 20; ++i)
    plans[2].jobs.push_back({"charge-expired-card", {{"invoice", 1000 + i}, {"amount_cents", 1999}}, doomed});
  return plans;
}

struct Totals {
  std::uint64_t completed = 0, dead = 0;
};

boost::asio::awaitable<Totals> count(asyncmq::Client& client, const std::vector<Plan>& plans) {
  Totals t;
  for (const auto& p : plans) {
    auto c = co_await client.backend().counts(p.queue);
    t.completed += c[static_cast<int>(asyncmq::JobState::completed)];
    t.dead += c[static_cast<int>(asyncmq::JobState::dead)];
  }
  co_return t;
}

int run(const std::string& uri) {
  asyncmq::Env& env = asyncmq::Env::system();
  auto client = asyncmq::Client::open(uri, env);

  auto tasks = std::make_shared<asyncmq::TaskRegistry>();
  tasks->add("thumbnail", thumbnail);
  tasks->add("hash", hash);
  tasks->add("send-email", send_email);
  tasks->add("flaky", flaky);
  tasks->add("charge-expired-card", charge_expired_card);

  std::vector<Plan> plans = make_plan();
  std::uint64_t total = 0;
  for (const auto& p : plans) total += p.jobs.size();

  // The store may hold jobs of an earlier run: count only this run's.
  Totals base = asyncmq::sync_wait(count(*client, plans));
  std::int64_t t0 = env.monotonic_ns();
  for (auto& p : plans) {
    asyncmq::Queue q(client, p.queue);
    asyncmq::sync_wait(q.add_bulk(std::move(p.jobs)));
  }
  double enqueue_s = static_cast<double>(env.monotonic_ns() - t0) / 1e9;
  std::cerr << "asyncmq demo: " << total << " jobs added to " << client->backend().describe()
            << " in " << static_cast<int>(enqueue_s * 1000) << " ms (queues media, email, billing)\n";

  asyncmq::WorkerOptions wo;
  wo.queues = {"billing", "email", "media"};
  wo.concurrency = 8;
  wo.maintenance_ms = 100;
  wo.shutdown_grace_ms = 2000;
  auto worker = std::make_shared<asyncmq::Worker>(client, tasks, wo);

  boost::asio::io_context io(1);
  std::exception_ptr run_error, watch_error;
  bool run_done = false;
  Totals last{};
  t0 = env.monotonic_ns();
  boost::asio::co_spawn(io, worker->run(), [&](std::exception_ptr e) {
    run_error = e;
    run_done = true;
  });
  auto watch = [&]() -> boost::asio::awaitable<void> {
    std::uint64_t seen = 0;
    std::int64_t last_change = env.monotonic_ns();
    for (;;) {
      co_await env.sleep_for(100);
      Totals now = co_await count(*client, plans);
      last = {now.completed - base.completed, now.dead - base.dead};
      std::uint64_t done = last.completed + last.dead;
      std::int64_t t = env.monotonic_ns();
      double secs = static_cast<double>(t - t0) / 1e9;
      auto s = worker->stats();
      char line[160];
      std::snprintf(line, sizeof line,
                    "\r  processed %4llu/%llu   retried %3llu   dead %3llu   %6.0f jobs/s ",
                    static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                    static_cast<unsigned long long>(s.retried),
                    static_cast<unsigned long long>(last.dead),
                    secs > 0 ? static_cast<double>(done) / secs : 0.0);
      std::cerr << line << std::flush;
      if (done >= total) break;
      if (run_done) throw std::runtime_error("the worker stopped before every job was processed");
      if (done != seen) {
        seen = done;
        last_change = t;
      } else if (t - last_change > 20'000'000'000LL) {
        throw std::runtime_error("no job finished for 20 s");
      }
    }
    std::cerr << '\n';
    worker->stop();
  };
  boost::asio::co_spawn(io, watch(), [&](std::exception_ptr e) {
    watch_error = e;
    if (e) worker->stop();
  });
  io.run();
  double secs = static_cast<double>(env.monotonic_ns() - t0) / 1e9;
  if (watch_error) std::rethrow_exception(watch_error);
  if (run_error) std::rethrow_exception(run_error);

  auto s = worker->stats();
  std::uint64_t processed = last.completed + last.dead;
  std::printf(
      "\nasyncmq demo summary\n"
      "  processed  %llu jobs\n"
      "  completed  %llu\n"
      "  retried    %llu attempts (failed, then ran again after backoff)\n"
      "  dead       %llu (dead-lettered: see 'asyncmq --backend %s job list billing --state dead')\n"
      "  elapsed    %.2f s\n"
      "  throughput %.0f jobs/s (worker concurrency %d)\n",
      static_cast<unsigned long long>(processed), static_cast<unsigned long long>(last.completed),
      static_cast<unsigned long long>(s.retried), static_cast<unsigned long long>(last.dead),
      client->backend().describe().c_str(), secs,
      secs > 0 ? static_cast<double>(processed) / secs : 0.0, wo.concurrency);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help"))) {
    std::cerr << "usage: asyncmq_demo [BACKEND_URI]   (default sqlite:///./demo.db)\n";
    return argc > 2 ? 2 : 0;
  }
  std::string uri = argc == 2 ? argv[1] : "sqlite:///./demo.db";
  try {
    return run(uri);
  } catch (const asyncmq::Error& e) {
    std::cerr << "\nasyncmq_demo: error: " << e.what() << '\n';
    return asyncmq::is_invalid_input(e.code()) ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "\nasyncmq_demo: error: " << e.what() << '\n';
    return 1;
  }
}

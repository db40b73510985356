// SQLite-specific behaviour of the sqlite:// backend: persistence across
// reopen, several connections (as several processes) on one file, refusing
// foreign files, group commit, sync=full. The Backend contract itself is
// covered by tests/conformance/, which runs against SQLite too.
#include <asyncmq/backend.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/sync.hpp>

#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <thread>

namespace asyncmq::testing {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `sql` on the store at `path` directly, as another program could.
void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
}

// The first column of the first row of `sql` on the store at `path`.
std::int64_t query_int(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_stmt* st = nullptr;
  std::int64_t v = -1;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

class SqliteBackendTest : public ::testing::Test {
 protected:
  std::string uri(const std::string& name = "store.db", const std::string& query = "") {
    return "sqlite://" + dir_.file(name) + query;
  }
  std::shared_ptr<Backend> open(const std::string& name = "store.db",
                                const std::string& query = "") {
    return open_backend(uri(name, query), env_);
  }

  Job make_job(const std::string& queue = "q") {
    Job j;
    j.id = JobId::generate(env_);
    j.queue = queue;
    j.task = "task";
    j.payload = "{}";
    j.created_ms = j.run_at_ms = env_.now_ms();
    return j;
  }

  StateCounts counts(Backend& b, const std::string& queue = "q") {
    return sync_wait(b.counts(queue));
  }

  TempDir dir_;
  FakeEnv env_;
};

TEST_F(SqliteBackendTest, EveryFieldRoundTripsAndPersistsAcrossReopen) {
  Job j = make_job();
  j.options.priority = -7;
  j.options.delay_ms = 1234;
  j.options.attempts = 5;
  j.options.backoff = Backoff{Backoff::Kind::fixed, 250, 9000, 0.5};
  j.options.timeout_ms = 777;
  j.options.lifo = true;
  j.options.idempotency_key = std::string("key\0with nul", 12);
  j.options.subject = "blind-index";
  j.payload = std::string("\x00\xff\x01payload", 10);
  j.state = JobState::delayed;
  j.run_at_ms = env_.now_ms() + 1234;
  Job waiting = make_job();
  {
    auto b = open();
    sync_wait(b->enqueue({j, waiting}));
    auto claimed = sync_wait(b->claim({"q", "w1", 1, 5000, env_.now_ms()}));
    ASSERT_EQ(claimed.size(), 1u);
    EXPECT_EQ(claimed[0].id, waiting.id);
  }
  auto b = open();
  auto got = sync_wait(b->get(j.id));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->queue, "q");
  EXPECT_EQ(got->task, "task");
  EXPECT_EQ(got->state, JobState::delayed);
  EXPECT_EQ(got->options.priority, -7);
  EXPECT_EQ(got->options.delay_ms, 1234);
  EXPECT_EQ(got->options.attempts, 5);
  EXPECT_EQ(got->options.backoff.kind, Backoff::Kind::fixed);
  EXPECT_EQ(got->options.backoff.delay_ms, 250);
  EXPECT_EQ(got->options.backoff.max_delay_ms, 9000);
  EXPECT_DOUBLE_EQ(got->options.backoff.jitter, 0.5);
  EXPECT_EQ(got->options.timeout_ms, 777);
  EXPECT_TRUE(got->options.lifo);
  EXPECT_EQ(got->options.idempotency_key, j.options.idempotency_key);
  EXPECT_EQ(got->options.subject, "blind-index");
  EXPECT_EQ(got->payload, j.payload);
  EXPECT_EQ(got->created_ms, j.created_ms);
  EXPECT_EQ(got->run_at_ms, j.run_at_ms);

  auto active = sync_wait(b->get(waiting.id));
  ASSERT_TRUE(active);
  EXPECT_EQ(active->state, JobState::active);
  EXPECT_EQ(active->attempts_made, 1);
  EXPECT_EQ(active->lease.owner, "w1");
  EXPECT_EQ(active->lease.expires_ms, env_.now_ms() + 5000);
  EXPECT_NE(active->lease.token, 0u);

  auto c = counts(*b);
  EXPECT_EQ(c[static_cast<int>(JobState::delayed)], 1u);
  EXPECT_EQ(c[static_cast<int>(JobState::active)], 1u);
  EXPECT_EQ(sync_wait(b->queues()), std::vector<std::string>{"q"});
  EXPECT_EQ(b->describe(), uri());
}

TEST_F(SqliteBackendTest, LeaseTokensStayFreshAcrossReopen) {
  Job j = make_job();
  std::uint64_t first;
  {
    auto b = open();
    sync_wait(b->enqueue({j}));
    first = sync_wait(b->claim({"q", "w", 1, 10, env_.now_ms()}))[0].lease.token;
  }
  auto b = open();
  env_.advance(100);
  auto r = sync_wait(b->reclaim_expired(env_.now_ms(), 5));
  ASSERT_EQ(r.requeued.size(), 1u);
  auto again = sync_wait(b->claim({"q", "w", 1, 10, env_.now_ms()}));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_NE(again[0].lease.token, first);
  // The stale worker is fenced off; the current one is not.
  Outcome stale{j.id, first, Outcome::Kind::completed, "r", "", 0, env_.now_ms()};
  Outcome fresh{j.id, again[0].lease.token, Outcome::Kind::completed, "r", "", 0, env_.now_ms()};
  EXPECT_EQ(sync_wait(b->finish({stale, fresh})), (std::vector<bool>{false, true}));
  EXPECT_EQ(sync_wait(b->get(j.id))->result, "r");
}

// Two backends on one file have two connections each, exactly as two
// processes would; claiming concurrently from two threads must never hand
// one job to both.
TEST_F(SqliteBackendTest, TwoConnectionsNeverClaimTheSameJob) {
  auto a = open();
  auto b = open();
  constexpr int kJobs = 600;
  std::vector<Job> jobs;
  for (int i = 0; i < kJobs; ++i) jobs.push_back(make_job());
  sync_wait(a->enqueue(jobs));

  auto drain = [&](std::shared_ptr<Backend> be, std::string worker, std::vector<JobId>& got) {
    for (;;) {
      auto batch = sync_wait(be->claim({"q", worker, 7, 30000, env_.now_ms()}));
      if (batch.empty()) return;
      for (auto& j : batch) got.push_back(j.id);
    }
  };
  std::vector<JobId> got_a, got_b;
  std::thread ta(drain, a, "a", std::ref(got_a));
  std::thread tb(drain, b, "b", std::ref(got_b));
  ta.join();
  tb.join();
  std::set<JobId> all(got_a.begin(), got_a.end());
  for (auto& id : got_b) EXPECT_TRUE(all.insert(id).second) << "claimed twice: " << id.str();
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kJobs));
  EXPECT_EQ(counts(*b)[static_cast<int>(JobState::active)], static_cast<std::uint64_t>(kJobs));
}

TEST_F(SqliteBackendTest, RefusesAFileThatIsNotSqliteAndLeavesItAlone) {
  std::string path = dir_.file("garbage.db");
  std::string bytes;
  for (int i = 0; i < 8192; ++i) bytes.push_back(static_cast<char>((i * 37 + 11) & 0xff));
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
  }
  try {
    open("garbage.db");
    FAIL() << "opened a garbage file";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), errc::corrupt_store);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path), bytes);
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
}

TEST_F(SqliteBackendTest, RefusesAnotherApplicationsDatabase) {
  std::string path = dir_.file("other.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  std::string before = read_file(path);
  try {
    open("other.db");
    FAIL() << "opened a foreign database";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), errc::corrupt_store);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path), before);
}

// A store written by another schema version (here: an older one) is
// refused with a typed error naming the version, and left untouched.
TEST_F(SqliteBackendTest, RefusesAStoreOfAnotherSchemaVersion) {
  std::string path = dir_.file("old.db");
  {
    auto b = open("old.db");
    sync_wait(b->enqueue({make_job()}));
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=1", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  std::string before = read_file(path);
  try {
    open("old.db");
    FAIL() << "opened a store of another schema version";
  } catch (const BackendError& e) {
    EXPECT_EQ(e.kind(), errc::corrupt_store);
    EXPECT_NE(std::string(e.what()).find("schema version 1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path), before);
}

// The options packed into jobs.opts come back as they went in, at the ends
// of their ranges, negative, and with every jitter bit pattern; default
// options take two bytes.
TEST_F(SqliteBackendTest, PackedOptionsRoundTripAndDefaultsStayTiny) {
  using I64 = std::numeric_limits<std::int64_t>;
  Job odd = make_job();
  odd.options.delay_ms = -1234567890123;
  odd.options.attempts = std::numeric_limits<std::int32_t>::min();
  odd.options.backoff = Backoff{Backoff::Kind::fixed, I64::max(), I64::min(), 0.75};
  odd.options.timeout_ms = -1;
  odd.options.lifo = true;
  odd.options.idempotency_window_ms = 86'400'000;
  odd.options.ttl_ms = 315'360'000'000;  // ten years, the most Queue::add takes
  odd.on_failure = ChildFailure::wait;
  Job zeros = make_job();
  zeros.options.attempts = std::numeric_limits<std::int32_t>::max();
  zeros.options.backoff = Backoff{static_cast<Backoff::Kind>(200), 0, 0, -0.0};
  zeros.options.ttl_ms = -5;
  zeros.on_failure = ChildFailure::ignore;
  Job plain = make_job();
  {
    auto b = open();
    sync_wait(b->enqueue({odd, zeros, plain}));
  }
  auto b = open();
  auto got = sync_wait(b->get(odd.id));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->options.delay_ms, -1234567890123);
  EXPECT_EQ(got->options.attempts, std::numeric_limits<std::int32_t>::min());
  EXPECT_EQ(got->options.backoff.kind, Backoff::Kind::fixed);
  EXPECT_EQ(got->options.backoff.delay_ms, I64::max());
  EXPECT_EQ(got->options.backoff.max_delay_ms, I64::min());
  EXPECT_EQ(got->options.backoff.jitter, 0.75);
  EXPECT_EQ(got->options.timeout_ms, -1);
  EXPECT_TRUE(got->options.lifo);
  EXPECT_EQ(got->options.idempotency_window_ms, 86'400'000);
  EXPECT_EQ(got->options.ttl_ms, 315'360'000'000);
  EXPECT_EQ(got->on_failure, ChildFailure::wait);
  got = sync_wait(b->get(zeros.id));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->options.attempts, std::numeric_limits<std::int32_t>::max());
  EXPECT_EQ(static_cast<int>(got->options.backoff.kind), 200);
  EXPECT_EQ(got->options.backoff.delay_ms, 0);
  EXPECT_EQ(got->options.backoff.max_delay_ms, 0);
  EXPECT_EQ(got->options.backoff.jitter, 0.0);
  EXPECT_TRUE(std::signbit(got->options.backoff.jitter));
  EXPECT_EQ(got->options.ttl_ms, -5);
  EXPECT_EQ(got->on_failure, ChildFailure::ignore);
  got = sync_wait(b->get(plain.id));
  ASSERT_TRUE(got);
  const JobOptions d;
  EXPECT_EQ(got->options.delay_ms, d.delay_ms);
  EXPECT_EQ(got->options.attempts, d.attempts);
  EXPECT_EQ(got->options.backoff.kind, d.backoff.kind);
  EXPECT_EQ(got->options.backoff.delay_ms, d.backoff.delay_ms);
  EXPECT_EQ(got->options.backoff.max_delay_ms, d.backoff.max_delay_ms);
  EXPECT_EQ(got->options.backoff.jitter, d.backoff.jitter);
  EXPECT_EQ(got->options.timeout_ms, d.timeout_ms);
  EXPECT_FALSE(got->options.lifo);
  EXPECT_EQ(got->options.idempotency_window_ms, d.idempotency_window_ms);
  EXPECT_EQ(got->options.ttl_ms, d.ttl_ms);
  EXPECT_EQ(got->on_failure, ChildFailure::fail_parent);
  std::string hex = plain.id.str();
  hex.erase(std::remove(hex.begin(), hex.end(), '-'), hex.end());
  EXPECT_EQ(query_int(dir_.file("store.db"),
                      "SELECT length(opts) FROM jobs WHERE lower(hex(id)) = '" + hex + "'"),
            2);
}

// A job retried by hand loses its TTL (its opts are rewritten) and keeps
// every other option.
TEST_F(SqliteBackendTest, RetryRewritesTheOptionsWithoutTheTtl) {
  auto b = open();
  Job j = make_job();
  j.options.ttl_ms = 100;
  j.options.attempts = 3;
  j.options.lifo = true;
  j.options.idempotency_window_ms = 42;
  j.on_failure = ChildFailure::ignore;
  sync_wait(b->enqueue({j}));
  env_.advance(100);
  ASSERT_EQ(sync_wait(b->expire_due(env_.now_ms())), std::vector<JobId>{j.id});
  sync_wait(b->retry(j.id, env_.now_ms()));
  env_.advance(1000);
  EXPECT_TRUE(sync_wait(b->expire_due(env_.now_ms())).empty());
  auto got = sync_wait(b->get(j.id));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, JobState::waiting);
  EXPECT_EQ(got->options.ttl_ms, 0);
  EXPECT_EQ(got->options.attempts, 3);
  EXPECT_TRUE(got->options.lifo);
  EXPECT_EQ(got->options.idempotency_window_ms, 42);
  EXPECT_EQ(got->on_failure, ChildFailure::ignore);
}

// A malformed opts blob is reported as a corrupt store naming the job,
// whatever is wrong with it; nothing is decoded by guess.
TEST_F(SqliteBackendTest, AMalformedOptionsBlobIsACorruptStoreError) {
  Job j = make_job();
  {
    auto b = open();
    sync_wait(b->enqueue({j}));
  }
  const std::string path = dir_.file("store.db");
  // Version byte, mask varint, fields (see pack_opts).
  const std::pair<const char*, const char*> bad[] = {
      {"", "empty"},
      {"02", "version 2"},
      {"0180", "truncated varint"},                        // in the mask
      {"01808010", "unknown fields"},                      // mask bit 18
      {"0101", "truncated varint"},                        // delay_ms announced, missing
      {"0120000000", "truncated jitter"},                  // 3 of its 8 bytes
      {"010000", "trailing bytes"},
      {"0101ffffffffffffffffffff01", "varint over 64 bits"},  // 11 bytes
      {"01028080808010", "attempts"},                      // zigzag(2^31)
      {"0180088002", "on_failure"},                        // 256
  };
  for (const auto& [h, what] : bad) {
    exec_sql(path, std::string("UPDATE jobs SET opts = x'") + h + "'");
    auto b = open();
    try {
      sync_wait(b->get(j.id));
      ADD_FAILURE() << "decoded opts x'" << h << "'";
    } catch (const BackendError& e) {
      EXPECT_EQ(e.kind(), errc::corrupt_store) << h;
      EXPECT_NE(std::string(e.what()).find(j.id.str()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
}

// Counts are kept in a table, updated once per commit: every transition
// (enqueue, claim, finish, retry, remove, reclaim) and a rolled-back op of a
// group (duplicate id) must leave them equal to the jobs actually stored.
TEST_F(SqliteBackendTest, CountsFollowEveryTransitionAndIgnoreRolledBackOps) {
  auto b = open();
  Job a = make_job(), c = make_job(), d = make_job();
  sync_wait(b->enqueue({a, c, d}));
  EXPECT_THROW(sync_wait(b->enqueue({make_job(), a})), Conflict);
  auto st = counts(*b);
  EXPECT_EQ(st[static_cast<int>(JobState::waiting)], 3u);
  ClaimRequest r;
  r.queue = "q";
  r.max = 3;
  r.now_ms = env_.now_ms();
  r.lease_ms = 1000;
  auto claimed = sync_wait(b->claim(r));
  ASSERT_EQ(claimed.size(), 3u);
  std::vector<Outcome> outs(2);
  outs[0].id = claimed[0].id;
  outs[0].token = claimed[0].lease.token;
  outs[0].kind = Outcome::Kind::completed;
  outs[1].id = claimed[1].id;
  outs[1].token = claimed[1].lease.token + 999;  // a lost lease: not applied
  outs[1].kind = Outcome::Kind::dead;
  auto ok = sync_wait(b->finish(outs));
  EXPECT_EQ(ok, (std::vector<bool>{true, false}));
  st = counts(*b);
  EXPECT_EQ(st[static_cast<int>(JobState::active)], 2u);
  EXPECT_EQ(st[static_cast<int>(JobState::completed)], 1u);
  EXPECT_EQ(st[static_cast<int>(JobState::dead)], 0u);
  auto rec = sync_wait(b->reclaim_expired(r.now_ms + 5000, 0));
  EXPECT_EQ(rec.dead.size(), 2u);
  st = counts(*b);
  EXPECT_EQ(st[static_cast<int>(JobState::active)], 0u);
  EXPECT_EQ(st[static_cast<int>(JobState::dead)], 2u);
  sync_wait(b->retry(rec.dead[0], r.now_ms));
  sync_wait(b->remove(claimed[0].id));
  st = counts(*b);
  EXPECT_EQ(st, (StateCounts{1, 0, 0, 0, 0, 1}));
  // And across a reopen.
  b.reset();
  b = open();
  EXPECT_EQ(counts(*b), (StateCounts{1, 0, 0, 0, 0, 1}));
}

// The follow lease lives in the store: a follower in one process (here,
// another connection) makes the writer of another record, from its next
// transaction on, though that writer had found the store unfollowed before.
TEST_F(SqliteBackendTest, AFollowerOnAnotherConnectionTurnsRecordingOn) {
  auto writer = open();
  auto follower = open();
  Job before = make_job();
  sync_wait(writer->enqueue({before}));
  const std::int64_t from = sync_wait(follower->follow_events(env_.now_ms() + 60'000));
  Job after = make_job();
  sync_wait(writer->enqueue({after}));
  auto events = sync_wait(follower->read_events(from, 100)).events;
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].job, after.id);
  EXPECT_EQ(events[0].type, EventType::waiting);
}

// Promotion records a `waiting` event per job, and the events of one
// promotion share one row of the events table (as enqueue's do).
TEST_F(SqliteBackendTest, PromotedJobsShareOneEventRow) {
  auto b = open();
  sync_wait(b->follow_events(std::numeric_limits<std::int64_t>::max()));
  std::vector<Job> jobs;
  for (int i = 0; i < 3; ++i) {
    Job j = make_job();
    j.run_at_ms = j.created_ms + 1000;
    j.state = JobState::delayed;
    jobs.push_back(j);
  }
  sync_wait(b->enqueue(jobs));
  env_.advance(1000);
  EXPECT_EQ(sync_wait(b->promote_due(env_.now_ms())), 3u);
  int waiting = 0;
  for (const Event& e : sync_wait(b->read_events(0, 100)).events)
    if (e.type == EventType::waiting) ++waiting;
  EXPECT_EQ(waiting, 3);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.file("store.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), sum(length(jobs)) FROM events WHERE type = 0",
                               -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 1);   // one row...
  EXPECT_EQ(sqlite3_column_int(st, 1), 48);  // ...holding the three ids
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(SqliteBackendTest, MissingDirectoryIsNotFound) {
  std::string path = dir_.file("no/such/dir/store.db");
  try {
    open_backend("sqlite://" + path, env_);
    FAIL() << "opened a store in a missing directory";
  } catch (const NotFound& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.file("no")));
}

TEST_F(SqliteBackendTest, ADirectoryIsRefusedWithATypedError) {
  std::filesystem::create_directory(dir_.file("adir"));
  EXPECT_THROW(open("adir"), Error);
}

// Many coroutines on one io_context each enqueue one job at once: the
// writer groups them into few commits, and every one of them succeeds.
TEST_F(SqliteBackendTest, ConcurrentSingleEnqueuesFromCoroutinesAllSucceed) {
  auto b = open();
  boost::asio::io_context io;
  constexpr int kCoroutines = 300;
  int done = 0;
  std::vector<std::exception_ptr> errors;
  for (int i = 0; i < kCoroutines; ++i) {
    boost::asio::co_spawn(io, b->enqueue({make_job()}), [&](std::exception_ptr e, const std::vector<JobId>&) {
      if (e) errors.push_back(e);
      ++done;
    });
  }
  ASSERT_TRUE(run_until(io, env_, [&] { return done == kCoroutines; }));
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(counts(*b)[static_cast<int>(JobState::waiting)],
            static_cast<std::uint64_t>(kCoroutines));
}

// One failing operation in a group rolls back only itself.
TEST_F(SqliteBackendTest, AFailingOpInAGroupDoesNotBreakTheOthers) {
  auto b = open();
  Job existing = make_job();
  sync_wait(b->enqueue({existing}));

  boost::asio::io_context io;
  constexpr int kOthers = 100;
  int done = 0, ok = 0, conflicts = 0;
  auto on_done = [&](std::exception_ptr e, const std::vector<JobId>& = {}) {
    ++done;
    if (!e) {
      ++ok;
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const Conflict&) {
      ++conflicts;
    } catch (...) {
    }
  };
  Job fresh_in_bad_batch = make_job();
  for (int i = 0; i < kOthers / 2; ++i) boost::asio::co_spawn(io, b->enqueue({make_job()}), on_done);
  // A batch with one new and one duplicate id: all or nothing.
  boost::asio::co_spawn(io, b->enqueue({fresh_in_bad_batch, existing}), on_done);
  for (int i = 0; i < kOthers / 2; ++i) boost::asio::co_spawn(io, b->enqueue({make_job()}), on_done);
  ASSERT_TRUE(run_until(io, env_, [&] { return done == kOthers + 1; }));
  EXPECT_EQ(ok, kOthers);
  EXPECT_EQ(conflicts, 1);
  EXPECT_FALSE(sync_wait(b->get(fresh_in_bad_batch.id)));
  EXPECT_EQ(counts(*b)[static_cast<int>(JobState::waiting)],
            static_cast<std::uint64_t>(kOthers + 1));
}

TEST_F(SqliteBackendTest, DuplicateIdWithinOneBatchStoresNothing) {
  auto b = open();
  Job j = make_job();
  Job k = make_job();
  EXPECT_THROW(sync_wait(b->enqueue({k, j, j})), Conflict);
  EXPECT_FALSE(sync_wait(b->get(k.id)));
  EXPECT_EQ(counts(*b), StateCounts{});
}

TEST_F(SqliteBackendTest, SyncFullStoresAndReopens) {
  Job j = make_job();
  {
    auto b = open("full.db", "?sync=full&busy_timeout_ms=100");
    EXPECT_EQ(b->describe(), uri("full.db", "?sync=full&busy_timeout_ms=100"));
    sync_wait(b->enqueue({j}));
    auto c = sync_wait(b->claim({"q", "w", 10, 1000, env_.now_ms()}));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(sync_wait(b->finish({Outcome{j.id, c[0].lease.token, Outcome::Kind::completed,
                                           "done", "", 0, env_.now_ms()}})),
              std::vector<bool>{true});
  }
  auto b = open("full.db", "?sync=full");
  auto got = sync_wait(b->get(j.id));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, JobState::completed);
  EXPECT_EQ(got->result, "done");
}

TEST_F(SqliteBackendTest, ClaimOrderUsesPriorityThenLifoThenFifo) {
  auto b = open();
  Job f1 = make_job(), f2 = make_job(), l1 = make_job(), l2 = make_job(), hi = make_job();
  l1.options.lifo = l2.options.lifo = true;
  hi.options.priority = -1;
  sync_wait(b->enqueue({f1, l1, f2, l2, hi}));
  auto c = sync_wait(b->claim({"q", "w", 10, 1000, env_.now_ms()}));
  std::vector<JobId> ids;
  for (auto& j : c) ids.push_back(j.id);
  EXPECT_EQ(ids, (std::vector<JobId>{hi.id, l2.id, l1.id, f1.id, f2.id}));
}

TEST_F(SqliteBackendTest, ListPagesByIdAndPauseStopsClaims) {
  auto b = open();
  std::vector<Job> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(make_job());
  sync_wait(b->enqueue(jobs));
  auto p1 = sync_wait(b->list({"q", JobState::waiting, std::nullopt, 3}));
  ASSERT_EQ(p1.jobs.size(), 3u);
  ASSERT_TRUE(p1.next);
  auto p2 = sync_wait(b->list({"q", JobState::waiting, p1.next, 3}));
  ASSERT_EQ(p2.jobs.size(), 2u);
  EXPECT_FALSE(p2.next);
  EXPECT_EQ(p2.jobs[1].id, jobs[4].id);
  EXPECT_THROW(sync_wait(b->list({"q", JobState::waiting, std::nullopt, 0})), InvalidArgument);

  sync_wait(b->set_paused("q", true));
  EXPECT_TRUE(sync_wait(b->is_paused("q")));
  EXPECT_TRUE(sync_wait(b->claim({"q", "w", 10, 1000, env_.now_ms()})).empty());
  sync_wait(b->set_paused("q", false));
  EXPECT_EQ(sync_wait(b->claim({"q", "w", 10, 1000, env_.now_ms()})).size(), 5u);
  EXPECT_THROW(sync_wait(b->remove(jobs[0].id)), Conflict);
  EXPECT_THROW(sync_wait(b->remove(make_job().id)), NotFound);
}

// Trims ride in the writer's transactions (no commit of their own); a store
// closed right after its relay trimmed still ends with an empty outbox, and
// the next row after reopening does not take a trimmed seq.
TEST_F(SqliteBackendTest, OutboxRowsTrimmedBeforeCloseAreGoneAfterReopen) {
  std::int64_t last = 0;
  {
    auto b = open();
    b->enable_audit_outbox("tester");
    sync_wait(b->enqueue({make_job(), make_job()}));
    auto rows = sync_wait(b->read_audit_outbox(0, 10));
    ASSERT_FALSE(rows.empty());
    last = rows.back().seq;
    b->trim_audit_outbox(last);
  }
  auto again = open();
  EXPECT_TRUE(sync_wait(again->read_audit_outbox(0, 10)).empty());
  again->enable_audit_outbox("tester");
  sync_wait(again->enqueue({make_job()}));
  auto rows = sync_wait(again->read_audit_outbox(0, 10));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_GT(rows[0].seq, last);
}

// A trim of a few rows waits for more (a delete per relay round rewrote the
// outbox pages at every commit); one of many deletes them in the next write.
TEST_F(SqliteBackendTest, OutboxTrimsWaitForAFewDozenRows) {
  const std::string path = dir_.file("store.db");
  auto b = open();
  b->enable_audit_outbox("tester");
  for (int i = 0; i < 80; ++i) sync_wait(b->enqueue({make_job()}));
  auto rows = sync_wait(b->read_audit_outbox(0, 100));
  ASSERT_EQ(rows.size(), 80u);
  b->trim_audit_outbox(rows[4].seq);
  sync_wait(b->enqueue({make_job()}));
  EXPECT_EQ(query_int(path, "SELECT count(*) FROM audit_outbox"), 81);
  b->trim_audit_outbox(rows[69].seq);
  sync_wait(b->enqueue({make_job()}));
  EXPECT_EQ(query_int(path, "SELECT count(*) FROM audit_outbox"), 12);
  EXPECT_EQ(query_int(path, "SELECT min(seq) FROM audit_outbox"), rows[70].seq);
}

}  // namespace
}  // namespace asyncmq::testing

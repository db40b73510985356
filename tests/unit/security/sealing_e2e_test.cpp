// End to end through a Client on a real SQLite file: with the sealing codec,
// no byte sequence of a marker planted in a payload, in a handler's progress
// value and in its log line (nor the data subject) reaches the database file,
// its WAL or the event log, while Client::get and Client::logs return the
// originals.
#include <asyncmq/client.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>
#include <asyncmq/task.hpp>
#include <asyncmq/worker.hpp>

#include "security/crypto.hpp"
#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <limits>
#include <fstream>
#include <sstream>

namespace asyncmq::testing {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every window of `min_len` or more bytes of `marker` that occurs in any
// file of `dir`, as "file: window".
std::vector<std::string> leaks(const std::string& dir, const std::string& marker,
                               std::size_t min_len) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string bytes = slurp(entry.path());
    for (std::size_t i = 0; i + min_len <= marker.size(); ++i) {
      std::string window = marker.substr(i, min_len);
      if (bytes.find(window) != std::string::npos)
        found.push_back(entry.path().filename().string() + ": " + window);
    }
  }
  return found;
}

// Runs job `id` of queue "clinic" with a worker whose "notify" handler puts
// `marker` in its progress value and in a log line.
void run_notify(const std::shared_ptr<Client>& client, FakeEnv& env, const JobId& id,
                const std::string& marker) {
  auto tasks = std::make_shared<TaskRegistry>();
  tasks->add("notify", [&marker](TaskContext& ctx) -> boost::json::value {
    ctx.progress(boost::json::object{{"stage", "sent"}, {"note", marker}});
    ctx.log("notified about " + marker);
    return "ok";
  }, TaskOptions{.blocking = false});
  WorkerOptions wo;
  wo.queues = {"clinic"};
  wo.id = "w";
  Worker worker(client, tasks, wo);
  boost::asio::io_context io;
  bool finished = false;
  boost::asio::co_spawn(io, worker.run(), [&finished](std::exception_ptr e) {
    finished = true;
    if (e) std::rethrow_exception(e);
  });
  auto completed = [&] { return sync_wait(client->backend().get(id))->state == JobState::completed; };
  ASSERT_TRUE(run_until(io, env, completed));
  worker.stop();
  ASSERT_TRUE(run_until(io, env, [&] { return finished; }));
}

TEST(SealingEndToEnd, MarkerNeverReachesSqliteFileOrWal) {
  TempDir dir;
  FakeEnv env;
  auto ring = std::make_shared<Keyring>();
  ring->add("k1", KeyState::primary, Secret(security::random_bytes(32)));
  ring->set_index_key("ix", Secret(security::random_bytes(32)));
  ClientOptions options;
  options.codec = make_sealing_codec(ring);

  const std::string marker = "MARKER-7f3a9c-hiv-positive-Jane-Roe";
  const std::string subject = "subject-patient-0042";
  const std::string uri = "sqlite://" + dir.file("x.db");
  JobId id;
  {
    auto client = Client::open(uri, env, options);
    sync_wait(client->backend().follow_events(std::numeric_limits<std::int64_t>::max()));
    Queue q(client, "clinic");
    JobOptions jo;
    jo.subject = subject;
    id = sync_wait(q.add("notify", boost::json::object{{"note", marker}, {"n", 7}}, jo));

    // While the store is open: the job is durable, so its bytes are in the
    // WAL (or the file) by now.
    ASSERT_TRUE(std::filesystem::exists(dir.file("x.db")));
    auto found = leaks(dir.path(), marker, 8);
    EXPECT_TRUE(found.empty()) << "first leak: " << found.front();
    EXPECT_TRUE(leaks(dir.path(), subject, 8).empty());

    // A worker runs it; the handler puts the marker in its progress value
    // and in a log line (the worker seals both).
    run_notify(client, env, id, marker);
    found = leaks(dir.path(), marker, 8);
    EXPECT_TRUE(found.empty()) << "first leak: " << found.front();

    auto job = sync_wait(client->get(id));
    ASSERT_TRUE(job);
    EXPECT_EQ(boost::json::parse(job->payload),
              (boost::json::object{{"note", marker}, {"n", 7}}));
    EXPECT_EQ(job->options.subject, options.codec->encode_subject(subject));
    EXPECT_EQ(boost::json::parse(job->progress),
              (boost::json::object{{"stage", "sent"}, {"note", marker}}));
    auto lines = sync_wait(client->logs(id));
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].text, "notified about " + marker);
    // The event log, as subscribers read it: no part of the marker either.
    bool saw_progress = false;
    for (const Event& e : sync_wait(client->backend().read_events(0, 10000)).events) {
      saw_progress = saw_progress || e.type == EventType::progress;
      for (std::size_t i = 0; i + 8 <= marker.size(); ++i)
        EXPECT_EQ(e.detail.find(marker.substr(i, 8)), std::string::npos) << e.detail;
    }
    EXPECT_TRUE(saw_progress);
  }
  // After close (checkpoint into the main file), still nowhere, nor in the
  // event log's rows (read straight from the file).
  auto found = leaks(dir.path(), marker, 8);
  EXPECT_TRUE(found.empty()) << "first leak: " << found.front();
  EXPECT_TRUE(leaks(dir.path(), subject, 8).empty());
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir.file("x.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT type, detail FROM events", -1, &st, nullptr), SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      ++rows;
      const void* bytes = sqlite3_column_blob(st, 1);
      std::string detail = bytes ? std::string(static_cast<const char*>(bytes),
                                               static_cast<std::size_t>(sqlite3_column_bytes(st, 1)))
                                 : std::string();
      for (std::size_t i = 0; i + 8 <= marker.size(); ++i)
        EXPECT_EQ(detail.find(marker.substr(i, 8)), std::string::npos) << detail;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    EXPECT_GE(rows, 4);  // waiting, active, progress, completed
  }

  // Reopened with the same keys the job opens; with other keys it does not.
  {
    auto client = Client::open(uri, env, options);
    auto job = sync_wait(client->get(id));
    ASSERT_TRUE(job);
    EXPECT_NE(job->payload.find(marker), std::string::npos);
    EXPECT_NE(job->progress.find(marker), std::string::npos);
    EXPECT_NE(sync_wait(client->logs(id)).at(0).text.find(marker), std::string::npos);
  }
  {
    auto other = std::make_shared<Keyring>();
    other->add("k1", KeyState::primary, Secret(security::random_bytes(32)));
    ClientOptions o;
    o.codec = make_sealing_codec(other);
    auto client = Client::open(uri, env, o);
    try {
      sync_wait(client->get(id));
      ADD_FAILURE() << "opened under another key";
    } catch (const IntegrityError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(id.str()), std::string::npos) << what;
      EXPECT_NE(what.find("key 'k1'"), std::string::npos) << what;
      EXPECT_EQ(what.find("MARKER"), std::string::npos) << what;
    }
  }
}

// The control: without the sealing codec the same scan finds the marker, so
// the scan above is able to see a leak (of the payload, and of the progress
// value and log line alone).
TEST(SealingEndToEnd, ControlPlainCodecLeaksMarker) {
  TempDir dir;
  FakeEnv env;
  const std::string marker = "MARKER-7f3a9c-hiv-positive-Jane-Roe";
  auto client = Client::open("sqlite://" + dir.file("x.db"), env);
  Queue q(client, "clinic");
  sync_wait(q.add("notify", boost::json::object{{"note", marker}}));
  EXPECT_FALSE(leaks(dir.path(), marker, 8).empty());

  TempDir other;
  const std::string handler_marker = "MARKER-only-in-progress-and-log-3c9d";
  client = Client::open("sqlite://" + other.file("x.db"), env);
  Queue q2(client, "clinic");
  JobId id = sync_wait(q2.add("notify", boost::json::object{}));
  run_notify(client, env, id, handler_marker);
  EXPECT_FALSE(leaks(other.path(), handler_marker, 8).empty());
}

// A bit flipped in the stored payload (as by an attacker with write access
// to the file) is an IntegrityError naming the job and key, not garbage.
TEST(SealingEndToEnd, FlippedBitInStoredPayloadIsIntegrityError) {
  TempDir dir;
  FakeEnv env;
  auto ring = std::make_shared<Keyring>();
  ring->add("k1", KeyState::primary, Secret(security::random_bytes(32)));
  ClientOptions options;
  options.codec = make_sealing_codec(ring);
  const std::string path = dir.file("x.db");
  JobId id;
  {
    auto client = Client::open("sqlite://" + path, env, options);
    Queue q(client, "clinic");
    id = sync_wait(q.add("notify", boost::json::object{{"note", "secret"}}));
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT payload FROM jobs", -1, &st, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    std::string blob(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                     static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
    sqlite3_finalize(st);
    blob[blob.size() / 2] = static_cast<char>(blob[blob.size() / 2] ^ 0x10);
    ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE jobs SET payload = ?", -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_blob(st, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  auto client = Client::open("sqlite://" + path, env, options);
  try {
    sync_wait(client->get(id));
    ADD_FAILURE() << "tampered payload opened";
  } catch (const IntegrityError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(id.str()), std::string::npos) << what;
    EXPECT_NE(what.find("key 'k1'"), std::string::npos) << what;
    EXPECT_NE(what.find("payload"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace asyncmq::testing

// At-least-once delivery across kill -9, on the SQLite default.
//
// Each test forks real processes that open the same database file, kills
// them with SIGKILL at an awkward moment, and checks the file afterwards.
// Children open the backend only after fork, so no thread crosses a fork.
#include <asyncmq/asyncmq.hpp>

#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

namespace asyncmq::testing {
namespace {

using boost::json::object;

// Reads one '\n'-terminated line from `fd`; empty at end of file.
std::string read_line(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1) {
    if (c == '\n') return line;
    line.push_back(c);
  }
  return line;
}

void write_line(int fd, const std::string& s) {
  std::string l = s + "\n";
  ssize_t n = ::write(fd, l.data(), l.size());
  (void)n;
}

int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// Runs a worker on `uri` in this process until `done` says so.
// A queue whose completed count reached `n`.
std::function<boost::asio::awaitable<bool>(Queue&)> completed_reaches(std::uint64_t n) {
  return [n](Queue& q) -> boost::asio::awaitable<bool> {
    auto c = co_await q.counts();
    co_return c[static_cast<int>(JobState::completed)] >= n;
  };
}

void run_worker(const std::string& uri, std::shared_ptr<TaskRegistry> tasks, WorkerOptions o,
                const std::function<boost::asio::awaitable<bool>(Queue&)>& done) {
  auto client = Client::open(uri);
  Queue queue(client, o.queues.front());
  Worker worker(client, tasks, o);
  boost::asio::io_context io;
  boost::asio::co_spawn(io, worker.run(), boost::asio::detached);
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    while (!(co_await done(queue))) co_await client->env().sleep_for(20);
    worker.stop();
  }, boost::asio::detached);
  io.run();
}

TEST(Durability, EveryAcknowledgedAddSurvivesKillOfTheProducer) {
  TempDir dir;
  const std::string uri = "sqlite://" + dir.file("producer.db");
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto client = Client::open(uri);
    Queue queue(client, "durable");
    // Many producers at once, so adds share commits, the path most at risk.
    boost::asio::io_context io;
    const int out = fds[1];
    for (int p = 0; p < 8; ++p) {
      boost::asio::co_spawn(io, [&queue, out, p]() -> boost::asio::awaitable<void> {
        for (int i = 0;; ++i) {
          // No braced initializer lists inside coroutines: GCC 12 rejects them.
          object payload;
          payload["p"] = p;
          payload["i"] = i;
          JobId id = co_await queue.add("t", std::move(payload));
          write_line(out, id.str());  // only after add returned
        }
      }, boost::asio::detached);
    }
    io.run();
    ::_exit(0);
  }
  ::close(fds[1]);
  std::vector<std::string> acknowledged;
  while (acknowledged.size() < 3000) {
    std::string line = read_line(fds[0]);
    ASSERT_FALSE(line.empty()) << "producer died early";
    acknowledged.push_back(line);
  }
  ::kill(pid, SIGKILL);
  int status = wait_exit(pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  // Lines the child wrote before it died also count as acknowledged.
  for (std::string line; !(line = read_line(fds[0])).empty();) {
    if (line.size() == 36) acknowledged.push_back(line);
  }
  ::close(fds[0]);

  auto client = Client::open(uri);
  std::size_t missing = 0;
  for (const auto& text : acknowledged) {
    if (!sync_wait(client->get(JobId::parse(text)))) ++missing;
  }
  EXPECT_EQ(missing, 0u) << "of " << acknowledged.size() << " acknowledged adds";
  auto counts = sync_wait(client->backend().counts("durable"));
  EXPECT_GE(counts[static_cast<int>(JobState::waiting)], acknowledged.size());
}

TEST(Durability, JobOfAKilledWorkerIsCompletedByAnotherAfterItsLease) {
  TempDir dir;
  const std::string uri = "sqlite://" + dir.file("worker.db");
  JobId id;
  {
    auto client = Client::open(uri);
    Queue queue(client, "work");
    id = sync_wait(queue.add("task", object{{"n", 1}}));
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto tasks = std::make_shared<TaskRegistry>();
    const int out = fds[1];
    tasks->add("task", [out](TaskContext& ctx) -> boost::asio::awaitable<boost::json::value> {
      write_line(out, "started " + ctx.job().id.str());
      for (;;) co_await ctx.env().sleep_for(1000);  // hangs until killed
    });
    WorkerOptions o;
    o.queues = {"work"};
    o.lease_ms = 1000;
    o.id = "doomed";
    run_worker(uri, tasks, o, [](Queue&) -> boost::asio::awaitable<bool> { co_return false; });
    ::_exit(0);
  }
  ::close(fds[1]);
  EXPECT_EQ(read_line(fds[0]), "started " + id.str());
  ::kill(pid, SIGKILL);
  wait_exit(pid);
  ::close(fds[0]);

  auto client = Client::open(uri);
  auto job = sync_wait(client->get(id));
  ASSERT_TRUE(job);
  EXPECT_EQ(job->state, JobState::active);
  EXPECT_EQ(job->lease.owner, "doomed");

  auto tasks = std::make_shared<TaskRegistry>();
  std::string ran_by;
  tasks->add("task", [&](TaskContext& ctx) -> boost::json::value {
    ran_by = "survivor";
    return ctx.payload().at("n").as_int64() + 1;
  }, TaskOptions{.blocking = false});
  WorkerOptions o;
  o.queues = {"work"};
  o.id = "survivor";
  o.maintenance_ms = 100;
  run_worker(uri, tasks, o, completed_reaches(1));
  job = sync_wait(client->get(id));
  EXPECT_EQ(job->state, JobState::completed);
  EXPECT_EQ(job->result, "2");
  EXPECT_EQ(job->stalls, 1);
  EXPECT_EQ(ran_by, "survivor");
}

TEST(Durability, TwoWorkerProcessesOnOneFileNeverRunAJobTwice) {
  TempDir dir;
  const std::string uri = "sqlite://" + dir.file("shared.db");
  constexpr int kJobs = 2000;
  {
    auto client = Client::open(uri);
    Queue queue(client, "shared");
    std::vector<NewJob> jobs;
    for (int i = 0; i < kJobs; ++i) jobs.push_back({"record", object{{"i", i}}, {}});
    sync_wait(queue.add_bulk(std::move(jobs)));
  }
  std::vector<pid_t> children;
  for (int w = 0; w < 2; ++w) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::ofstream log(dir.file("ran-" + std::to_string(w) + ".txt"));
      auto tasks = std::make_shared<TaskRegistry>();
      tasks->add("record", [&](TaskContext& ctx) -> boost::json::value {
        log << ctx.job().id.str() << "\n";
        return nullptr;
      }, TaskOptions{.blocking = false});
      WorkerOptions o;
      o.queues = {"shared"};
      o.concurrency = 16;
      o.id = "w" + std::to_string(w);
      run_worker(uri, tasks, o, completed_reaches(kJobs));
      log.flush();
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = wait_exit(pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::map<std::string, int> runs;
  std::vector<std::size_t> per_worker;
  for (int w = 0; w < 2; ++w) {
    std::ifstream in(dir.file("ran-" + std::to_string(w) + ".txt"));
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) {
      ++runs[line];
      ++n;
    }
    per_worker.push_back(n);
  }
  EXPECT_EQ(runs.size(), static_cast<std::size_t>(kJobs));
  int twice = 0;
  for (auto& [id, n] : runs) twice += n > 1;
  EXPECT_EQ(twice, 0);
  EXPECT_EQ(per_worker[0] + per_worker[1], static_cast<std::size_t>(kJobs));
}

}  // namespace
}  // namespace asyncmq::testing

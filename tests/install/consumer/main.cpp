// A user's program: enqueue three jobs, run a worker until they are done.
#include <asyncmq/asyncmq.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto client = asyncmq::Client::open(argv[1]);
  asyncmq::Queue queue(client, "consumer");
  for (int i = 0; i < 3; ++i)
    asyncmq::sync_wait(queue.add("double", boost::json::object{{"n", i}}));

  auto tasks = std::make_shared<asyncmq::TaskRegistry>();
  tasks->add("double", [](asyncmq::TaskContext& ctx) -> boost::json::value {
    return ctx.payload().at("n").as_int64() * 2;
  });
  asyncmq::WorkerOptions options;
  options.queues = {"consumer"};
  asyncmq::Worker worker(client, tasks, options);

  boost::asio::io_context io;
  boost::asio::co_spawn(io, worker.run(), boost::asio::detached);
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    for (;;) {
      auto counts = co_await queue.counts();
      if (counts[static_cast<int>(asyncmq::JobState::completed)] == 3) break;
      co_await client->env().sleep_for(5);
    }
    worker.stop();
  }, boost::asio::detached);
  io.run();
  std::cout << "consumer: completed " << worker.stats().completed << " jobs\n";
  return worker.stats().completed == 3 ? 0 : 1;
}

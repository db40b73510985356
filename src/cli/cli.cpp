// Placeholder until the CLI lands.
#include <asyncmq/cli.hpp>

#include <iostream>

namespace asyncmq {

int run_cli(int, const char* const*, const TaskRegistry&) {
  std::cerr << "asyncmq: the CLI is not built yet\n";
  return 1;
}

TaskRegistry builtin_tasks() { return {}; }

}  // namespace asyncmq

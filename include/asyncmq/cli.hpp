// The `asyncmq` command line, as a function, so that a program with its own
// tasks becomes the same CLI:
//
//   int main(int argc, char** argv) {
//     asyncmq::TaskRegistry tasks;
//     tasks.add("resize", resize_image);
//     return asyncmq::run_cli(argc, argv, tasks);
//   }
//
// `worker` runs the built-in tasks (echo, sleep, fail) plus `tasks`.
// Exit codes: 0 success, 2 usage or input error, 1 runtime error.
#pragma once

#include <asyncmq/task.hpp>

namespace asyncmq {

int run_cli(int argc, const char* const* argv, const TaskRegistry& tasks = {});

// The built-in tasks: echo (returns its payload), sleep ({"ms": N}),
// fail (always throws; {"message": "..."}), noop.
TaskRegistry builtin_tasks();

}  // namespace asyncmq

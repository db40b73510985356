// Running a program as a child process and capturing what it says: for the
// end-to-end tests of the `asyncmq` command and the demo.
//
// The child's stdout and stderr go to temporary files (not pipes), so a
// chatty child can never block on a full pipe while the test waits for it.
// Its stdin is /dev/null unless `stdin_data` is given.
//
// Thread safety: a Process belongs to one thread.
// Lifetime: destroying a Process that is still running kills it (SIGKILL)
// and reaps it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace asyncmq::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 if the child was killed by a signal
  int signal = 0;      // the signal that killed it, or 0
  std::string out;     // everything written to stdout
  std::string err;     // everything written to stderr
};

struct ProcessOptions {
  // Environment changes for the child: a value sets, nullopt unsets.
  // ASYNCMQ_BACKEND is always unset unless given here.
  std::map<std::string, std::optional<std::string>> env;
  std::string stdin_data;
  std::string cwd;  // empty: the test's working directory
};

class Process {
 public:
  // Starts argv[0] (a path) with argv. Throws std::runtime_error on failure.
  explicit Process(const std::vector<std::string>& argv, const ProcessOptions& options = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  int pid() const { return pid_; }
  void send_signal(int signo);
  // Waits for the child to exit, at most `timeout_ms` (negative: forever).
  // Returns nullopt on timeout (the child keeps running).
  std::optional<ProcessResult> wait_for(int timeout_ms);
  ProcessResult wait() { return *wait_for(-1); }
  // What the child has written to stdout / stderr so far.
  std::string out_so_far() const;
  std::string err_so_far() const;

 private:
  ProcessResult collect(int status);
  int pid_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  std::string dir_;  // holds the output files
};

// Starts, waits (at most timeout_ms) and collects. A child that runs over
// the timeout is killed and reported with signal SIGKILL.
ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {},
                          int timeout_ms = 120'000);

}  // namespace asyncmq::testing

#include "support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace asyncmq::testing {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

[[noreturn]] void child_fail(const char* what) {
  // Only async-signal-safe calls after fork.
  ssize_t ignored = ::write(2, what, std::strlen(what));
  (void)ignored;
  _exit(127);
}

}  // namespace

Process::Process(const std::vector<std::string>& argv, const ProcessOptions& options) {
  if (argv.empty()) throw std::runtime_error("Process: empty argv");
  std::string tmpl = (std::filesystem::temp_directory_path() / "asyncmq-proc-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("Process: mkdtemp failed");
  dir_ = tmpl;
  std::string out_path = dir_ + "/stdout", err_path = dir_ + "/stderr", in_path = dir_ + "/stdin";
  {
    std::ofstream in(in_path, std::ios::binary);
    in << options.stdin_data;
  }

  // Everything the child needs is prepared before fork.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    if (key == "ASYNCMQ_BACKEND" || options.env.count(key)) continue;
    env_strings.push_back(kv);
  }
  for (const auto& [k, v] : options.env)
    if (v) env_strings.push_back(k + "=" + *v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error(std::string("Process: fork failed: ") + std::strerror(errno));
  if (pid_ == 0) {
    int in = ::open(in_path.c_str(), O_RDONLY);
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0) child_fail("Process: cannot open stdio files\n");
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) child_fail("Process: dup2 failed\n");
    if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) child_fail("Process: chdir failed\n");
    // Default signal dispositions for the child (gtest may have changed none,
    // but be explicit: the worker test relies on SIGTERM).
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(args[0], args.data(), envp.data());
    child_fail("Process: execve failed\n");
  }
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
}

Process::~Process() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  if (pidfd_ >= 0) ::close(pidfd_);
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

void Process::send_signal(int signo) {
  if (pid_ > 0 && !reaped_) ::kill(pid_, signo);
}

std::optional<ProcessResult> Process::wait_for(int timeout_ms) {
  if (reaped_) throw std::runtime_error("Process: already waited for");
  if (timeout_ms >= 0 && pidfd_ >= 0) {
    pollfd p{pidfd_, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return std::nullopt;
  }
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) throw std::runtime_error(std::string("Process: waitpid failed: ") + std::strerror(errno));
  reaped_ = true;
  return collect(status);
}

ProcessResult Process::collect(int status) {
  ProcessResult res;
  if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  res.out = read_file(dir_ + "/stdout");
  res.err = read_file(dir_ + "/stderr");
  return res;
}

std::string Process::out_so_far() const { return read_file(dir_ + "/stdout"); }
std::string Process::err_so_far() const { return read_file(dir_ + "/stderr"); }

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options,
                          int timeout_ms) {
  Process p(argv, options);
  if (auto r = p.wait_for(timeout_ms)) return *r;
  p.send_signal(SIGKILL);
  return p.wait();
}

}  // namespace asyncmq::testing

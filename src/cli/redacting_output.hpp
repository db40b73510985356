// Redaction of everything the `asyncmq` command prints: while a
// RedactingOutput is alive, std::cout and std::cerr go through a stream
// buffer that holds each line until its '\n' (or '\r', for progress lines)
// and writes it through asyncmq::redact_text. One place, so a command added
// later cannot forget it.
//
// A partial line is written when the RedactingOutput is destroyed. Output
// written with printf/fwrite to the file descriptors is not covered (the
// logger redacts its own lines before they reach its sinks).
//
// Thread safety: each stream's buffer has a mutex; lines from two threads
// are not interleaved within a line.
// Lifetime: restores the original buffers on destruction; create one per
// run_cli call, on its stack.
#pragma once

#include <memory>

namespace asyncmq::cli {

class RedactingOutput {
 public:
  RedactingOutput();
  ~RedactingOutput();
  RedactingOutput(const RedactingOutput&) = delete;
  RedactingOutput& operator=(const RedactingOutput&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace asyncmq::cli

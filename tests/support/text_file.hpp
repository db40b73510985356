// Small text helpers the end-to-end tests share: a whole file as a string,
// and a command's output without its trailing newline.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace asyncmq::testing {

// The file's bytes; empty if it cannot be read.
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `s` without trailing newlines, carriage returns and spaces.
inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace asyncmq::testing

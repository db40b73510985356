#include "cli/redacting_output.hpp"

#include <asyncmq/security.hpp>

#include <iostream>
#include <mutex>
#include <streambuf>
#include <string>

namespace asyncmq::cli {
namespace {

class RedactingBuf final : public std::streambuf {
 public:
  explicit RedactingBuf(std::streambuf* out) : out_(out) {}
  ~RedactingBuf() override { finish(); }

  void finish() {
    std::lock_guard lock(mu_);
    emit();
    out_->pubsync();
  }

 protected:
  int_type overflow(int_type ch) override {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    char c = traits_type::to_char_type(ch);
    std::lock_guard lock(mu_);
    pending_ += c;
    if (c == '\n' || c == '\r') emit();
    return ch;
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    for (std::streamsize i = 0; i < n; ++i) {
      pending_ += s[i];
      if (s[i] == '\n' || s[i] == '\r') emit();
    }
    return n;
  }

  // A flush does not cut a line: "password=" and its value may come in two
  // writes, and redaction must see them together.
  int sync() override {
    std::lock_guard lock(mu_);
    return out_->pubsync();
  }

 private:
  void emit() {
    if (pending_.empty()) return;
    std::string line = redact_text(pending_);
    out_->sputn(line.data(), static_cast<std::streamsize>(line.size()));
    if (pending_.back() == '\n' || pending_.back() == '\r') out_->pubsync();
    pending_.clear();
  }

  std::mutex mu_;
  std::streambuf* out_;
  std::string pending_;  // guarded by mu_
};

}  // namespace

struct RedactingOutput::Impl {
  std::streambuf* cout_orig = std::cout.rdbuf();
  std::streambuf* cerr_orig = std::cerr.rdbuf();
  RedactingBuf cout_buf{cout_orig};
  RedactingBuf cerr_buf{cerr_orig};
};

RedactingOutput::RedactingOutput() : impl_(std::make_unique<Impl>()) {
  std::cout.flush();
  std::cerr.flush();
  std::cout.rdbuf(&impl_->cout_buf);
  std::cerr.rdbuf(&impl_->cerr_buf);
}

RedactingOutput::~RedactingOutput() {
  std::cout.flush();
  std::cerr.flush();
  impl_->cout_buf.finish();
  impl_->cerr_buf.finish();
  std::cout.rdbuf(impl_->cout_orig);
  std::cerr.rdbuf(impl_->cerr_orig);
}

}  // namespace asyncmq::cli

#include <asyncmq/error.hpp>

namespace asyncmq {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "asyncmq"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::invalid_argument: return "invalid argument";
      case errc::invalid_name: return "invalid name";
      case errc::malformed_json: return "malformed JSON";
      case errc::payload_too_large: return "payload too large";
      case errc::unsupported_scheme: return "unsupported backend scheme";
      case errc::invalid_uri: return "invalid URI";
      case errc::unknown_task: return "unknown task";
      case errc::guard_refused: return "refused by a payload guard";
      case errc::invalid_config: return "invalid configuration";
      case errc::not_found: return "not found";
      case errc::conflict: return "conflict";
      case errc::lease_lost: return "lease lost";
      case errc::busy: return "backend busy";
      case errc::unavailable: return "backend unavailable";
      case errc::timeout: return "timed out";
      case errc::closed: return "closed";
      case errc::cancelled: return "cancelled";
      case errc::integrity: return "integrity check failed";
      case errc::corrupt_store: return "store is corrupt or not an asyncmq store";
      case errc::permission_denied: return "permission denied";
      case errc::unauthenticated: return "unauthenticated";
      case errc::backend_failure: return "backend failure";
    }
    return "unknown asyncmq error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

bool is_invalid_input(const boost::system::error_code& ec) noexcept {
  return ec.category() == error_category() && ec.value() >= 1 && ec.value() < 20;
}

bool is_transient(const boost::system::error_code& ec) noexcept {
  return ec.category() == error_category() && ec.value() >= 40 && ec.value() < 50;
}

}  // namespace asyncmq

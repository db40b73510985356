// asyncmq's one error model.
//
// Every failure carries an `asyncmq::errc`, registered as a boost::system
// error category, grouped by what the caller does next:
//   - invalid input      (fix the call; the CLI exits 2)
//   - not found          (the job, queue or file does not exist)
//   - conflict           (the job is not in a state that allows the call,
//                         or the caller's lease was lost: fencing)
//   - transient          (retry later: the backend is busy or unreachable)
//   - closed             (the object was shut down; reconnect / recreate)
//   - integrity          (stored data failed a check; never retried)
//   - permission         (the principal may not do this, or its credential
//                         was refused: unauthenticated)
//
// Public calls throw `asyncmq::Error` (or one of its subclasses below), so
// plain code and coroutines read naturally. Messages name the problem and
// never contain payloads or secrets.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace asyncmq {

enum class errc {
  ok = 0,
  // invalid input
  invalid_argument = 1,
  invalid_name,
  malformed_json,
  payload_too_large,
  unsupported_scheme,
  invalid_uri,
  unknown_task,
  guard_refused,  // a payload guard (size, depth, keys, card number) refused it
  invalid_config,  // a settings file, variable or flag is malformed or unknown
  // not found
  not_found = 20,
  // conflict
  conflict = 30,
  lease_lost,
  // transient
  busy = 40,
  unavailable,
  timeout,
  // closed
  closed = 50,
  cancelled,
  // integrity
  integrity = 60,
  corrupt_store,
  // permission
  permission_denied = 70,
  unauthenticated,  // a credential was refused (unknown, expired, revoked, bad signature)
  // anything else a backend reports
  backend_failure = 80,
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// True when the code belongs to the "invalid input" group (CLI exit code 2).
bool is_invalid_input(const boost::system::error_code& ec) noexcept;
// True when retrying the same call later may succeed.
bool is_transient(const boost::system::error_code& ec) noexcept;

// The base of everything asyncmq throws.
// Thread safety: immutable after construction.
class Error : public boost::system::system_error {
 public:
  Error(errc code, const std::string& what)
      : boost::system::system_error(make_error_code(code), what) {}
  errc kind() const noexcept { return static_cast<errc>(code().value()); }
};

// Bad input from the caller: names, JSON, sizes, URIs, options.
class InvalidArgument : public Error {
 public:
  explicit InvalidArgument(const std::string& what, errc code = errc::invalid_argument)
      : Error(code, what) {}
};

// The job, queue or file does not exist.
class NotFound : public Error {
 public:
  explicit NotFound(const std::string& what) : Error(errc::not_found, what) {}
};

// The job is not in a state that allows the call, or a lease was lost.
class Conflict : public Error {
 public:
  explicit Conflict(const std::string& what, errc code = errc::conflict) : Error(code, what) {}
};

// The backend failed; `is_transient(code())` says whether to retry.
class BackendError : public Error {
 public:
  BackendError(errc code, const std::string& what) : Error(code, what) {}
};

// Stored data failed an integrity check.
class IntegrityError : public Error {
 public:
  explicit IntegrityError(const std::string& what, errc code = errc::integrity)
      : Error(code, what) {}
};

}  // namespace asyncmq

namespace boost::system {
template <>
struct is_error_code_enum<asyncmq::errc> : std::true_type {};
}  // namespace boost::system

// Placeholder until the SQLite backend lands: refuses to open.
#include "backends/sqlite/sqlite_backend.hpp"

#include <asyncmq/error.hpp>

namespace asyncmq::backends {

std::shared_ptr<Backend> make_sqlite_backend(const SqliteOptions&, Env&) {
  throw BackendError(errc::unavailable, "the SQLite backend is not built yet");
}

}  // namespace asyncmq::backends

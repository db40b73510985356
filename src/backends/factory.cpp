// open_backend: one URI picks and configures a backend.
#include <asyncmq/backend.hpp>
#include <asyncmq/error.hpp>

#include "backends/memory/memory_backend.hpp"
#include "backends/sqlite/sqlite_backend.hpp"
#include "core/uri.hpp"

#include <charconv>

namespace asyncmq {
namespace {

int parse_int_option(const core::Uri& uri, const std::string& key, const std::string& value,
                     int lo, int hi) {
  int v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || p != value.data() + value.size() || v < lo || v > hi) {
    throw InvalidArgument("option " + key + " in backend URI " + uri.masked() +
                              " must be an integer in [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]",
                          errc::invalid_uri);
  }
  return v;
}

}  // namespace

std::shared_ptr<Backend> open_backend(std::string_view text, Env& env) {
  core::Uri uri = core::parse_uri(text);
  if (uri.scheme == "memory") {
    uri.refuse_unknown_options();
    return backends::make_memory_backend(env);
  }
  if (uri.scheme == "sqlite") {
    backends::SqliteOptions o;
    if (!uri.host.empty()) {
      throw InvalidArgument("sqlite URI " + uri.masked() +
                                " has a host; use sqlite:///absolute/path.db or "
                                "sqlite:///./relative/path.db",
                            errc::invalid_uri);
    }
    o.path = uri.path;
    // sqlite:///./x.db and sqlite:///../x.db name paths relative to the
    // working directory; everything else after the third slash is absolute.
    if (o.path.rfind("/./", 0) == 0 || o.path.rfind("/../", 0) == 0) o.path.erase(0, 1);
    if (o.path.empty() || o.path == "/" || o.path.back() == '/') {
      throw InvalidArgument("sqlite URI " + uri.masked() + " names no database file",
                            errc::invalid_uri);
    }
    std::string sync = uri.take("sync", "normal");
    if (sync == "full") {
      o.sync_full = true;
    } else if (sync != "normal") {
      throw InvalidArgument("option sync in backend URI " + uri.masked() +
                                " must be 'normal' or 'full'",
                            errc::invalid_uri);
    }
    std::string busy = uri.take("busy_timeout_ms");
    if (!busy.empty()) o.busy_timeout_ms = parse_int_option(uri, "busy_timeout_ms", busy, 0, 600000);
    uri.refuse_unknown_options();
    o.uri_for_display = uri.masked();
    return backends::make_sqlite_backend(o, env);
  }
  throw InvalidArgument("unsupported backend scheme '" + uri.scheme.substr(0, 32) +
                            "' (supported: memory://, sqlite:///path.db)",
                        errc::unsupported_scheme);
}

}  // namespace asyncmq

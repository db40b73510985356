#include "core/uri.hpp"

#include <asyncmq/error.hpp>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>
#include <cctype>

namespace asyncmq::core {

std::string Uri::masked() const { return mask_uri(original); }

std::string Uri::take(const std::string& key, std::string fallback) {
  auto it = query.find(key);
  if (it == query.end()) return fallback;
  std::string v = std::move(it->second);
  query.erase(it);
  return v;
}

void Uri::refuse_unknown_options() const {
  if (!query.empty()) {
    throw InvalidArgument("unknown option '" + query.begin()->first.substr(0, 64) +
                              "' in backend URI " + masked(),
                          errc::invalid_uri);
  }
}

std::string mask_uri(std::string_view text) {
  // scheme://user:password@host → scheme://user:****@host
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return std::string(text);
  auto auth_start = scheme_end + 3;
  auto at = text.find('@', auth_start);
  auto slash = text.find('/', auth_start);
  if (at == std::string_view::npos || (slash != std::string_view::npos && slash < at))
    return std::string(text);
  auto colon = text.find(':', auth_start);
  if (colon == std::string_view::npos || colon > at) return std::string(text);
  std::string out(text.substr(0, colon + 1));
  out += "****";
  out += text.substr(at);
  return out;
}

Uri parse_uri(std::string_view text) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    throw InvalidArgument("invalid backend URI " + mask_uri(text) +
                              " (expected scheme://..., e.g. sqlite:///./asyncmq.db or memory://)",
                          errc::invalid_uri);
  }
  const boost::urls::url_view& u = *parsed;
  Uri out;
  out.original = std::string(text);
  out.scheme = std::string(u.scheme());
  std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  out.user = std::string(u.user());
  out.password = std::string(u.password());
  out.host = std::string(u.host());
  out.port = std::string(u.port());
  out.path = std::string(u.path());
  for (auto param : u.params()) {
    std::string key(param.key);
    if (out.query.count(key)) {
      throw InvalidArgument("option '" + key.substr(0, 64) + "' given twice in backend URI " +
                                out.masked(),
                            errc::invalid_uri);
    }
    out.query[key] = param.has_value ? std::string(param.value) : std::string();
  }
  return out;
}

}  // namespace asyncmq::core

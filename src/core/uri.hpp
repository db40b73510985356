// Backend URIs: one string configures a connection.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace asyncmq::core {

struct Uri {
  std::string scheme;    // lowercase
  std::string user;
  std::string password;  // never printed: see masked()
  std::string host;
  std::string port;
  std::string path;      // percent-decoded
  std::map<std::string, std::string> query;  // percent-decoded; duplicates refused
  std::string original;

  // The URI with any password replaced by "****".
  std::string masked() const;

  // Removes and returns option `key`, or `fallback` if absent.
  std::string take(const std::string& key, std::string fallback = {});
  // Throws InvalidArgument naming the first option not taken.
  void refuse_unknown_options() const;
};

// Throws InvalidArgument (errc::invalid_uri) naming the problem; the message
// never contains the password.
Uri parse_uri(std::string_view text);

// Masks the password of anything that looks like a URI with credentials.
std::string mask_uri(std::string_view text);

}  // namespace asyncmq::core

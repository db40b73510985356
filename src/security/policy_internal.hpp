// The policy's private side: grants, the parsed rules, the glob matcher and
// the file stamp that live reloading compares (also used by the JWKS file).
//
// Thread safety: Rules are immutable once published; the functions are pure
// (stamp_of reads the file system).
#pragma once

#include <asyncmq/identity.hpp>

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncmq {

namespace security {

// What identifies one version of a file without reading it. A rewrite
// through rename changes the inode; an edit in place changes mtime/ctime
// (nanoseconds) or size.
struct FileStamp {
  bool exists = false;
  ino_t ino = 0;
  dev_t dev = 0;
  off_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
FileStamp stamp_of(const std::filesystem::path& file);

// `*` matches any run of characters (also none), `?` exactly one.
bool glob_match(std::string_view pattern, std::string_view text) noexcept;

struct Grant {
  std::string principal;  // glob over Principal::id()
  bool has_principal = false;
  std::vector<std::pair<std::string, std::string>> claims;
  std::array<bool, kRoleCount> roles{};
  std::vector<std::string> queues;
};

bool grant_applies(const Grant& g, const Principal& who, const std::string& id);

// Reads a whole (small) text file. NotFound / InvalidArgument.
std::string read_text_file(const std::filesystem::path& file, std::string_view what);

}  // namespace security

struct Policy::Rules {
  std::vector<security::Grant> grants;
  security::FileStamp stamp;
};

namespace security {
// Throws InvalidArgument naming source, line and problem.
std::shared_ptr<Policy::Rules> parse_rules(std::string_view text, std::string_view source);
}  // namespace security

}  // namespace asyncmq

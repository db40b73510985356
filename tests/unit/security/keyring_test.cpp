// Keyring: the key-file format, refusing unsafe key files, states and
// rotation, the per-key message counter, and the Secret type.
#include "security/crypto.hpp"
#include "security/keyring.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/security.hpp>

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <ostream>
#include <string>
#include <type_traits>

namespace asyncmq::testing {
namespace {

// ---- Secret: compile-time refusal to be printed or converted ---------------

template <class T>
concept Streamable = requires(std::ostream& os, const T& t) { os << t; };

static_assert(!Streamable<Secret>, "a Secret must not be streamable");
static_assert(Streamable<int>, "the detection trait works");
static_assert(!std::is_convertible_v<Secret, std::string>);
static_assert(!std::is_convertible_v<Secret, std::string_view>);
static_assert(!std::is_convertible_v<const Secret&, const char*>);
static_assert(!std::is_convertible_v<Secret, bool>);
static_assert(!std::is_constructible_v<std::string, const Secret&>);
static_assert(!std::is_copy_constructible_v<Secret>);
static_assert(!std::is_copy_assignable_v<Secret>);
static_assert(std::is_nothrow_move_constructible_v<Secret>);

const std::string kKeyA = std::string(32, 'A');
const std::string kKeyB = std::string(32, 'B');
const std::string kKeyC = std::string(32, 'C');
const std::string kKeyI = std::string(32, 'I');
std::string b64(const std::string& s) { return security::base64_encode(s); }

std::string key_file_text() {
  return "# asyncmq keys\n"
         "k-old decrypt-only " + b64(kKeyA) + "\n"
         "\n"
         "k-new\tprimary  " + b64(kKeyB) + "\r\n"
         "k-gone disabled " + b64(kKeyC) + "\n"
         "idx index " + b64(kKeyI) + "\n";
}

std::string write_key_file(const TempDir& dir, mode_t mode, const std::string& text) {
  std::string path = dir.file("keys");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

TEST(KeyringSecret, HoldsBytesAndEmptiesOnMove) {
  std::string raw = "key-bytes";
  Secret s = Secret::take(raw);
  EXPECT_TRUE(raw.empty());
  EXPECT_EQ(s.reveal(), "key-bytes");
  Secret t = std::move(s);
  EXPECT_EQ(t.reveal(), "key-bytes");
  EXPECT_TRUE(s.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  t = Secret("other");
  EXPECT_EQ(t.reveal(), "other");
  EXPECT_EQ(::testing::PrintToString(t), "Secret(5 bytes, redacted)");
}

TEST(KeyringParse, RolesIdsAndComments) {
  auto ring = Keyring::parse(key_file_text(), "test");
  EXPECT_EQ(ring->primary_id(), "k-new");
  EXPECT_TRUE(ring->has_index_key());
  auto keys = ring->list();
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].id, "k-gone");
  EXPECT_EQ(keys[0].state, KeyState::disabled);
  EXPECT_EQ(keys[1].id, "k-new");
  EXPECT_EQ(keys[1].state, KeyState::primary);
  EXPECT_EQ(keys[2].id, "k-old");
  EXPECT_EQ(keys[2].state, KeyState::decrypt_only);
  EXPECT_EQ(to_string(KeyState::decrypt_only), "decrypt-only");
}

void expect_parse_error(const std::string& text, const std::string& needle) {
  SCOPED_TRACE(needle);
  try {
    Keyring::parse(text, "keys.txt");
    ADD_FAILURE() << "parsed";
  } catch (const KeyFileError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_NE(what.find("keys.txt:"), std::string::npos) << what;
    // Never the key material.
    EXPECT_EQ(what.find(b64(kKeyA)), std::string::npos) << what;
    EXPECT_EQ(what.find(b64(kKeyA).substr(0, 16)), std::string::npos) << what;
    EXPECT_EQ(e.kind(), errc::invalid_argument);
  }
}

TEST(KeyringParse, RefusesMalformedLinesWithoutEchoingKeys) {
  expect_parse_error("a primary\n", "got 2 fields");
  expect_parse_error("a primary " + b64(kKeyA) + " extra\n", "got 4 fields");
  expect_parse_error("a primary " + b64(kKeyA) + "!\n", "not valid base64");
  expect_parse_error("a primary " + b64(std::string(16, 'x')) + "\n", "must be 32 bytes");
  expect_parse_error("a primary " + b64(kKeyA) + "\nb primary " + b64(kKeyA) + "\n",
                     "more than one primary");
  expect_parse_error("a sometimes " + b64(kKeyA) + "\n", "unknown role");
  expect_parse_error("bad/id primary " + b64(kKeyA) + "\n", "key id must be");
  expect_parse_error(std::string(65, 'k') + " primary " + b64(kKeyA) + "\n", "key id must be");
  expect_parse_error("a primary " + b64(kKeyA) + "\na decrypt-only " + b64(kKeyA) + "\n",
                     "already in the keyring");
  expect_parse_error("i index " + b64(kKeyA) + "\nj index " + b64(kKeyA) + "\n",
                     "more than one index key");
}

TEST(KeyringFile, LoadsOwnerOnlyFile) {
  TempDir dir;
  for (mode_t mode : {0600, 0400}) {
    auto path = write_key_file(dir, mode, key_file_text());
    auto ring = Keyring::load_file(path);
    EXPECT_EQ(ring->primary_id(), "k-new");
  }
}

TEST(KeyringFile, RefusesFileReadableByGroupOrOthers) {
  TempDir dir;
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602, 0620}) {
    auto path = write_key_file(dir, mode, key_file_text());
    char want[8];
    std::snprintf(want, sizeof want, "%04o", static_cast<unsigned>(mode));
    try {
      Keyring::load_file(path);
      ADD_FAILURE() << "mode " << want << " accepted";
    } catch (const KeyFileError& e) {
      std::string what = e.what();
      EXPECT_EQ(e.kind(), errc::permission_denied);
      EXPECT_NE(what.find(std::string("has mode ") + want), std::string::npos) << what;
      EXPECT_NE(what.find("chmod 600"), std::string::npos) << what;
      EXPECT_EQ(what.find(b64(kKeyB)), std::string::npos) << what;
    }
  }
}

TEST(KeyringFile, RefusesSymlinkAndMissingFile) {
  TempDir dir;
  auto path = write_key_file(dir, 0600, key_file_text());
  std::string link = dir.file("link");
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  try {
    Keyring::load_file(link);
    ADD_FAILURE() << "symlink accepted";
  } catch (const KeyFileError& e) {
    EXPECT_EQ(e.kind(), errc::permission_denied);
  }
  try {
    Keyring::load_file(dir.file("absent"));
    ADD_FAILURE() << "missing file accepted";
  } catch (const KeyFileError& e) {
    EXPECT_EQ(e.kind(), errc::not_found);
  }
  try {
    Keyring::load_file(dir.path());
    ADD_FAILURE() << "directory accepted";
  } catch (const KeyFileError&) {
  }
}

TEST(KeyringEnv, LoadsFromEnvironmentVariable) {
  const char* var = "ASYNCMQ_TEST_KEYRING_ENV";
  std::string value = "a decrypt-only " + b64(kKeyA) + ";b primary " + b64(kKeyB);
  ASSERT_EQ(::setenv(var, value.c_str(), 1), 0);
  auto ring = Keyring::load_env(var);
  EXPECT_EQ(ring->primary_id(), "b");
  EXPECT_EQ(ring->list().size(), 2u);
  ::unsetenv(var);
  try {
    Keyring::load_env(var);
    ADD_FAILURE() << "unset variable accepted";
  } catch (const KeyFileError& e) {
    EXPECT_EQ(e.kind(), errc::not_found);
  }
}

TEST(KeyringRotation, ActivateDemotesOldPrimary) {
  Keyring ring;
  ring.add("a", KeyState::primary, Secret(kKeyA));
  EXPECT_EQ(ring.primary_id(), "a");
  ring.add("b", KeyState::primary, Secret(kKeyB));
  EXPECT_EQ(ring.primary_id(), "b");
  EXPECT_EQ(ring.list()[0].state, KeyState::decrypt_only);
  ring.activate("a");
  EXPECT_EQ(ring.primary_id(), "a");
  EXPECT_EQ(ring.list()[1].state, KeyState::decrypt_only);
  ring.set_state("a", KeyState::disabled);
  EXPECT_EQ(ring.primary_id(), "");
  EXPECT_THROW(ring.activate("zz"), NotFound);
  EXPECT_THROW(ring.add("a", KeyState::primary, Secret(kKeyC)), Conflict);
  EXPECT_THROW(ring.add("c", KeyState::primary, Secret("short")), InvalidArgument);
  EXPECT_THROW(ring.add("c d", KeyState::primary, Secret(kKeyC)), InvalidArgument);
}

TEST(KeyringCounter, CountsWarnsOnceAndRefusesAtLimit) {
  KeyringOptions o;
  o.warn_after_messages = 3;
  o.refuse_after_messages = 5;
  Keyring ring(o);
  ring.add("k1", KeyState::primary, Secret(kKeyA));
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) security::KeyringAccess::take_primary_for_seal(ring);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(ring.messages_sealed("k1"), 5u);
  std::size_t first = err.find("key 'k1' has sealed 3 messages");
  EXPECT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("has sealed", first + 20), std::string::npos) << "warned twice: " << err;
  EXPECT_THROW(security::KeyringAccess::take_primary_for_seal(ring), Error);
  EXPECT_EQ(ring.messages_sealed("k1"), 5u);
  // A new primary starts its own count.
  ring.add("k2", KeyState::primary, Secret(kKeyB));
  security::KeyringAccess::take_primary_for_seal(ring);
  EXPECT_EQ(ring.messages_sealed("k2"), 1u);
  EXPECT_EQ(ring.list()[1].messages_sealed, 1u);
  // The default threshold is far below NIST SP 800-38D's 2^32 limit.
  EXPECT_LE(KeyringOptions{}.warn_after_messages, std::uint64_t{1} << 28);
  EXPECT_LE(KeyringOptions{}.refuse_after_messages, std::uint64_t{1} << 32);
}

TEST(KeyringAccessTest, KeyForOpenSkipsDisabledAndUnknown) {
  Keyring ring;
  ring.add("a", KeyState::decrypt_only, Secret(kKeyA));
  ring.add("b", KeyState::disabled, Secret(kKeyB));
  EXPECT_NE(security::KeyringAccess::key_for_open(ring, "a"), nullptr);
  EXPECT_EQ(security::KeyringAccess::key_for_open(ring, "b"), nullptr);
  EXPECT_EQ(security::KeyringAccess::key_for_open(ring, "c"), nullptr);
  EXPECT_THROW(security::KeyringAccess::take_primary_for_seal(ring), InvalidArgument);
}

}  // namespace
}  // namespace asyncmq::testing

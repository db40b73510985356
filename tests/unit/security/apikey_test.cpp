// ApiKeyStore: a key is shown once and stored only as its SHA-256; lookup
// accepts it, and refuses unknown, malformed, revoked and expired keys with
// Unauthenticated, never echoing the key. The store file is private (0600),
// an unsafe one is refused, and no key ever appears in it.
#include <asyncmq/identity.hpp>

#include "security/crypto.hpp"
#include "security/jose.hpp"
#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace asyncmq::testing {
namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const Unauthenticated& e) {
    EXPECT_EQ(e.kind(), errc::unauthenticated);
    return e.what();
  }
  ADD_FAILURE() << "not refused";
  return {};
}

TEST(ApiKeys, CreateAuthenticateListRevoke) {
  TempDir dir;
  FakeEnv env;
  const std::string path = dir.file("keys.json");
  auto store = ApiKeyStore::open(path, env);
  NewApiKey made = store->create("ci-producer", "producer", parse_duration_ms("30d"));
  EXPECT_EQ(made.key.rfind("amq_", 0), 0u);
  EXPECT_EQ(made.key.size(), 4u + 43u);
  EXPECT_EQ(made.info.expires_ms, env.now_ms() + 30LL * 86'400'000);

  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string text = slurp(path);
  EXPECT_EQ(text.find(made.key), std::string::npos);
  EXPECT_EQ(text.find(made.key.substr(4)), std::string::npos);
  EXPECT_NE(text.find(security::to_hex(security::sha256(made.key))), std::string::npos);

  env.advance(120'000);
  Principal p = store->authenticate(made.key);
  EXPECT_EQ(p.kind, "apikey");
  EXPECT_EQ(p.name, "ci-producer");
  EXPECT_EQ(p.id(), "apikey:ci-producer");
  EXPECT_EQ(p.claims.at("role_hint"), std::vector<std::string>{"producer"});
  auto listed = store->list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].last_used_ms, env.now_ms());
  EXPECT_EQ(listed[0].id, made.info.id);

  // A second key of the same name is a conflict while the first lives.
  EXPECT_THROW(store->create("ci-producer", "", 0), Conflict);

  store->revoke(made.info.id);
  auto msg = refusal([&] { store->authenticate(made.key); });
  EXPECT_NE(msg.find("revoked"), std::string::npos) << msg;
  EXPECT_NE(msg.find(made.info.id), std::string::npos) << msg;
  EXPECT_EQ(msg.find(made.key), std::string::npos);
  EXPECT_TRUE(store->list()[0].revoked);
  EXPECT_THROW(store->revoke("k0000000000000000"), NotFound);
}

TEST(ApiKeys, RefusesUnknownMalformedAndExpired) {
  TempDir dir;
  FakeEnv env;
  auto store = ApiKeyStore::open(dir.file("keys.json"), env);
  NewApiKey made = store->create("short-lived", "", parse_duration_ms("1h"));

  // Same length and prefix, one character changed.
  std::string wrong = made.key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  auto msg = refusal([&] { store->authenticate(wrong); });
  EXPECT_NE(msg.find("unknown"), std::string::npos) << msg;
  EXPECT_EQ(msg.find(wrong), std::string::npos);

  msg = refusal([&] { store->authenticate("not-a-key"); });
  EXPECT_NE(msg.find("malformed"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("not-a-key"), std::string::npos);

  EXPECT_NO_THROW(store->authenticate(made.key));
  env.advance(3'600'000);
  msg = refusal([&] { store->authenticate(made.key); });
  EXPECT_NE(msg.find("expired"), std::string::npos) << msg;
}

TEST(ApiKeys, KeysAreDistinctAndHighEntropy) {
  TempDir dir;
  FakeEnv env;
  auto store = ApiKeyStore::open(dir.file("keys.json"), env);
  std::set<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.insert(store->create("k" + std::to_string(i), "", 0).key);
  EXPECT_EQ(keys.size(), 20u);
  for (const auto& k : keys) {
    auto raw = security::base64url_decode(k.substr(4));
    ASSERT_TRUE(raw);
    EXPECT_EQ(raw->size(), 32u);
  }
  // Each key authenticates as its own name.
  EXPECT_EQ(store->list().size(), 20u);
}

TEST(ApiKeys, RefusesAnUnsafeStoreFile) {
  TempDir dir;
  FakeEnv env;
  const std::string path = dir.file("keys.json");
  auto store = ApiKeyStore::open(path, env);
  store->create("a", "", 0);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  try {
    ApiKeyStore::open(path, env);
    FAIL() << "accepted a world-readable store";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), errc::permission_denied);
    EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos);
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  std::filesystem::create_symlink(path, dir.file("link.json"));
  EXPECT_THROW(ApiKeyStore::open(dir.file("link.json"), env), Error);
  // Malformed content: an error that does not quote the file.
  {
    std::ofstream(path, std::ios::trunc) << "{\"version\":1,\"keys\":[{\"id\":\"SECRETISH\"}]}";
  }
  try {
    ApiKeyStore::open(path, env);
    FAIL() << "accepted a malformed store";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()).find("SECRETISH"), std::string::npos) << e.what();
  }
}

TEST(ApiKeys, Durations) {
  EXPECT_EQ(parse_duration_ms("0"), 0);
  EXPECT_EQ(parse_duration_ms("never"), 0);
  EXPECT_EQ(parse_duration_ms("90s"), 90'000);
  EXPECT_EQ(parse_duration_ms("15m"), 900'000);
  EXPECT_EQ(parse_duration_ms("12h"), 43'200'000);
  EXPECT_EQ(parse_duration_ms("30d"), 2'592'000'000);
  for (const char* bad : {"", "d", "10", "10w", "-1d", "1.5h", "99999999999d"})
    EXPECT_THROW(parse_duration_ms(bad), InvalidArgument) << bad;
}

TEST(Base64Url, StrictDecoding) {
  using security::base64url_decode;
  using security::base64url_encode;
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"})
    EXPECT_EQ(base64url_decode(base64url_encode(s)), s);
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64url_decode("Zm9v="));   // padding
  EXPECT_FALSE(base64url_decode("Zm+v"));    // standard alphabet
  EXPECT_FALSE(base64url_decode("Zm9 v"));   // space
  EXPECT_FALSE(base64url_decode("Z"));       // 1 mod 4
  EXPECT_FALSE(base64url_decode("Zh"));      // non-zero trailing bits ("Zg" is canonical)
  EXPECT_TRUE(base64url_decode("Zg"));
}

}  // namespace
}  // namespace asyncmq::testing

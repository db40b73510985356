// Reloading the keyring without a restart: Keyring::reload and KeyWatch (the
// file watch and SIGHUP path of the CLI worker). Time is a FakeEnv: the
// watch's once-a-second check is driven by advancing the clock, never by
// waiting.
#include "security/crypto.hpp"
#include "security/key_watch.hpp"
#include "security/keyring.hpp"
#include "security/sealing_codec.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/security.hpp>

#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>

namespace asyncmq::testing {
namespace {

std::string b64(char c) { return security::base64_encode(std::string(32, c)); }

// Writes the key file atomically (as `asyncmq keys` does: a new inode).
void write_keys(const std::string& path, const std::string& text, mode_t mode = 0600) {
  const std::string tmp = path + ".new";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(::chmod(tmp.c_str(), mode), 0);
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

TEST(KeyringReload, ReplacesKeysAndStatesAtOnce) {
  TempDir dir;
  const std::string path = dir.file("keys");
  write_keys(path, "k1 primary " + b64('a') + "\n");
  auto ring = Keyring::load_file(path);
  EXPECT_EQ(ring->primary_id(), "k1");
  auto codec = make_sealing_codec(ring);
  JobId job;
  CodecContext ctx{"q", job, Field::payload};
  std::string sealed_k1 = codec->encode(ctx, "hello");

  write_keys(path, "k1 decrypt-only " + b64('a') + "\nk2 primary " + b64('b') +
                       " created=1700000000000\n");
  ring->reload();
  EXPECT_EQ(ring->primary_id(), "k2");
  EXPECT_EQ(codec->decode(ctx, sealed_k1), "hello");  // the old key still opens
  std::string sealed_k2 = codec->encode(ctx, "world");
  EXPECT_EQ(security::sealed_key_id(sealed_k2), "k2");
  auto keys = ring->list();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[1].created_ms, 1700000000000);
  // The counter of an unchanged key survives the reload.
  EXPECT_EQ(ring->messages_sealed("k1"), 1u);
}

TEST(KeyringReload, DisabledKeyStopsOpeningAfterReload) {
  TempDir dir;
  const std::string path = dir.file("keys");
  write_keys(path, "k1 primary " + b64('a') + "\n");
  auto ring = Keyring::load_file(path);
  auto codec = make_sealing_codec(ring);
  JobId job;
  CodecContext ctx{"q", job, Field::payload};
  std::string sealed = codec->encode(ctx, "x");
  write_keys(path, "k1 disabled " + b64('a') + "\nk2 primary " + b64('b') + "\n");
  ring->reload();
  EXPECT_THROW(codec->decode(ctx, sealed), IntegrityError);
}

TEST(KeyringReload, FailedReloadKeepsTheOldKeys) {
  TempDir dir;
  const std::string path = dir.file("keys");
  write_keys(path, "k1 primary " + b64('a') + "\n");
  auto ring = Keyring::load_file(path);

  write_keys(path, "k1 primary not-base64!\n");
  EXPECT_THROW(ring->reload(), KeyFileError);
  EXPECT_EQ(ring->primary_id(), "k1");

  write_keys(path, "k2 primary " + b64('b') + "\n", 0644);  // readable by others
  try {
    ring->reload();
    ADD_FAILURE() << "a world-readable key file was loaded";
  } catch (const KeyFileError& e) {
    EXPECT_EQ(e.kind(), errc::permission_denied);
    EXPECT_EQ(std::string(e.what()).find(b64('b')), std::string::npos);
  }
  EXPECT_EQ(ring->primary_id(), "k1");
  ASSERT_EQ(ring->list().size(), 1u);

  auto parsed = Keyring::parse("k1 primary " + b64('a'), "text");
  EXPECT_THROW(parsed->reload(), KeyFileError);  // no source to reload from
}

// A key file with k1 primary, its ring and a watch checking once a second.
class KeyWatchTest : public ::testing::Test {
 protected:
  KeyWatchTest() {
    write_keys(path, "k1 primary " + b64('a') + "\n");
    ring = Keyring::load_file(path);
    watch = std::make_unique<security::KeyWatch>(ring, env, 1000);
  }
  TempDir dir;
  FakeEnv env;
  const std::string path = dir.file("keys");
  std::shared_ptr<Keyring> ring;
  std::unique_ptr<security::KeyWatch> watch;
};

TEST_F(KeyWatchTest, ReloadsOnChangeAtMostOncePerInterval) {

  EXPECT_FALSE(watch->poll());  // nothing changed, and too early anyway
  write_keys(path, "k1 decrypt-only " + b64('a') + "\nk2 primary " + b64('b') + "\n");
  env.advance(999);
  EXPECT_FALSE(watch->poll());  // changed, but checked at most once a second
  EXPECT_EQ(ring->primary_id(), "k1");
  env.advance(1);
  EXPECT_TRUE(watch->poll());
  EXPECT_EQ(ring->primary_id(), "k2");
  env.advance(1000);
  EXPECT_FALSE(watch->poll());  // unchanged since
  EXPECT_EQ(watch->reloads(), 1u);
}

TEST_F(KeyWatchTest, BrokenFileIsReportedOnceAndTheOldKeysStay) {

  write_keys(path, "k2 primary " + b64('b') + "\n", 0640);
  env.advance(1000);
  EXPECT_FALSE(watch->poll());
  EXPECT_EQ(watch->failures(), 1u);
  EXPECT_EQ(ring->primary_id(), "k1");
  env.advance(1000);
  EXPECT_FALSE(watch->poll());
  EXPECT_EQ(watch->failures(), 1u);  // the same broken state: not again

  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);  // fixed: the ctime changes
  env.advance(1000);
  EXPECT_TRUE(watch->poll());
  EXPECT_EQ(ring->primary_id(), "k2");
}

TEST_F(KeyWatchTest, RunLoopPicksUpAChangeThroughEnvTime) {
  auto stop = std::make_shared<std::atomic<bool>>(false);
  boost::asio::io_context io;
  bool finished = false;
  boost::asio::co_spawn(io, watch->run(stop), [&](std::exception_ptr) { finished = true; });
  write_keys(path, "k2 primary " + b64('b') + "\n");
  EXPECT_TRUE(run_until(io, env, [&] { return ring->primary_id() == "k2"; }));
  stop->store(true);
  EXPECT_TRUE(run_until(io, env, [&] { return finished; }));
  EXPECT_EQ(watch->reloads(), 1u);
}

TEST_F(KeyWatchTest, ReloadNowIsTheSighupPath) {
  write_keys(path, "k2 primary " + b64('b') + "\n");
  EXPECT_TRUE(watch->reload_now("SIGHUP"));  // no waiting for the interval
  EXPECT_EQ(ring->primary_id(), "k2");
  ::unlink(path.c_str());
  EXPECT_FALSE(watch->reload_now("SIGHUP"));
  EXPECT_EQ(ring->primary_id(), "k2");
}

}  // namespace
}  // namespace asyncmq::testing

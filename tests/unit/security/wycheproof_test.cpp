// Project Wycheproof vectors for the OpenSSL wrappers: every applicable
// `valid` case must match and every `invalid` case must be refused. Runs
// when ../shared/testvectors/wycheproof/ exists next to the source tree,
// otherwise skips with a message. Prints per-file counts.
//
// AES-GCM: the API supports exactly AES-256 with 96-bit nonces and 128-bit
// tags (see src/security/crypto.hpp). Cases with other key, nonce or tag
// sizes are outside it: an `invalid` one must still be refused (the API's
// length checks throw InvalidArgument); a `valid` one is skipped and
// counted. HMAC-SHA-256: every case applies (any key length); truncated
// tags are checked as the prefix of the full MAC, compared in constant time.
#include "security/crypto.hpp"

#include <asyncmq/error.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

namespace asyncmq::security {
namespace {

const std::filesystem::path kDir = ASYNCMQ_SOURCE_DIR "/../shared/testvectors/wycheproof";

std::optional<boost::json::value> load(const std::string& name) {
  std::filesystem::path p = kDir / name;
  if (!std::filesystem::exists(p)) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return boost::json::parse(ss.str());
}

std::string field(const boost::json::object& t, const char* name) {
  return from_hex(std::string(t.at(name).as_string()));
}

TEST(WycheproofGcm, AesGcmTestJson) {
  auto doc = load("aes_gcm_test.json");
  if (!doc) GTEST_SKIP() << "no Wycheproof vectors at " << kDir.string();
  int total = 0, valid_ok = 0, invalid_refused = 0, acceptable = 0;
  int refused_by_params = 0, skipped_valid = 0, failed = 0;
  // Every applicable case also goes through a GcmKey (one per key, kept for
  // the whole file, so contexts are reused across cases that share a key):
  // it must agree with the one-shot functions.
  std::map<std::string, std::unique_ptr<GcmKey>> prepared;
  for (const auto& g : doc->at("testGroups").as_array()) {
    for (const auto& tv : g.at("tests").as_array()) {
      const auto& t = tv.as_object();
      ++total;
      const std::string result(t.at("result").as_string());
      const std::string key = field(t, "key"), iv = field(t, "iv"), aad = field(t, "aad"),
                        msg = field(t, "msg"), ct = field(t, "ct"), tag = field(t, "tag");
      const auto id = t.at("tcId").as_int64();
      SCOPED_TRACE("tcId " + std::to_string(id));
      const bool applicable =
          key.size() == kAes256KeyBytes && iv.size() == kGcmNonceBytes && tag.size() == kGcmTagBytes;
      if (!applicable) {
        if (result == "invalid") {
          bool refused = false;
          try {
            refused = !aes256_gcm_open(key, iv, aad, ct, tag).has_value();
          } catch (const InvalidArgument&) {
            refused = true;
          }
          EXPECT_TRUE(refused);
          if (refused) ++refused_by_params; else ++failed;
        } else {
          ++skipped_valid;
          // Still outside the API: sealing must refuse these parameters.
          EXPECT_THROW(aes256_gcm_seal(key, iv, aad, msg), InvalidArgument);
        }
        continue;
      }
      auto opened = aes256_gcm_open(key, iv, aad, ct, tag);
      auto& gk = prepared[key];
      if (!gk) gk = std::make_unique<GcmKey>(key);
      std::string gk_plain;
      const bool gk_opened = gk->open(iv, aad, ct, tag, gk_plain);
      if (gk_opened != opened.has_value() || (gk_opened && gk_plain != *opened)) {
        ADD_FAILURE() << "GcmKey::open disagrees with aes256_gcm_open";
        ++failed;
        continue;
      }
      if (result == "valid") {
        GcmSealed s = aes256_gcm_seal(key, iv, aad, msg);
        std::string gk_sealed;
        gk->seal(iv, aad, msg, gk_sealed);
        bool ok = opened && *opened == msg && s.ciphertext == ct && s.tag == tag &&
                  gk_sealed == ct + tag;
        EXPECT_TRUE(ok);
        if (ok) ++valid_ok; else ++failed;
      } else if (result == "invalid") {
        EXPECT_FALSE(opened.has_value());
        if (!opened) ++invalid_refused; else ++failed;
      } else {
        // acceptable: either outcome, but an open must give the message.
        bool ok = !opened || *opened == msg;
        EXPECT_TRUE(ok);
        if (ok) ++acceptable; else ++failed;
      }
    }
  }
  std::printf(
      "[wycheproof] aes_gcm_test.json: %d cases; passed %d (valid matched %d, invalid refused "
      "%d, acceptable %d, invalid refused by parameter checks %d); skipped %d valid cases "
      "outside the API (key != 256 bits, IV != 96 bits or tag != 128 bits); failed %d\n",
      total, valid_ok + invalid_refused + acceptable + refused_by_params, valid_ok,
      invalid_refused, acceptable, refused_by_params, skipped_valid, failed);
  EXPECT_EQ(failed, 0);
  EXPECT_GT(valid_ok, 0);
  EXPECT_GT(invalid_refused, 0);
  EXPECT_EQ(total, static_cast<int>(doc->at("numberOfTests").as_int64()));
}

TEST(WycheproofHmac, HmacSha256TestJson) {
  auto doc = load("hmac_sha256_test.json");
  if (!doc) GTEST_SKIP() << "no Wycheproof vectors at " << kDir.string();
  int total = 0, valid_ok = 0, invalid_refused = 0, acceptable = 0, failed = 0;
  for (const auto& g : doc->at("testGroups").as_array()) {
    const auto tag_bytes = static_cast<std::size_t>(g.at("tagSize").as_int64() / 8);
    for (const auto& tv : g.at("tests").as_array()) {
      const auto& t = tv.as_object();
      ++total;
      const std::string result(t.at("result").as_string());
      const std::string key = field(t, "key"), msg = field(t, "msg"), tag = field(t, "tag");
      SCOPED_TRACE("tcId " + std::to_string(t.at("tcId").as_int64()));
      const std::string mac = hmac_sha256(key, msg);
      const bool match = tag.size() == tag_bytes && tag_bytes <= mac.size() &&
                         constant_time_equal(std::string_view(mac).substr(0, tag_bytes), tag);
      if (result == "valid") {
        EXPECT_TRUE(match);
        if (match) ++valid_ok; else ++failed;
      } else if (result == "invalid") {
        EXPECT_FALSE(match);
        if (!match) ++invalid_refused; else ++failed;
      } else {
        ++acceptable;
      }
    }
  }
  std::printf(
      "[wycheproof] hmac_sha256_test.json: %d cases; passed %d (valid matched %d, invalid "
      "refused %d, acceptable %d); skipped 0; failed %d\n",
      total, valid_ok + invalid_refused + acceptable, valid_ok, invalid_refused, acceptable,
      failed);
  EXPECT_EQ(failed, 0);
  EXPECT_GT(valid_ok, 0);
  EXPECT_EQ(total, static_cast<int>(doc->at("numberOfTests").as_int64()));
}

}  // namespace
}  // namespace asyncmq::security

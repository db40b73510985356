// The sealing codec: round trips, the envelope layout, tamper resistance
// (flipped bits, moved envelopes, wrong or disabled keys), rotation, and the
// blind index of data subjects.
#include "security/crypto.hpp"
#include "security/keyring.hpp"
#include "security/sealing_codec.hpp"

#include <asyncmq/error.hpp>
#include <asyncmq/security.hpp>

#include "support/fake_env.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace asyncmq::testing {
namespace {

using security::parse_envelope;

const std::string kPlain = R"({"patient":"Jane Roe","diagnosis":"MARKER-confidential"})";

class SealingCodecTest : public ::testing::Test {
 protected:
  SealingCodecTest() {
    ring_ = std::make_shared<Keyring>();
    ring_->add("ka", KeyState::primary, Secret(security::random_bytes(32)));
    ring_->add("kb", KeyState::decrypt_only, Secret(security::random_bytes(32)));
    ring_->set_index_key("ix", Secret(security::random_bytes(32)));
    codec_ = make_sealing_codec(ring_);
    job_ = JobId::generate(env_);
    other_job_ = JobId::generate(env_);
  }

  CodecContext ctx(Field f = Field::payload) { return {"q", job_, f}; }

  // Expects decode to throw IntegrityError naming the job and `key_id`
  // (empty: any) and never the plaintext.
  void expect_integrity(const CodecContext& c, const std::string& stored,
                        const std::string& key_id = "ka") {
    try {
      codec_->decode(c, stored);
      ADD_FAILURE() << "opened";
    } catch (const IntegrityError& e) {
      std::string what = e.what();
      EXPECT_EQ(e.kind(), errc::integrity);
      EXPECT_NE(what.find(c.job.str()), std::string::npos) << what;
      if (!key_id.empty()) {
        EXPECT_NE(what.find("key '" + key_id + "'"), std::string::npos) << what;
      }
      EXPECT_EQ(what.find("MARKER"), std::string::npos) << what;
      EXPECT_EQ(what.find("Jane"), std::string::npos) << what;
    }
  }

  static std::string flip(std::string s, std::size_t byte, int bit = 0) {
    s[byte] = static_cast<char>(s[byte] ^ (1 << bit));
    return s;
  }

  FakeEnv env_;
  std::shared_ptr<Keyring> ring_;
  std::shared_ptr<Codec> codec_;
  JobId job_, other_job_;
};

TEST_F(SealingCodecTest, RoundTripsEveryFieldAndHidesThePlaintext) {
  for (Field f : {Field::payload, Field::result, Field::error}) {
    std::string stored = codec_->encode(ctx(f), kPlain);
    EXPECT_EQ(stored.find("MARKER"), std::string::npos);
    EXPECT_EQ(stored.find("Jane"), std::string::npos);
    EXPECT_EQ(codec_->decode(ctx(f), stored), kPlain);
  }
  std::string empty = codec_->encode(ctx(), "");
  EXPECT_EQ(codec_->decode(ctx(), empty), "");
  std::string binary("\0\1\2\xff", 4);
  EXPECT_EQ(codec_->decode(ctx(), codec_->encode(ctx(), binary)), binary);
}

TEST_F(SealingCodecTest, EnvelopeLayoutIsDocumented) {
  std::string stored = codec_->encode(ctx(), kPlain);
  // version, key id length, key id, nonce, ciphertext, tag
  ASSERT_EQ(stored.size(), 1 + 1 + 2 + 12 + kPlain.size() + 16);
  EXPECT_EQ(stored[0], '\x01');
  EXPECT_EQ(stored[1], '\x02');
  EXPECT_EQ(stored.substr(2, 2), "ka");
  auto env = parse_envelope(stored);
  ASSERT_TRUE(env);
  EXPECT_EQ(env->version, 1);
  EXPECT_EQ(env->key_id, "ka");
  EXPECT_EQ(env->nonce.size(), 12u);
  EXPECT_EQ(env->ciphertext.size(), kPlain.size());
  EXPECT_EQ(env->tag.size(), 16u);
}

TEST_F(SealingCodecTest, SealingTheSameValueTwiceUsesFreshNonces) {
  std::string a = codec_->encode(ctx(), kPlain), b = codec_->encode(ctx(), kPlain);
  EXPECT_NE(parse_envelope(a)->nonce, parse_envelope(b)->nonce);
  EXPECT_NE(a, b);
  EXPECT_EQ(ring_->messages_sealed("ka"), 2u);
}

TEST_F(SealingCodecTest, FlippedBitInCiphertextTagNonceOrHeaderIsRefused) {
  const std::string stored = codec_->encode(ctx(), kPlain);
  const std::size_t nonce_at = 4, ct_at = 16, tag_at = stored.size() - 16;
  for (int bit = 0; bit < 8; ++bit) {
    expect_integrity(ctx(), flip(stored, ct_at, bit));
    expect_integrity(ctx(), flip(stored, ct_at + kPlain.size() - 1, bit));
    expect_integrity(ctx(), flip(stored, tag_at, bit));
    expect_integrity(ctx(), flip(stored, stored.size() - 1, bit));
    expect_integrity(ctx(), flip(stored, nonce_at, bit));
    expect_integrity(ctx(), flip(stored, nonce_at + 11, bit));
  }
  // Every single-bit flip anywhere in the envelope.
  for (std::size_t bit = 0; bit < stored.size() * 8; ++bit)
    EXPECT_THROW(codec_->decode(ctx(), flip(stored, bit / 8, static_cast<int>(bit % 8))),
                 IntegrityError)
        << "bit " << bit;
  // Version byte changed: refused before any key is used.
  expect_integrity(ctx(), flip(stored, 0, 1));
}

TEST_F(SealingCodecTest, TruncatedOrPlainStoredBytesAreRefused) {
  const std::string stored = codec_->encode(ctx(), kPlain);
  expect_integrity(ctx(), stored.substr(0, stored.size() - 1));
  expect_integrity(ctx(), stored.substr(0, 20), "");
  expect_integrity(ctx(), "", "");
  expect_integrity(ctx(), R"({"plain":"json written before sealing"})", "");
  expect_integrity(ctx(), stored + "x");
}

TEST_F(SealingCodecTest, EnvelopeMovedToAnotherJobIsRefused) {
  const std::string stored = codec_->encode(ctx(), kPlain);
  expect_integrity({"q", other_job_, Field::payload}, stored);
}

TEST_F(SealingCodecTest, EnvelopeMovedToAnotherFieldIsRefused) {
  const std::string stored = codec_->encode(ctx(Field::payload), kPlain);
  expect_integrity(ctx(Field::result), stored);
  expect_integrity(ctx(Field::error), stored);
  const std::string result = codec_->encode(ctx(Field::result), kPlain);
  expect_integrity(ctx(Field::payload), result);
}

TEST_F(SealingCodecTest, EnvelopeMovedToAnotherQueueIsRefused) {
  const std::string stored = codec_->encode(ctx(), kPlain);
  expect_integrity({"q2", job_, Field::payload}, stored);
  expect_integrity({"", job_, Field::payload}, stored);
}

TEST_F(SealingCodecTest, WrongKeyIdIsRefused) {
  std::string stored = codec_->encode(ctx(), kPlain);
  // Relabelled to another key that exists: the wrong key, and the header is
  // authenticated too.
  std::string relabelled = stored;
  relabelled[3] = 'b';
  expect_integrity(ctx(), relabelled, "kb");
  // Relabelled to a key the ring does not hold.
  std::string unknown = stored;
  unknown[3] = 'z';
  try {
    codec_->decode(ctx(), unknown);
    ADD_FAILURE() << "opened";
  } catch (const IntegrityError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'kz'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unknown or disabled"), std::string::npos) << e.what();
  }
  // A key id with bytes outside the id alphabet is not echoed.
  std::string hostile = stored;
  hostile[3] = '\n';
  expect_integrity(ctx(), hostile, "");
}

TEST_F(SealingCodecTest, DisabledKeyIsRefused) {
  const std::string stored = codec_->encode(ctx(), kPlain);
  ring_->add("kc", KeyState::primary, Secret(security::random_bytes(32)));
  ring_->set_state("ka", KeyState::disabled);
  expect_integrity(ctx(), stored, "ka");
  ring_->set_state("ka", KeyState::decrypt_only);
  EXPECT_EQ(codec_->decode(ctx(), stored), kPlain);
}

TEST_F(SealingCodecTest, RotationKeepsOldJobsReadable) {
  const std::string under_a = codec_->encode(ctx(), kPlain);
  ring_->add("kn", KeyState::primary, Secret(security::random_bytes(32)));
  EXPECT_EQ(ring_->list()[0].state, KeyState::decrypt_only);  // ka demoted
  const std::string under_n = codec_->encode(ctx(), kPlain);
  EXPECT_EQ(parse_envelope(under_n)->key_id, "kn");
  EXPECT_EQ(codec_->decode(ctx(), under_a), kPlain);
  EXPECT_EQ(codec_->decode(ctx(), under_n), kPlain);
  // Activating an existing decrypt-only key works the same way.
  ring_->activate("kb");
  EXPECT_EQ(parse_envelope(codec_->encode(ctx(), kPlain))->key_id, "kb");
  EXPECT_EQ(codec_->decode(ctx(), under_n), kPlain);
}

TEST_F(SealingCodecTest, NoPrimaryKeyRefusesToSeal) {
  ring_->set_state("ka", KeyState::decrypt_only);
  EXPECT_THROW(codec_->encode(ctx(), kPlain), InvalidArgument);
  EXPECT_THROW(make_sealing_codec(nullptr), InvalidArgument);
}

TEST_F(SealingCodecTest, SubjectIsStoredAsBlindIndex) {
  std::string a = codec_->encode_subject("patient-12345");
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(a.find("12345"), std::string::npos);
  EXPECT_EQ(codec_->encode_subject("patient-12345"), a);  // deterministic
  EXPECT_NE(codec_->encode_subject("patient-12346"), a);
  // The documented construction.
  auto key = security::KeyringAccess::index_key(*ring_);
  EXPECT_EQ(a, security::to_hex(security::hmac_sha256(key->material.reveal(),
                                                      "asyncmq.subject.v1patient-12345")));
  // Another index key gives another index.
  auto other = std::make_shared<Keyring>();
  other->add("ka", KeyState::primary, Secret(security::random_bytes(32)));
  other->set_index_key("ix", Secret(security::random_bytes(32)));
  EXPECT_NE(make_sealing_codec(other)->encode_subject("patient-12345"), a);
}

TEST_F(SealingCodecTest, NoIndexKeyRefusesSubjects) {
  auto ring = std::make_shared<Keyring>();
  ring->add("ka", KeyState::primary, Secret(security::random_bytes(32)));
  EXPECT_THROW(make_sealing_codec(ring)->encode_subject("patient-1"), InvalidArgument);
}

TEST_F(SealingCodecTest, ConcurrentSealAndOpen) {
  constexpr int kThreads = 4, kEach = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string plain = "job " + std::to_string(t) + "/" + std::to_string(i);
        if (codec_->decode(ctx(), codec_->encode(ctx(), plain)) != plain) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ring_->messages_sealed("ka"), static_cast<std::uint64_t>(kThreads * kEach));
}

}  // namespace
}  // namespace asyncmq::testing

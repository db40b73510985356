// Known-answer tests for the OpenSSL wrappers in src/security/crypto.hpp,
// from the specifications; they always run.
//   - AES-256-GCM: Test Cases 13-16 of McGrew & Viega, "The Galois/Counter
//     Mode of Operation (GCM)", the AES-256 vectors NIST's GCM page points to.
//   - HMAC-SHA-256: RFC 4231 test cases 1-7 (case 5 truncated to 128 bits).
#include "security/crypto.hpp"

#include <asyncmq/error.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace asyncmq::security {
namespace {

std::string h(std::string_view hex) { return from_hex(hex); }

struct GcmVector {
  const char* name;
  const char* key;
  const char* iv;
  const char* plain;
  const char* aad;
  const char* ct;
  const char* tag;
};

const std::string kK15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const std::string kP15 =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const std::string kC15 =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

std::vector<GcmVector> gcm_vectors() {
  static const std::string p16 = kP15.substr(0, 120), c16 = kC15.substr(0, 120);
  return {
      {"TestCase13", "0000000000000000000000000000000000000000000000000000000000000000",
       "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
      {"TestCase14", "0000000000000000000000000000000000000000000000000000000000000000",
       "000000000000000000000000", "00000000000000000000000000000000", "",
       "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
      {"TestCase15", kK15.c_str(), "cafebabefacedbaddecaf888", kP15.c_str(), "", kC15.c_str(),
       "b094dac5d93471bdec1a502270e3cc6c"},
      {"TestCase16", kK15.c_str(), "cafebabefacedbaddecaf888", p16.c_str(),
       "feedfacedeadbeeffeedfacedeadbeefabaddad2", c16.c_str(),
       "76fc6ece0f4e1768cddf8853bb2d551b"},
  };
}

TEST(CryptoGcmKat, McGrewViegaTestCases13To16Seal) {
  for (const auto& v : gcm_vectors()) {
    SCOPED_TRACE(v.name);
    GcmSealed s = aes256_gcm_seal(h(v.key), h(v.iv), h(v.aad), h(v.plain));
    EXPECT_EQ(to_hex(s.ciphertext), v.ct);
    EXPECT_EQ(to_hex(s.tag), v.tag);
  }
}

TEST(CryptoGcmKat, McGrewViegaTestCases13To16Open) {
  for (const auto& v : gcm_vectors()) {
    SCOPED_TRACE(v.name);
    auto plain = aes256_gcm_open(h(v.key), h(v.iv), h(v.aad), h(v.ct), h(v.tag));
    ASSERT_TRUE(plain.has_value());
    EXPECT_EQ(to_hex(*plain), v.plain);
  }
}

TEST(CryptoGcmKat, EveryFlippedBitIsRefused) {
  const auto v = gcm_vectors()[3];  // has plaintext and aad
  const std::string key = h(v.key), iv = h(v.iv), aad = h(v.aad), ct = h(v.ct), tag = h(v.tag);
  auto flip_each = [&](std::string base, auto open_with) {
    for (std::size_t bit = 0; bit < base.size() * 8; ++bit) {
      std::string x = base;
      x[bit / 8] = static_cast<char>(x[bit / 8] ^ (1 << (bit % 8)));
      EXPECT_FALSE(open_with(x).has_value()) << "bit " << bit;
    }
  };
  flip_each(ct, [&](const std::string& x) { return aes256_gcm_open(key, iv, aad, x, tag); });
  flip_each(tag, [&](const std::string& x) { return aes256_gcm_open(key, iv, aad, ct, x); });
  flip_each(iv, [&](const std::string& x) { return aes256_gcm_open(key, x, aad, ct, tag); });
  flip_each(aad, [&](const std::string& x) { return aes256_gcm_open(key, iv, x, ct, tag); });
  flip_each(key, [&](const std::string& x) { return aes256_gcm_open(x, iv, aad, ct, tag); });
}

TEST(CryptoGcm, RefusesWrongLengths) {
  const std::string key(32, 'k'), iv(12, 'n'), tag(16, 't');
  EXPECT_THROW(aes256_gcm_seal(std::string(16, 'k'), iv, "", "x"), InvalidArgument);
  EXPECT_THROW(aes256_gcm_seal(key, std::string(16, 'n'), "", "x"), InvalidArgument);
  EXPECT_THROW(aes256_gcm_seal(key, "", "", "x"), InvalidArgument);
  EXPECT_THROW(aes256_gcm_open(key, iv, "", "x", std::string(12, 't')), InvalidArgument);
  EXPECT_THROW(aes256_gcm_open(key, std::string(8, 'n'), "", "x", tag), InvalidArgument);
}

TEST(CryptoGcm, RoundTripsBinaryAndLargeData) {
  const std::string key = random_bytes(32);
  std::string plain(100'000, '\0');
  for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<char>(i * 131);
  const std::string nonce = random_gcm_nonce();
  GcmSealed s = aes256_gcm_seal(key, nonce, std::string("a\0d", 3), plain);
  EXPECT_NE(s.ciphertext, plain);
  auto back = aes256_gcm_open(key, nonce, std::string("a\0d", 3), s.ciphertext, s.tag);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, plain);
  EXPECT_FALSE(aes256_gcm_open(key, nonce, "a", s.ciphertext, s.tag));
}

// GcmKey keeps keyed contexts and reuses them: every result must be what a
// fresh context gives, whatever ran on the reused context before (seals,
// opens, refused opens, other lengths).
TEST(CryptoGcmKey, MatchesFreshContextsAcrossReuse) {
  for (const auto& v : gcm_vectors()) {
    SCOPED_TRACE(v.name);
    GcmKey k(h(v.key));
    for (int round = 0; round < 3; ++round) {
      std::string out = "prefix";
      k.seal(h(v.iv), h(v.aad), h(v.plain), out);
      EXPECT_EQ(to_hex(out), to_hex("prefix") + v.ct + v.tag);
      std::string plain = "stale";
      ASSERT_TRUE(k.open(h(v.iv), h(v.aad), h(v.ct), h(v.tag), plain));
      EXPECT_EQ(to_hex(plain), v.plain);
      std::string bad_tag = h(v.tag);
      bad_tag[0] ^= 1;
      EXPECT_FALSE(k.open(h(v.iv), h(v.aad), h(v.ct), bad_tag, plain));
      EXPECT_EQ(plain, "");
    }
  }
  const std::string key = random_bytes(32);
  GcmKey k(key);
  for (std::size_t n : {0, 1, 15, 16, 17, 63, 64, 65, 255, 1024, 4097}) {
    SCOPED_TRACE(n);
    const std::string plain = random_bytes(n), aad = random_bytes(n % 70), nonce = random_gcm_nonce();
    GcmSealed fresh = aes256_gcm_seal(key, nonce, aad, plain);
    std::string out;
    k.seal(nonce, aad, plain, out);
    EXPECT_EQ(out, fresh.ciphertext + fresh.tag);
    std::string back;
    EXPECT_FALSE(k.open(nonce, aad + "x", fresh.ciphertext, fresh.tag, back));
    ASSERT_TRUE(k.open(nonce, aad, fresh.ciphertext, fresh.tag, back));
    EXPECT_EQ(back, plain);
    auto other = aes256_gcm_open(key, nonce, aad, out.substr(0, n), out.substr(n));
    ASSERT_TRUE(other);
    EXPECT_EQ(*other, plain);
  }
  std::string out;
  EXPECT_THROW(k.seal(std::string(16, 'n'), "", "x", out), InvalidArgument);
  EXPECT_THROW(k.open(std::string(12, 'n'), "", "x", std::string(12, 't'), out), InvalidArgument);
  EXPECT_THROW(GcmKey(std::string(16, 'k')), InvalidArgument);
}

// Several threads on one key at once, each with its own nonces: every
// envelope opens, and each equals what a fresh context makes.
TEST(CryptoGcmKey, ConcurrentUse) {
  const std::string key = random_bytes(32);
  GcmKey k(key);
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string plain(static_cast<std::size_t>(i * 7 % 300), static_cast<char>('a' + t));
        const std::string nonce = random_gcm_nonce(), aad = "thread" + std::to_string(t);
        std::string sealed, back;
        k.seal(nonce, aad, plain, sealed);
        GcmSealed fresh = aes256_gcm_seal(key, nonce, aad, plain);
        if (sealed != fresh.ciphertext + fresh.tag) ++failures[t];
        if (!k.open(nonce, aad, fresh.ciphertext, fresh.tag, back) || back != plain) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

// A thread finds its context of a key by the key's serial number. A key
// made where a destroyed one lived (the allocator hands the same address
// back) must get a context of its own: one keyed with the old key would
// seal under the wrong key, and the old one is freed (ASan would see it used).
TEST(CryptoGcmKey, KeyMadeAfterAnotherWasDestroyedUsesItsOwnKey) {
  const std::string nonce = random_gcm_nonce(), aad = "aad", plain = "payload";
  for (int round = 0; round < 20; ++round) {
    const std::string key = random_bytes(32);
    auto k = std::make_unique<GcmKey>(key);
    std::string out;
    k->seal(nonce, aad, plain, out);
    GcmSealed fresh = aes256_gcm_seal(key, nonce, aad, plain);
    ASSERT_EQ(out, fresh.ciphertext + fresh.tag) << "round " << round;
    std::string back;
    ASSERT_TRUE(k->open(nonce, aad, fresh.ciphertext, fresh.tag, back));
    EXPECT_EQ(back, plain);
  }
}

// One thread going round more keys than it keeps contexts for, back to the
// first ones (their contexts were evicted from its table), with refused
// opens in between: every result is the fresh-context one.
TEST(CryptoGcmKey, ThreadUsingManyKeysInTurn) {
  std::vector<std::string> keys;
  std::vector<std::unique_ptr<GcmKey>> prepared;
  for (int i = 0; i < 20; ++i) {
    keys.push_back(random_bytes(32));
    prepared.push_back(std::make_unique<GcmKey>(keys.back()));
  }
  for (int pass = 0; pass < 3; ++pass) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      SCOPED_TRACE("pass " + std::to_string(pass) + " key " + std::to_string(i));
      const std::string nonce = random_gcm_nonce(), aad = "a" + std::to_string(i),
                        plain = random_bytes(i * 13);
      std::string out;
      prepared[i]->seal(nonce, aad, plain, out);
      GcmSealed fresh = aes256_gcm_seal(keys[i], nonce, aad, plain);
      EXPECT_EQ(out, fresh.ciphertext + fresh.tag);
      std::string back;
      EXPECT_FALSE(prepared[i]->open(nonce, aad + "x", fresh.ciphertext, fresh.tag, back));
      ASSERT_TRUE(prepared[i]->open(nonce, aad, fresh.ciphertext, fresh.tag, back));
      EXPECT_EQ(back, plain);
    }
  }
}

// More threads than a key gives contexts of their own: the rest seal and
// open on a copy per call, with the same results.
TEST(CryptoGcmKey, MoreThreadsThanThreadContexts) {
  const std::string key = random_bytes(32);
  GcmKey k(key);
  const std::size_t n = GcmKey::kMaxThreadContexts + 8;
  std::vector<int> failures(n, 0);
  for (std::size_t t = 0; t < n; ++t) {
    // One after another: each thread ends before the next starts, so all of
    // them are distinct threads without n running at once.
    std::thread([&, t] {
      for (int i = 0; i < 3; ++i) {
        const std::string nonce = random_gcm_nonce(), aad = "t" + std::to_string(t),
                          plain(static_cast<std::size_t>(t + i), 'p');
        std::string sealed, back;
        k.seal(nonce, aad, plain, sealed);
        GcmSealed fresh = aes256_gcm_seal(key, nonce, aad, plain);
        if (sealed != fresh.ciphertext + fresh.tag) ++failures[t];
        if (!k.open(nonce, aad, fresh.ciphertext, fresh.tag, back) || back != plain) ++failures[t];
      }
    }).join();
  }
  EXPECT_EQ(failures, std::vector<int>(n, 0));
}

TEST(CryptoRandom, NoncesDiffer) {
  EXPECT_EQ(random_gcm_nonce().size(), kGcmNonceBytes);
  EXPECT_NE(random_gcm_nonce(), random_gcm_nonce());
  EXPECT_EQ(random_bytes(0), "");
  // Across several refills of a thread's block of 256.
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    std::string n = random_gcm_nonce();
    ASSERT_EQ(n.size(), kGcmNonceBytes);
    EXPECT_TRUE(seen.insert(n).second) << "nonce " << i << " repeated";
  }
}

// A forked child must not hand out the nonces its parent drew but has not
// used yet: both would seal under the same key with the same nonce.
TEST(CryptoRandom, ForkedChildDrawsItsOwnNonces) {
  random_gcm_nonce();  // this thread now holds a block
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string n = random_gcm_nonce();
    ssize_t w = ::write(fds[1], n.data(), n.size());
    ::_exit(w == static_cast<ssize_t>(n.size()) ? 0 : 1);
  }
  ::close(fds[1]);
  std::string mine = random_gcm_nonce();
  std::string child(kGcmNonceBytes, '\0');
  ssize_t got = ::read(fds[0], child.data(), child.size());
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_EQ(got, static_cast<ssize_t>(kGcmNonceBytes));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(child, mine);
}

struct HmacVector {
  const char* name;
  std::string key;
  std::string data;
  const char* mac;  // may be truncated (case 5)
};

std::vector<HmacVector> rfc4231() {
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4.push_back(static_cast<char>(i));
  return {
      {"RFC4231 case 1", std::string(20, '\x0b'), "Hi There",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"RFC4231 case 2", "Jefe", "what do ya want for nothing?",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {"RFC4231 case 3", std::string(20, '\xaa'), std::string(50, '\xdd'),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {"RFC4231 case 4", key4, std::string(50, '\xcd'),
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {"RFC4231 case 5", std::string(20, '\x0c'), "Test With Truncation",
       "a3b6167473100ee06e0c796c2955552b"},
      {"RFC4231 case 6", std::string(131, '\xaa'),
       "Test Using Larger Than Block-Size Key - Hash Key First",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {"RFC4231 case 7", std::string(131, '\xaa'),
       "This is a test using a larger than block-size key and a larger than block-size "
       "data. The key needs to be hashed before being used by the HMAC algorithm.",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
}

TEST(CryptoHmacKat, Rfc4231Cases1To7) {
  for (const auto& v : rfc4231()) {
    SCOPED_TRACE(v.name);
    std::string mac = to_hex(hmac_sha256(v.key, v.data));
    ASSERT_EQ(mac.size(), 64u);
    std::string want = v.mac;
    EXPECT_EQ(mac.substr(0, want.size()), want);
  }
}

// A keyed HmacSha256 restarts its context per message: the same message
// twice, and different messages interleaved, give the one-shot results.
TEST(CryptoHmacKat, KeyedContextReusedAcrossMessages) {
  for (const auto& v : rfc4231()) {
    SCOPED_TRACE(v.name);
    HmacSha256 mac(v.key);
    const std::string want = to_hex(hmac_sha256(v.key, v.data));
    EXPECT_EQ(to_hex(mac.mac(v.data)), want);
    EXPECT_EQ(to_hex(mac.mac("other")), to_hex(hmac_sha256(v.key, "other")));
    EXPECT_EQ(to_hex(mac.mac(v.data)), want);
    EXPECT_EQ(to_hex(mac.mac(v.data)).substr(0, std::string(v.mac).size()), v.mac);
    HmacSha256 moved = std::move(mac);
    EXPECT_EQ(to_hex(moved.mac(v.data)), want);
    EXPECT_THROW(mac.mac(v.data), InvalidArgument);  // NOLINT(bugprone-use-after-move)
  }
}

TEST(CryptoHmac, EmptyKeyAndMessage) {
  // HMAC-SHA256("", "") — a well-known value.
  EXPECT_EQ(to_hex(hmac_sha256("", "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(CryptoCompare, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
}

TEST(CryptoWipe, SecureWipeZeroes) {
  std::string s = "secret-bytes";
  secure_wipe(s);
  EXPECT_EQ(s, std::string(12, '\0'));
}

TEST(CryptoEncoding, HexAndBase64) {
  EXPECT_EQ(to_hex(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(from_hex("00FF10"), std::string("\x00\xff\x10", 3));
  EXPECT_THROW(from_hex("0"), InvalidArgument);
  EXPECT_THROW(from_hex("zz"), InvalidArgument);
  // RFC 4648 section 10.
  const char* cases[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                            {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                            {"foobar", "Zm9vYmFy"}};
  for (auto& c : cases) {
    EXPECT_EQ(base64_encode(c[0]), c[1]);
    EXPECT_EQ(base64_decode(c[1]), c[0]);
  }
  EXPECT_THROW(base64_decode("Zm9"), InvalidArgument);
  EXPECT_THROW(base64_decode("Zm9v YmFy"), InvalidArgument);
  EXPECT_THROW(base64_decode("Zm=v"), InvalidArgument);
  EXPECT_THROW(base64_decode("Zm9*"), InvalidArgument);
}

}  // namespace
}  // namespace asyncmq::security

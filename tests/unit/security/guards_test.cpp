// Payload guards: the card-number finder, the single-pass JSON checker and
// the guarded codec at the seam.
#include <asyncmq/client.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>

#include "security/guards.hpp"
#include "security/policy_internal.hpp"
#include "support/fake_env.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

namespace asyncmq {
namespace {

using security::contains_card_number;
using security::find_card_numbers;
using security::luhn_valid;

// Runs check_payload and returns the refusal (rule, path, message), or
// empty strings if accepted.
struct Outcome {
  std::string rule, path, message;
};
Outcome check(std::string_view json, GuardLimits limits = {}) {
  try {
    check_payload(limits, "q", json);
  } catch (const GuardRefused& e) {
    EXPECT_EQ(e.kind(), errc::guard_refused);
    EXPECT_TRUE(is_invalid_input(e.code()));
    return {e.rule(), e.path(), e.what()};
  }
  return {};
}

TEST(Luhn, KnownNumbers) {
  EXPECT_TRUE(luhn_valid("4111111111111111"));
  EXPECT_TRUE(luhn_valid("5555555555554444"));
  EXPECT_TRUE(luhn_valid("378282246310005"));
  EXPECT_TRUE(luhn_valid("79927398713"));
  EXPECT_FALSE(luhn_valid("4111111111111112"));
  EXPECT_FALSE(luhn_valid("79927398710"));
  EXPECT_FALSE(luhn_valid(""));
  EXPECT_FALSE(luhn_valid("4111x"));
}

TEST(CardNumbers, FoundWithSeparatorsAndAtAnyLength13To19) {
  EXPECT_TRUE(contains_card_number("4111111111111111"));
  EXPECT_TRUE(contains_card_number("card 4111 1111 1111 1111 exp"));
  EXPECT_TRUE(contains_card_number("4111-1111-1111-1111"));
  EXPECT_TRUE(contains_card_number("pan=4111111111111111;"));
  EXPECT_TRUE(contains_card_number("378282246310005"));     // 15 digits (Amex)
  EXPECT_TRUE(contains_card_number("4222222222222"));       // 13 digits
  EXPECT_TRUE(contains_card_number("6011 0009 9013 9424"));
  // A PAN followed by more groups (e.g. a CVV) is still found.
  EXPECT_TRUE(contains_card_number("4111 1111 1111 1111 123"));
  auto spans = find_card_numbers("a 4111-1111-1111-1111 b 5555555555554444");
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].first, 2u);
  EXPECT_EQ(spans[0].second, 21u);
}

TEST(CardNumbers, NotFound) {
  EXPECT_FALSE(contains_card_number("4111111111111112"));          // Luhn fails
  EXPECT_FALSE(contains_card_number("411111111111"));              // 12 digits
  EXPECT_FALSE(contains_card_number("41111111111111111111111"));   // one long id
  EXPECT_FALSE(contains_card_number("4111  1111 1111 1111"));      // double space splits it
  EXPECT_FALSE(contains_card_number("0000000000000000"));          // MII 0 is never a card
  EXPECT_TRUE(contains_card_number("2221000000000009"));           // Mastercard 2-series
  EXPECT_TRUE(contains_card_number("30569309025904"));             // Diners, 14 digits
  EXPECT_FALSE(contains_card_number("order 2024-01-15 12:30"));
  EXPECT_FALSE(contains_card_number(""));
  EXPECT_FALSE(contains_card_number("x4111111111111111y"));  // glued to letters: an id, not a PAN
  // UUIDs whose groups are all digits (a job id can be one).
  EXPECT_TRUE(contains_card_number("41111111-1111-4008"));
  EXPECT_FALSE(contains_card_number("41111111-1111-4008-8111-111111111111"));
  // Luhn-valid numbers that are not shaped like cards: millisecond
  // timestamps (13 digits from 1), an issuer range that does not exist, a
  // length the range does not use.
  EXPECT_TRUE(luhn_valid("1795620439046"));
  EXPECT_FALSE(contains_card_number("{\"created_ms\":1795620439046}"));
  EXPECT_TRUE(luhn_valid("7992739871300008"));
  EXPECT_FALSE(contains_card_number("7992739871300008"));
  EXPECT_FALSE(contains_card_number("411111111111116"));  // Visa has no 15-digit cards
}

// Job ids are never taken for card numbers, whatever digits they hold.
TEST(CardNumbers, JobIdsNeverMatch) {
  testing::FakeEnv env;
  for (int i = 0; i < 20000; ++i) {
    std::string id = JobId::generate(env).str();
    ASSERT_FALSE(contains_card_number(id)) << id;
    ASSERT_FALSE(contains_card_number("job " + id + " done")) << id;
  }
}

TEST(CheckPayload, AcceptsOrdinaryPayloads) {
  EXPECT_EQ(check(R"({"a":1,"b":[1,2,{"c":"d"}],"e":null,"f":true,"g":-1.5e3})").rule, "");
  EXPECT_EQ(check(R"("just a string")").rule, "");
  EXPECT_EQ(check("42").rule, "");
  EXPECT_EQ(check(R"({"order":"4111111111111112"})").rule, "");
  EXPECT_EQ(check(" { } ").rule, "");
  EXPECT_EQ(check("[]").rule, "");
}

TEST(CheckPayload, CardNumberNamesRuleAndPathNeverTheValue) {
  Outcome o = check(R"({"customer":{"name":"x","card":"4111 1111 1111 1111"}})");
  EXPECT_EQ(o.rule, "card_number");
  EXPECT_EQ(o.path, "$.customer.card");
  EXPECT_EQ(o.message.find("4111"), std::string::npos) << o.message;
  EXPECT_NE(o.message.find("$.customer.card"), std::string::npos) << o.message;
  EXPECT_NE(o.message.find("card_number"), std::string::npos) << o.message;
  // The message survives the redaction every CLI line goes through.
  EXPECT_NE(redact_text(o.message).find("$.customer.card"), std::string::npos)
      << redact_text(o.message);

  EXPECT_EQ(check(R"({"items":[1,{"n":4111111111111111}]})").path, "$.items[1].n");
  EXPECT_EQ(check(R"([0,-4111111111111111])").path, "$[1]");
  EXPECT_EQ(check(R"("4111111111111111")").path, "$");
  EXPECT_EQ(check(R"({"odd key":"5555555555554444"})").path, "$['odd key']");
}

TEST(CheckPayload, CardNumberHiddenByEscapesOrInAKey) {
  // \u0034 is '4'.
  Outcome o = check(R"({"a":"\u0034111111111111111"})");
  EXPECT_EQ(o.rule, "card_number");
  EXPECT_EQ(o.path, "$.a");
  Outcome k = check(R"({"x":{"4111111111111111":1}})");
  EXPECT_EQ(k.rule, "card_number");
  EXPECT_EQ(k.path, "$.x");  // the object, not the key itself
  EXPECT_EQ(k.message.find("4111"), std::string::npos) << k.message;
}

TEST(CheckPayload, AllowPan) {
  GuardLimits allow;
  allow.allow_pan = true;
  EXPECT_EQ(check(R"({"card":"4111111111111111"})", allow).rule, "");
}

TEST(CheckPayload, Size) {
  GuardLimits l;
  l.max_payload_bytes = 10;
  EXPECT_EQ(check(R"({"a":"123"})", l).rule, "max_payload_bytes");  // 11 bytes
  EXPECT_EQ(check(R"({"a":"12"})", l).rule, "");
}

TEST(CheckPayload, Depth) {
  GuardLimits l;
  l.max_depth = 3;
  EXPECT_EQ(check(R"({"a":[{"b":1}]})", l).rule, "");
  Outcome o = check(R"({"a":[{"b":[1]}]})", l);
  EXPECT_EQ(o.rule, "max_depth");
  EXPECT_EQ(o.path, "$.a[0].b");
  // Default: 32.
  std::string deep(33, '[');
  deep += std::string(33, ']');
  EXPECT_EQ(check(deep).rule, "max_depth");
  EXPECT_EQ(check(deep.substr(1, 64)).rule, "");
}

TEST(CheckPayload, KeysPerObjectAndTotal) {
  GuardLimits l;
  l.max_keys_per_object = 2;
  EXPECT_EQ(check(R"({"a":1,"b":2,"c":{"x":1,"y":2}})", l).rule, "max_keys_per_object");
  EXPECT_EQ(check(R"({"a":1,"b":2,"c":{"x":1,"y":2}})", l).path, "$");
  Outcome inner = check(R"({"a":{"x":1,"y":2,"z":3}})", l);
  EXPECT_EQ(inner.rule, "max_keys_per_object");
  EXPECT_EQ(inner.path, "$.a");

  GuardLimits t;
  t.max_keys_total = 3;
  EXPECT_EQ(check(R"({"a":{"x":1},"b":{"y":1}})", t).rule, "max_keys_total");
  EXPECT_EQ(check(R"({"a":{"x":1},"b":2})", t).rule, "");
}

TEST(CheckPayload, RefusesWhatIsNotJson) {
  for (const char* bad : {"", "{", "{\"a\"}", "[1,]", "{\"a\":1,}", "\"abc", "01", "tru",
                          "{\"a\":1} x", "[1 2]", "\"\\x\"", "-", "1.", "1e"}) {
    EXPECT_EQ(check(bad).rule, "json") << bad;
  }
}

TEST(GuardOptions, MostSpecificMatchingPatternWins) {
  GuardOptions o;
  o.defaults.max_depth = 5;
  GuardRule any{"pay*", {}};
  any.limits.max_depth = 6;
  GuardRule exact{"payments.eu", {}};
  exact.limits.max_depth = 7;
  GuardRule q{"pay?ents.*", {}};
  q.limits.max_depth = 8;
  o.rules = {any, exact, q};
  EXPECT_EQ(o.limits_for("orders").max_depth, 5u);
  EXPECT_EQ(o.limits_for("payroll").max_depth, 6u);
  EXPECT_EQ(o.limits_for("payments.eu").max_depth, 7u);
  EXPECT_EQ(o.limits_for("payments.us").max_depth, 8u);
  EXPECT_TRUE(security::glob_match("*", ""));
  EXPECT_TRUE(security::glob_match("a*b*c", "axxbyyc"));
  EXPECT_FALSE(security::glob_match("a*b*c", "axxbyy"));
  EXPECT_FALSE(security::glob_match("a?", "a"));
}

// The codec seam: a Queue refuses a PAN before anything reaches the backend,
// unless its pattern allows it; results are not guarded; errors are redacted.
TEST(GuardedCodec, RefusesAtTheSeamAndOnlyPayloads) {
  testing::FakeEnv env;
  GuardOptions g;
  GuardRule pay{"payments", {}};
  pay.limits.allow_pan = true;
  g.rules.push_back(pay);
  ClientOptions o;
  o.codec = make_guarded_codec(make_plain_codec(), g);
  auto client = Client::open("memory://", env, o);
  Queue orders(client, "orders");
  Queue payments(client, "payments");
  boost::json::value pan = {{"card", "4111111111111111"}};
  try {
    sync_wait(orders.add("t", pan));
    ADD_FAILURE() << "a PAN was accepted";
  } catch (const GuardRefused& e) {
    EXPECT_EQ(e.rule(), "card_number");
    EXPECT_EQ(e.path(), "$.card");
  }
  EXPECT_EQ(sync_wait(orders.counts())[static_cast<std::size_t>(JobState::waiting)], 0u);
  EXPECT_NO_THROW(sync_wait(payments.add("t", pan)));

  JobId id = JobId::generate(env);
  CodecContext result{"orders", id, Field::result};
  EXPECT_EQ(client->codec().encode(result, "\"4111111111111111\""), "\"4111111111111111\"");
  CodecContext error{"orders", id, Field::error};
  std::string stored = client->codec().encode(error, R"(login failed: {"password": "hunter2"})");
  EXPECT_EQ(stored.find("hunter2"), std::string::npos) << stored;
  EXPECT_THROW(make_guarded_codec(nullptr), InvalidArgument);
}

// A handler's log lines are free text like error messages: they are
// redacted before `inner` seals them, so the store never holds a secret a
// handler logged, sealed or not.
TEST(GuardedCodec, RedactsLogLinesLikeErrors) {
  // The plain inner codec stores what it is given: what is stored is what
  // a sealing codec would have sealed.
  auto codec = make_guarded_codec(make_plain_codec());
  testing::FakeEnv env;
  CodecContext log{"orders", JobId::generate(env), Field::log};
  std::string stored =
      codec->encode(log, R"(charging {"card_number": "4111 1111 1111 1111", "token": "s3cr3t-t0k"})");
  EXPECT_EQ(stored.find("4111"), std::string::npos) << stored;
  EXPECT_EQ(stored.find("s3cr3t-t0k"), std::string::npos) << stored;
  EXPECT_NE(stored.find("charging"), std::string::npos) << stored;  // the rest is kept
  EXPECT_EQ(codec->encode(log, "sent 3 reminders"), "sent 3 reminders");
  // Decoding is the inner codec's: a stored line reads back as stored.
  EXPECT_EQ(codec->decode(log, stored), stored);
}

}  // namespace
}  // namespace asyncmq

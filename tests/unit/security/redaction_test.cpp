// Redaction: field names, patterns, URI passwords, JSON output, the log
// path, and a Secret that cannot be printed or formatted.
#include <asyncmq/security.hpp>

#include "core/log.hpp"
#include "security/redaction.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <gtest/gtest.h>

#include <fstream>
#include <ostream>
#include <sstream>
#include <type_traits>

namespace asyncmq {
namespace {

using security::Redactor;

// A Secret refuses every way of being printed: no operator<<, no fmt
// formatter (so neither spdlog nor fmt::format accept it), no conversion to
// text. Checked at compile time: this file fails to build if one appears.
template <class T>
concept Streamable = requires(std::ostream& os, const T& v) { os << v; };
static_assert(!Streamable<Secret>, "a Secret must not be streamable");
static_assert(Streamable<std::string>, "the concept itself works");
// fmt (and so spdlog) formats a type through a formatter specialisation; the
// primary template cannot be constructed. (fmt::is_formattable cannot be
// asked: Secret's deleted conversions make fmt's own overload choice
// ambiguous, which is a hard error, and so is any fmt::format of a Secret.)
static_assert(!std::is_default_constructible_v<fmt::formatter<Secret, char>>,
              "a Secret must not have an fmt formatter");
static_assert(std::is_default_constructible_v<fmt::formatter<std::string, char>>,
              "the check itself works");
static_assert(!std::is_convertible_v<Secret, std::string>);
static_assert(!std::is_convertible_v<Secret, std::string_view>);
static_assert(!std::is_convertible_v<const Secret&, const char*>);
static_assert(!std::is_copy_constructible_v<Secret>);

std::string r(std::string_view text) { return Redactor(RedactionOptions{}).redact(text); }

TEST(Redaction, FieldValuesInManyShapes) {
  EXPECT_EQ(r(R"({"password": "hunter2", "user": "bob"})"), R"({"password": "****", "user": "bob"})");
  EXPECT_EQ(r("password=hunter2&user=bob"), "password=****&user=bob");
  EXPECT_EQ(r("db_password: hunter2 next"), "db_password: **** next");
  EXPECT_EQ(r("USER_PASSWORD='hunter2'"), "USER_PASSWORD='****'");
  EXPECT_EQ(r(R"(err: {\"token\": \"abc123\"})"), R"(err: {\"token\": \"****\"})");
  EXPECT_EQ(r(R"({"api_key":12345})"), R"({"api_key":"****"})");  // stays JSON
  EXPECT_EQ(r("X-Api-Key: k-123"), "X-Api-Key: ****");
  EXPECT_EQ(r("Authorization: Bearer abcdefghijkl"), "Authorization: Bearer ****");
  EXPECT_EQ(r("userPin=1234"), "userPin=****");
  // Not fields: a word in prose, a longer word ending like a short field.
  EXPECT_EQ(r("password reset for bob"), "password reset for bob");
  EXPECT_EQ(r("discard=true span=3"), "discard=true span=3");
  // Principal ids and namespaces, not fields.
  EXPECT_EQ(r("principal 'apikey:k1f2e3' denied"), "principal 'apikey:k1f2e3' denied");
  EXPECT_EQ(r(R"({"password":"x","token":7})"), R"({"password":"****","token":"****"})");
  EXPECT_EQ(r("password:'x'"), "password:'****'");
  // An object or array value stays JSON; what is inside is still masked.
  EXPECT_EQ(r(R"({"guards.allow_pan":{"value":"false"}})"), R"({"guards.allow_pan":{"value":"false"}})");
  EXPECT_EQ(r(R"({"password":{"pin":"1234"},"card":["x"]})"), R"({"password":{"pin":"****"},"card":["x"]})");
}

TEST(Redaction, SensitiveFieldRules) {
  Redactor red{RedactionOptions{}};
  for (const char* yes : {"password", "PASSWORD", "user_password", "userPassword", "x-auth-token",
                          "credit_card", "card", "cvv", "ssn", "iban", "private_key", "apiKey",
                          "client_secret", "Authorization", "session_id", "creditCard"})
    EXPECT_TRUE(red.sensitive_field(yes)) << yes;
  for (const char* no : {"user", "discard", "span", "company", "passwords_count", "author",
                         "tokens", "queue", ""})
    EXPECT_FALSE(red.sensitive_field(no)) << no;
  RedactionOptions extra;
  extra.fields.push_back("diagnosis");
  EXPECT_TRUE(Redactor(extra).sensitive_field("patient_diagnosis"));
}

TEST(Redaction, PatternsCardsBearerJwtPemUri) {
  EXPECT_EQ(r("paid with 4111 1111 1111 1111 ok"), "paid with **** ok");
  EXPECT_EQ(r("[4111111111111111]"), "[\"****\"]");
  EXPECT_EQ(r("curl -H 'bearer abcdefgh12345678'"), "curl -H 'bearer ****'");
  std::string jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2ln";
  EXPECT_EQ(r("jwt " + jwt + " end"), "jwt **** end");
  EXPECT_EQ(r("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"),
            "-----BEGIN PRIVATE KEY----- **** -----END PRIVATE KEY-----");
  EXPECT_EQ(r("a redis://user:hunter2@h:1/0 and postgres://u:pw2@db/x"),
            "a redis://user:****@h:1/0 and postgres://u:****@db/x");
  EXPECT_EQ(r("no secrets here: 12345, memory://"), "no secrets here: 12345, memory://");
}

TEST(Redaction, ConfiguredPatterns) {
  RedactionOptions o;
  o.patterns = {"literal:ACME-INTERNAL", "emp-[0-9]{4}"};
  Redactor red(o);
  EXPECT_EQ(red.redact("id ACME-INTERNAL and emp-1234, emp-12"), "id **** and ****, emp-12");
  RedactionOptions bad;
  bad.patterns = {"ok", "(unclosed"};
  try {
    Redactor{bad};
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.kind(), errc::invalid_config);
    EXPECT_NE(std::string(e.what()).find("#2"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("(unclosed"), std::string::npos) << e.what();
  }
}

TEST(Redaction, Json) {
  Redactor red{RedactionOptions{}};
  boost::json::value v = boost::json::parse(
      R"({"user":"bob","password":{"a":1},"n":4111111111111111,"list":["x 4111-1111-1111-1111"],
          "note":"uri redis://u:pw@h/"})");
  red.redact_json(v);
  EXPECT_EQ(boost::json::serialize(v),
            R"({"user":"bob","password":"****","n":"****","list":["x ****"],"note":"uri redis://u:****@h/"})");
}

// The log path: the filter runs before any sink, so the file never sees the
// secret; text and JSON lines.
TEST(Redaction, LogLinesAreRedactedBeforeTheSinks) {
  testing::TempDir dir;
  std::string file = dir.file("log.txt");
  configure_redaction(RedactionOptions{});
  core::LogConfig c;
  c.level = core::LogLevel::info;
  c.format = core::LogFormat::json;
  c.file = file;
  core::configure_logging(c);
  core::log(core::LogLevel::info, "test", R"(login {"password": "hunter2"} via redis://u:pw9@h/)");
  core::log(core::LogLevel::debug, "test", "below the level: not written");
  c.format = core::LogFormat::text;
  core::configure_logging(c);
  core::log(core::LogLevel::warn, "test", "card 4111 1111 1111 1111");
  core::configure_logging(core::LogConfig{});  // back to stderr only, warn

  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  EXPECT_EQ(text.find("hunter2"), std::string::npos) << text;
  EXPECT_EQ(text.find("pw9"), std::string::npos) << text;
  EXPECT_EQ(text.find("4111"), std::string::npos) << text;
  EXPECT_EQ(text.find("below the level"), std::string::npos) << text;
  std::string first = text.substr(0, text.find('\n'));
  boost::system::error_code ec;
  boost::json::value line = boost::json::parse(first, ec);
  ASSERT_FALSE(ec) << first;
  EXPECT_EQ(line.at("level"), "info");
  EXPECT_EQ(line.at("component"), "test");
  EXPECT_NE(text.find("asyncmq warn [test] card ****"), std::string::npos) << text;
}

TEST(Redaction, LevelsAndFormatsParse) {
  EXPECT_EQ(core::parse_log_level("debug"), core::LogLevel::debug);
  EXPECT_EQ(core::parse_log_level("off"), core::LogLevel::off);
  EXPECT_THROW(core::parse_log_level("loud"), InvalidArgument);
  EXPECT_EQ(core::parse_log_format("json"), core::LogFormat::json);
  EXPECT_THROW(core::parse_log_format("xml"), InvalidArgument);
}

}  // namespace
}  // namespace asyncmq

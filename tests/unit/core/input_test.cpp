// Names, payloads and backend URIs: what is accepted, and how refusals read.
#include <asyncmq/client.hpp>
#include <asyncmq/error.hpp>

#include "core/uri.hpp"

#include <gtest/gtest.h>

namespace asyncmq::testing {
namespace {

std::string refusal(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "<accepted>";
}

TEST(Names, AcceptTheDocumentedAlphabet) {
  for (std::string ok : std::vector<std::string>{"a", "emails", "Q1", "tenant-7.emails:high_prio", std::string(128, 'x')})
    EXPECT_NO_THROW(validate_name("queue", ok)) << ok;
}

TEST(Names, RefuseEverythingElseAndSayWhy) {
  EXPECT_NE(refusal([] { validate_name("queue", ""); }).find("it is empty"), std::string::npos);
  EXPECT_NE(refusal([] { validate_name("queue", std::string(129, 'x')); }).find("129 characters"),
            std::string::npos);
  EXPECT_NE(refusal([] { validate_name("task", "-x"); }).find("start with a letter or digit"),
            std::string::npos);
  EXPECT_NE(refusal([] { validate_name("task", "a b"); }).find("character 2"), std::string::npos);
  for (std::string bad : {"a/b", "a\nb", "a{b}", "../x", "é", "a*"})
    EXPECT_THROW(validate_name("queue", bad), InvalidArgument) << bad;
  try {
    validate_name("queue", "a/b");
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.kind(), errc::invalid_name);
    EXPECT_TRUE(is_invalid_input(e.code()));
  }
}

TEST(Payloads, ParseValidJsonAndRefuseTheRest) {
  ClientOptions o;
  EXPECT_EQ(parse_payload(R"({"a":[1,2,{"b":null}]})", o).at("a").as_array().size(), 3u);
  EXPECT_NE(refusal([&] { parse_payload("{\"a\":", o); }).find("not valid JSON"), std::string::npos);
  EXPECT_NE(refusal([&] { parse_payload("{} trailing", o); }).find("not valid JSON"),
            std::string::npos);
  o.max_payload_bytes = 10;
  std::string big = refusal([&] { parse_payload(R"({"secret":"hunter22"})", o); });
  EXPECT_NE(big.find("over the limit of 10 bytes"), std::string::npos);
  EXPECT_EQ(big.find("hunter22"), std::string::npos) << "refusals never echo the payload";
  ClientOptions shallow;
  shallow.max_json_depth = 3;
  EXPECT_NO_THROW(parse_payload("[[[1]]]", shallow));
  EXPECT_THROW(parse_payload("[[[[1]]]]", shallow), InvalidArgument);
}

TEST(Uris, ParseOptionsAndMaskPasswords) {
  auto u = core::parse_uri("sqlite:///./a.db?sync=full&busy_timeout_ms=10");
  EXPECT_EQ(u.scheme, "sqlite");
  EXPECT_EQ(u.path, "/./a.db");
  EXPECT_EQ(u.take("sync"), "full");
  EXPECT_EQ(u.take("missing", "dflt"), "dflt");
  EXPECT_THROW(u.refuse_unknown_options(), InvalidArgument);  // busy_timeout_ms not taken
  EXPECT_EQ(core::mask_uri("redis://user:s3cret@host:6379/0"), "redis://user:****@host:6379/0");
  EXPECT_EQ(core::mask_uri("sqlite:///x.db"), "sqlite:///x.db");
  std::string dup = refusal([] { core::parse_uri("redis://u:pw@h/?a=1&a=2"); });
  EXPECT_NE(dup.find("given twice"), std::string::npos);
  EXPECT_EQ(dup.find("pw@"), std::string::npos);
}

TEST(Uris, OpenBackendRefusesUnknownSchemesAndOptions) {
  auto& env = Env::system();
  std::string scheme = refusal([&] { open_backend("mongodb://x", env); });
  EXPECT_NE(scheme.find("unsupported backend scheme 'mongodb'"), std::string::npos);
  EXPECT_NE(refusal([&] { open_backend("memory://?fast=1", env); }).find("unknown option 'fast'"),
            std::string::npos);
  EXPECT_NE(refusal([&] { open_backend("sqlite:///tmp/x.db?sync=sometimes", env); }).find("sync"),
            std::string::npos);
  EXPECT_NE(refusal([&] { open_backend("sqlite://host/x.db", env); }).find("has a host"),
            std::string::npos);
  EXPECT_NE(refusal([&] { open_backend("not a uri", env); }).find("invalid backend URI"),
            std::string::npos);
}

}  // namespace
}  // namespace asyncmq::testing

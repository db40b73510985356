// ellipsize cuts text for tables and event lines; it must redact first, or
// a secret cut in two slips past the line filter that redacts the output.
#include "cli/cli_common.hpp"

#include <gtest/gtest.h>

namespace asyncmq::testing {
namespace {

TEST(Ellipsize, RedactsACardNumberBeforeCuttingThroughIt) {
  // The cut at 24 characters falls inside the number: "charge 4111 1111 1111..."
  // alone holds 12 digits, too few for the card pattern of the output filter.
  std::string error = "charge 4111 1111 1111 1111 declined by the issuer";
  std::string shown = cli::ellipsize(error, 24);
  EXPECT_LE(shown.size(), 24u);
  EXPECT_EQ(shown.find("4111"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("1111"), std::string::npos) << shown;
}

TEST(Ellipsize, RedactsABearerTokenThatFitsAndKeepsPlainText) {
  EXPECT_EQ(cli::ellipsize("timeout after 30 s", 40), "timeout after 30 s");
  std::string shown = cli::ellipsize("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789", 40);
  EXPECT_EQ(shown.find("abcdefghij"), std::string::npos) << shown;
  EXPECT_EQ(cli::ellipsize("0123456789abcdef", 10), "0123456...");
}

}  // namespace
}  // namespace asyncmq::testing

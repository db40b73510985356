// CertMapper: certificates made at test time by the `openssl` command map
// to principals by subject CN or by a SAN (DNS, URI, email); no rule
// matching is Unauthenticated; a CN with an embedded NUL never matches.
#include <asyncmq/identity.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

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

// A self-signed P-256 certificate with `subject` and `san`, as PEM; empty
// when no openssl command is available.
std::string make_cert(const TempDir& dir, const std::string& subject, const std::string& san) {
  const char* openssl = "/usr/bin/openssl";
  if (!std::filesystem::exists(openssl)) return {};
  std::vector<std::string> argv{openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:P-256", "-nodes", "-keyout", dir.file("k.pem"),
                                "-out", dir.file("c.pem"), "-days", "1", "-subj", subject};
  if (!san.empty()) {
    argv.push_back("-addext");
    argv.push_back("subjectAltName=" + san);
  }
  ProcessResult r = run_process(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return slurp(dir.file("c.pem"));
}

TEST(CertMapper, SubjectAndSanRules) {
  TempDir dir;
  std::string pem = make_cert(dir, "/O=Example/CN=svc-billing.internal",
                              "DNS:api.example.com,URI:spiffe://example.org/ns/prod/sa/worker,email:ops@example.com");
  if (pem.empty()) GTEST_SKIP() << "no openssl command";

  CertMapper by_cn({{CertRule::Field::subject_cn, "svc-*.internal", ""}});
  Principal p = by_cn.map_pem(pem);
  EXPECT_EQ(p.id(), "mtls:svc-billing.internal");

  CertMapper by_uri({{CertRule::Field::san_uri, "spiffe://example.org/ns/prod/sa/*", "prod-worker"}});
  EXPECT_EQ(by_uri.map_pem(pem).id(), "mtls:prod-worker");
  EXPECT_EQ(by_uri.map_pem(pem).claims.at("cert"),
            std::vector<std::string>{"spiffe://example.org/ns/prod/sa/worker"});

  CertMapper by_dns({{CertRule::Field::san_dns, "*.example.com", ""}});
  EXPECT_EQ(by_dns.map_pem(pem).id(), "mtls:api.example.com");
  CertMapper by_email({{CertRule::Field::san_email, "ops@example.com", "ops"}});
  EXPECT_EQ(by_email.map_pem(pem).id(), "mtls:ops");

  // Rules are tried in order; the first match wins.
  CertMapper ordered({{CertRule::Field::san_dns, "nomatch.*", "a"}, {CertRule::Field::subject_cn, "*", "b"}});
  EXPECT_EQ(ordered.map_pem(pem).id(), "mtls:b");

  CertMapper none({{CertRule::Field::subject_cn, "other", ""}, {CertRule::Field::san_dns, "*.evil.com", ""}});
  EXPECT_THROW(none.map_pem(pem), Unauthenticated);
  EXPECT_THROW(by_cn.map_pem("not a certificate"), InvalidArgument);
  EXPECT_THROW(by_cn.map(nullptr), Unauthenticated);
  EXPECT_THROW(CertMapper({{CertRule::Field::subject_cn, "", ""}}), InvalidArgument);
}

TEST(CertMapper, NoSanMeansOnlySubjectRulesCanMatch) {
  TempDir dir;
  std::string pem = make_cert(dir, "/CN=plain", "");
  if (pem.empty()) GTEST_SKIP() << "no openssl command";
  CertMapper by_dns({{CertRule::Field::san_dns, "*", ""}});
  EXPECT_THROW(by_dns.map_pem(pem), Unauthenticated);
  CertMapper by_cn({{CertRule::Field::subject_cn, "plain", ""}});
  EXPECT_EQ(by_cn.map_pem(pem).name, "plain");
}

}  // namespace
}  // namespace asyncmq::testing

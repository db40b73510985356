// CertMapper (see include/asyncmq/identity.hpp): a verified TLS client
// certificate's subject CN or subjectAltName entries to a principal.
//
// Values are read as OpenSSL gives them (ASN1_STRING bytes); one holding a
// NUL byte or a character outside printable ASCII never matches (the old
// "paypal.com\0.evil.com" trick), and neither does an empty one.
#include "security/policy_internal.hpp"

#include <asyncmq/identity.hpp>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace asyncmq {

namespace {

std::optional<std::string> printable(const ASN1_STRING* s) {
  if (!s) return std::nullopt;
  const unsigned char* data = ASN1_STRING_get0_data(s);
  int len = ASN1_STRING_length(s);
  if (len <= 0 || len > 1024) return std::nullopt;
  std::string out(reinterpret_cast<const char*>(data), static_cast<std::size_t>(len));
  for (char c : out)
    if (c < 0x20 || c > 0x7e) return std::nullopt;
  return out;
}

std::vector<std::string> values_of(const X509* cert, CertRule::Field field) {
  std::vector<std::string> out;
  if (field == CertRule::Field::subject_cn) {
    const X509_NAME* subject = X509_get_subject_name(cert);
    int i = -1;
    while ((i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0) {
      const X509_NAME_ENTRY* e = X509_NAME_get_entry(subject, i);
      if (auto v = printable(X509_NAME_ENTRY_get_data(e))) out.push_back(*v);
    }
    return out;
  }
  int type = field == CertRule::Field::san_dns ? GEN_DNS
             : field == CertRule::Field::san_uri ? GEN_URI
                                                 : GEN_EMAIL;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != type) continue;
    if (auto v = printable(n->d.ia5)) out.push_back(*v);
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace

CertMapper::CertMapper(std::vector<CertRule> rules) : rules_(std::move(rules)) {
  for (const auto& r : rules_)
    if (r.pattern.empty()) throw InvalidArgument("a certificate rule needs a pattern");
}

Principal CertMapper::map(const x509_st* certificate) const {
  if (!certificate) throw Unauthenticated("no client certificate");
  for (const auto& rule : rules_) {
    for (const auto& value : values_of(certificate, rule.field)) {
      if (!security::glob_match(rule.pattern, value)) continue;
      Principal p;
      p.kind = "mtls";
      p.name = rule.principal.empty() ? value : rule.principal;
      p.claims["cert"].push_back(value);
      return p;
    }
  }
  throw Unauthenticated("client certificate refused: no mapping rule matches its subject or SAN");
}

Principal CertMapper::map_pem(std::string_view pem) const {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (!cert) {
    ERR_clear_error();
    throw InvalidArgument("not a PEM certificate");
  }
  try {
    Principal p = map(cert);
    X509_free(cert);
    return p;
  } catch (...) {
    X509_free(cert);
    throw;
  }
}

}  // namespace asyncmq

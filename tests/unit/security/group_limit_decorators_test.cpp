// Per-group rate limits through the Backend decorators a Client installs:
// the policy decorator checks set_rate_limit and rate_limit and passes the
// per_group mode through, and the audit decorator records it. Time comes
// from FakeEnv; nothing sleeps.
#include <asyncmq/audit.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>

#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace asyncmq::testing {
namespace {

std::shared_ptr<Principal> apikey(const std::string& name) {
  auto p = std::make_shared<Principal>();
  p->kind = "apikey";
  p->name = name;
  return p;
}

std::vector<AuditRecord> records(const std::filesystem::path& log) {
  std::vector<AuditRecord> out;
  std::ifstream in(log, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    auto r = audit_from_json_line(line);
    EXPECT_TRUE(r) << line;
    if (r) out.push_back(*r);
  }
  return out;
}

TEST(GroupLimitDecorators, PolicyAndAuditPassThePerGroupModeThrough) {
  TempDir dir;
  FakeEnv env;
  audit_keygen(dir.file("writer.key"), dir.file("verify.key"));
  AuditOptions ao = AuditOptions::in_dir(dir.path());
  auto log = AuditLog::open(ao, env);
  auto policy = Policy::parse(R"(
[[grant]]
principal = "apikey:ops"
roles = ["operator", "producer"]
queues = ["tenants"]

[[grant]]
principal = "apikey:producer"
roles = ["producer"]
queues = ["tenants"]
)", "test-policy", env);
  auto backend = open_backend("memory://", env);

  ClientOptions ops_options;
  ops_options.audit = log;
  ops_options.principal = apikey("ops");
  ops_options.policy = policy;
  auto ops = std::make_shared<Client>(backend, env, ops_options);
  Queue ops_queue(ops, "tenants");
  sync_wait(ops_queue.set_rate_limit(RateLimit{5, 1000, true}));
  RateLimit l = sync_wait(ops_queue.rate_limit());
  EXPECT_EQ(l.max, 5);
  EXPECT_TRUE(l.per_group);

  // A producer may add grouped jobs but not change the limit: refused before
  // the backend is reached, the limit unchanged, the denial audited.
  ClientOptions producer_options = ops_options;
  producer_options.principal = apikey("producer");
  auto producer = std::make_shared<Client>(backend, env, producer_options);
  Queue producer_queue(producer, "tenants");
  JobOptions o;
  o.group = "tenant-1";
  sync_wait(producer_queue.add("t", boost::json::object{}, o));
  EXPECT_THROW(sync_wait(producer_queue.set_rate_limit(RateLimit{1000, 1000, false})),
               PermissionDenied);
  l = sync_wait(backend->rate_limit("tenants"));
  EXPECT_EQ(l.max, 5);
  EXPECT_TRUE(l.per_group);
  log->close();

  std::vector<std::string> got;
  for (const auto& r : records(ao.log_path))
    if (r.event.action == "rate-limited" || r.event.action == "denied")
      got.push_back(r.event.action + " " + r.event.actor + " " + r.event.detail);
  std::vector<std::string> want = {"rate-limited apikey:ops max=5 interval_ms=1000 per_group=true",
                                   "denied apikey:producer action=pause"};
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace asyncmq::testing

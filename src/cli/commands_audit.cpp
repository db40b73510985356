// `asyncmq audit keygen | verify | export`, and opening the audit trail for
// the other commands when --audit-dir (ASYNCMQ_AUDIT_DIR) is given.
//
// Files under --audit-dir: audit.log (the records), writer.key (the
// writer's epoch key, --audit-key to put it elsewhere) and checkpoints.log
// (--audit-checkpoints: put it where the writer cannot rewrite it). The
// verify key (the chain's seed) belongs to the auditor, not to this
// directory: `keygen` writes it where --verify-key says.
//
// --from-backend (verify, export): read the chain's lines from the store's
// audit table (the backend sink, setting audit.backend_sink) instead of the
// log file; verify still checks them against the checkpoint file. The store
// is opened without the audit trail (a verifier holds no writer key) and,
// with a principal, behind the policy: the table needs `audit` on "*".
#include <asyncmq/audit.hpp>
#include <asyncmq/backend.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"
#include "security/policy_backend.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <limits>

namespace asyncmq::cli {
namespace {

namespace fs = std::filesystem;

struct Paths {
  fs::path log, checkpoints, writer_key;
};

// The audit files the global options name; empty paths when not given.
Paths audit_paths(const Context& ctx) {
  Paths p;
  if (!ctx.audit_dir.empty()) {
    AuditOptions o = AuditOptions::in_dir(ctx.audit_dir);
    p.log = o.log_path;
    p.checkpoints = o.checkpoint_path;
    p.writer_key = o.writer_key_path;
  }
  if (!ctx.audit_checkpoints.empty()) p.checkpoints = ctx.audit_checkpoints;
  if (!ctx.audit_key.empty()) p.writer_key = ctx.audit_key;
  return p;
}

// The store whose audit table --from-backend reads: must exist, no audit
// trail of its own, the policy in front when a principal is attached.
std::shared_ptr<Backend> open_audit_table(const Context& ctx) {
  preflight_backend(ctx.backend_uri, Access::must_exist);
  std::shared_ptr<Backend> b = open_backend(ctx.backend_uri, Env::system());
  if (ctx.principal && ctx.policy) b = security::make_policy_backend(b, ctx.principal, ctx.policy);
  return b;
}

AuditLineReader table_reader(const std::shared_ptr<Backend>& b) {
  return [b](std::int64_t after_seq, std::size_t limit) {
    return sync_wait(b->read_audit_chain(after_seq, limit));
  };
}

struct KeygenArgs {
  std::string writer_key;
  std::string verify_key;
};

int do_keygen(const Context& ctx, const KeygenArgs& a) {
  require_admin(ctx, asyncmq::Action::audit);
  fs::path writer = a.writer_key.empty() ? audit_paths(ctx).writer_key : fs::path(a.writer_key);
  if (writer.empty())
    throw InvalidArgument("audit keygen needs --writer-key or --audit-dir");
  if (a.verify_key.empty()) throw InvalidArgument("audit keygen needs --verify-key");
  if (!ctx.audit_dir.empty() && !fs::exists(ctx.audit_dir)) {
    if (::mkdir(ctx.audit_dir.c_str(), 0700) != 0)
      throw Error(errc::backend_failure,
                  "cannot create " + ctx.audit_dir + ": " + std::strerror(errno));
  }
  std::string key_id = audit_keygen(writer, a.verify_key);
  if (ctx.json) {
    print_json({{"writer_key", writer.string()}, {"verify_key", a.verify_key}, {"key_id", key_id}});
  } else {
    std::cout << "created the audit writer key " << writer.string() << " and the verify key "
              << a.verify_key << " (checkpoint key id " << key_id << ")\n"
              << "keep the verify key off the hosts that run writers: whoever holds it can "
                 "forge the whole chain\n";
  }
  return kExitOk;
}

struct VerifyArgs {
  std::string verify_key;
  std::string log;
  std::string checkpoints;
  std::size_t from = 0;
  bool allow_unanchored = false;
  bool from_backend = false;
};

int do_verify(const Context& ctx, const VerifyArgs& a) {
  require_admin(ctx, asyncmq::Action::audit);
  Paths p = audit_paths(ctx);
  AuditVerifyOptions o;
  o.verify_key_path = a.verify_key;
  o.log_path = a.log.empty() ? p.log : fs::path(a.log);
  o.checkpoint_path = a.checkpoints.empty() ? p.checkpoints : fs::path(a.checkpoints);
  if (a.from_backend && !a.log.empty())
    throw InvalidArgument("audit verify: --log and --from-backend exclude each other");
  if (o.log_path.empty() && !a.from_backend)
    throw InvalidArgument("audit verify needs --log, --audit-dir or --from-backend");
  if (o.checkpoint_path.empty())
    throw InvalidArgument("audit verify needs --checkpoints, --audit-checkpoints or --audit-dir");
  if (a.from > 0) o.from_checkpoint = a.from;
  o.allow_unanchored = a.allow_unanchored;
  AuditVerifyReport r =
      a.from_backend ? verify_audit(o, table_reader(open_audit_table(ctx))) : verify_audit(o);
  if (ctx.json) {
    boost::json::object out;
    out["intact"] = r.intact;
    out["records"] = r.records;
    out["checkpoints"] = r.checkpoints;
    out["last_seq"] = r.last_seq;
    out["anchored_seq"] = r.anchored_seq;
    if (r.problem) {
      out["problem"] = {{"kind", std::string(to_string(r.problem->kind))},
                        {"seq", r.problem->seq},
                        {"message", r.problem->message}};
    } else {
      out["problem"] = nullptr;
    }
    boost::json::array notes;
    for (const auto& n : r.notes) notes.emplace_back(n);
    out["notes"] = std::move(notes);
    print_json(out);
  } else {
    if (r.intact) {
      std::cout << "intact: " << r.records << " records, " << r.checkpoints
                << " checkpoints, anchored through seq " << r.anchored_seq << '\n';
    } else {
      std::cout << "NOT intact: " << to_string(r.problem->kind) << " at seq " << r.problem->seq
                << ": " << r.problem->message << '\n'
                << "  " << r.records << " records verified before it\n";
    }
    for (const auto& n : r.notes) std::cout << "  note: " << n << '\n';
  }
  return r.intact ? kExitOk : kExitRuntime;
}

// "2026-11-25T14:00:00Z" or "...:00.123Z" to ms since the epoch.
std::optional<std::int64_t> parse_utc(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  char z = 0;
  int n = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
    return std::nullopt;
  std::string rest = s.substr(static_cast<std::size_t>(n));
  if (!rest.empty() && rest[0] == '.') {
    if (rest.size() < 5 || std::sscanf(rest.c_str(), ".%3d%c", &ms, &z) != 2) return std::nullopt;
    rest = rest.substr(4);
  }
  if (rest != "Z") return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(t) * 1000 + ms;
}

struct ExportArgs {
  std::string since;
  std::string log;
  bool from_backend = false;
};

int do_export(const Context& ctx, const ExportArgs& a) {
  require_admin(ctx, asyncmq::Action::audit);
  std::uint64_t since_seq = 0;
  std::int64_t since_ms = 0;
  if (!a.since.empty()) {
    if (a.since.find_first_not_of("0123456789") == std::string::npos && a.since.size() <= 19) {
      since_seq = std::stoull(a.since);
    } else if (auto t = parse_utc(a.since)) {
      since_ms = *t;
    } else {
      throw InvalidArgument("--since takes a sequence number or a UTC time like "
                            "2026-11-25T14:00:00Z");
    }
  }
  if (a.from_backend && !a.log.empty())
    throw InvalidArgument("audit export: --log and --from-backend exclude each other");
  std::size_t bad = 0;
  auto emit = [&](std::string_view line) {
    auto r = audit_from_json_line(line);
    if (!r) {
      ++bad;
      return;
    }
    if (r->seq < since_seq || r->time_ms < since_ms) return;
    std::cout << audit_to_json_line(*r) << '\n';
  };
  if (a.from_backend) {
    AuditLineReader read = table_reader(open_audit_table(ctx));
    // From just below --since: the table is keyed by seq (a time still
    // filters every line).
    std::int64_t after = since_seq > 0 ? static_cast<std::int64_t>(since_seq) - 1
                                       : std::numeric_limits<std::int64_t>::min();
    for (;;) {
      std::vector<AuditChainLine> page = read(after, 1000);
      if (page.empty()) break;
      for (const AuditChainLine& l : page) emit(l.text);
      after = page.back().seq;
    }
  } else {
    fs::path log = a.log.empty() ? audit_paths(ctx).log : fs::path(a.log);
    if (log.empty()) throw InvalidArgument("audit export needs --log, --audit-dir or --from-backend");
    std::ifstream in(log, std::ios::binary);
    if (!in) throw NotFound("audit log " + log.string() + " cannot be read");
    std::string line;
    while (std::getline(in, line)) emit(line);
  }
  std::cout.flush();
  if (bad) {
    std::cerr << "asyncmq: warning: skipped " << bad
              << " lines that are not records; run 'asyncmq audit verify'\n";
  }
  return kExitOk;
}

}  // namespace

std::shared_ptr<AuditLog> open_audit_log(const Context& ctx) {
  Paths p = audit_paths(ctx);
  if (p.log.empty()) return nullptr;
  AuditOptions o = AuditOptions::in_dir(ctx.audit_dir);
  o.checkpoint_path = p.checkpoints;
  o.writer_key_path = p.writer_key;
  o.backend_sink = ctx.settings.audit_backend_sink;
  return AuditLog::open(std::move(o), Env::system());
}

void add_audit_options(CLI::App& app, Context& ctx) {
  if (const char* env = std::getenv("ASYNCMQ_AUDIT_CHECKPOINTS"); env && *env)
    ctx.audit_checkpoints = env;
  if (const char* env = std::getenv("ASYNCMQ_AUDIT_KEY"); env && *env) ctx.audit_key = env;
  app.add_option("--audit-dir", ctx.audit_dir,
                 "write an audit trail: DIR/audit.log, keyed by DIR/writer.key (from 'audit "
                 "keygen'); setting audit.dir, env ASYNCMQ_AUDIT_DIR")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--audit-checkpoints", ctx.audit_checkpoints,
                 "signed checkpoints file (default DIR/checkpoints.log; put it where the writer "
                 "cannot rewrite it); env ASYNCMQ_AUDIT_CHECKPOINTS")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--audit-key", ctx.audit_key,
                 "the audit writer key file (default DIR/writer.key); env ASYNCMQ_AUDIT_KEY")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

void add_audit_commands(CLI::App& app, Context& ctx) {
  auto* audit = app.add_subcommand("audit", "the tamper-evident audit trail");
  audit->require_subcommand(1);

  auto kg = std::make_shared<KeygenArgs>();
  auto* keygen = audit->add_subcommand(
      "keygen", "create a new chain's keys: the writer key and the auditor's verify key");
  keygen->add_option("--writer-key", kg->writer_key, "writer key file (default DIR/writer.key)");
  keygen->add_option("--verify-key", kg->verify_key, "verify key file, for the auditor")->required();
  keygen->callback([&ctx, kg] { ctx.action = [&ctx, kg] { return do_keygen(ctx, *kg); }; });

  auto va = std::make_shared<VerifyArgs>();
  auto* verify = audit->add_subcommand(
      "verify", "walk the chain; exit 0 only if every record and checkpoint is intact");
  verify->add_option("--verify-key", va->verify_key, "the chain's verify key file")->required();
  verify->add_option("--log", va->log, "audit log (default DIR/audit.log)");
  verify->add_option("--checkpoints", va->checkpoints, "checkpoint file (default as --audit-checkpoints)");
  verify->add_option("--from", va->from, "start at this checkpoint (1-based), trusting what precedes it")
      ->check(CLI::PositiveNumber);
  verify->add_flag("--allow-unanchored", va->allow_unanchored,
                   "accept good records after the last checkpoint (a live log)");
  verify->add_flag("--from-backend", va->from_backend,
                   "walk the store's audit table (setting audit.backend_sink) instead of the log "
                   "file; needs the audit role");
  verify->callback([&ctx, va] { ctx.action = [&ctx, va] { return do_verify(ctx, *va); }; });

  auto ea = std::make_shared<ExportArgs>();
  auto* exp = audit->add_subcommand(
      "export", "print records as JSON lines, for ELK or Splunk (does not verify them)");
  exp->add_option("--since", ea->since, "from this sequence number, or this UTC time (2026-11-25T14:00:00Z)");
  exp->add_option("--log", ea->log, "audit log (default DIR/audit.log)");
  exp->add_flag("--from-backend", ea->from_backend,
                "read the store's audit table (setting audit.backend_sink) instead of the log "
                "file; needs the audit role");
  exp->callback([&ctx, ea] { ctx.action = [&ctx, ea] { return do_export(ctx, *ea); }; });
}

}  // namespace asyncmq::cli

// `asyncmq apikey create | list | revoke`, `asyncmq policy check`, and the
// global identity options.
//
// How the CLI decides who is calling:
//   - No policy configured (setting policy.file: --policy, ASYNCMQ_POLICY,
//     [policy] file in asyncmq.toml) and no
//     credential: nothing is checked; every command works as it always did.
//     Whoever can open the database file can do anything with it.
//   - A policy configured: a credential is required, --api-key (or
//     ASYNCMQ_API_KEY, looked up in the --api-keys store) or --token (or
//     ASYNCMQ_TOKEN, a JWT verified with --jwks). Every backend call of the
//     command is then checked against the policy for that principal.
//   - A credential without a policy is refused: nothing would say what it
//     may do.
// Prefer the environment variables to the options: a command line is
// visible to other users in `ps`.
//
// `apikey` commands work on the key store file, whose mode (0600) is the
// access control; with a policy configured they also need the `apikeys`
// action on all queues (a grant with queues = ["*"] and role admin).
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>

#include "cli/cli_common.hpp"
#include "security/audit_backend.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <cstdlib>
#include <iostream>

namespace asyncmq::cli {
namespace {

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

// Resolves the credential and loads the policy (see the file comment).
void resolve_identity(Context& ctx) {
  const bool has_key = !ctx.api_key.empty(), has_token = !ctx.token.empty();
  if (has_key && has_token)
    throw InvalidArgument("give either an API key (--api-key / ASYNCMQ_API_KEY) or a token "
                          "(--token / ASYNCMQ_TOKEN), not both");
  if (ctx.policy_file.empty()) {
    if (has_key || has_token)
      throw InvalidArgument("a credential was given but no policy (--policy / ASYNCMQ_POLICY / "
                            "policy.file) says what it may do");
    return;
  }
  auto policy = Policy::load_file(ctx.policy_file);
  if (!has_key && !has_token)
    throw Unauthenticated("a policy is configured (" + ctx.policy_file +
                          "): give an API key (ASYNCMQ_API_KEY or --api-key) or a token "
                          "(ASYNCMQ_TOKEN or --token)");
  Principal who;
  if (has_key) {
    who = ApiKeyStore::open(ctx.api_keys_file)->authenticate(ctx.api_key);
  } else {
    if (ctx.jwks_file.empty())
      throw InvalidArgument("--token needs the keys to verify it: --jwks FILE (or ASYNCMQ_JWKS)");
    JwtOptions o;
    o.issuer = ctx.jwt_issuer;
    o.audiences = ctx.jwt_audiences;
    who = JwtVerifier(ctx.jwks_file, Env::system(), o).verify(ctx.token);
  }
  ctx.principal = std::make_shared<const Principal>(std::move(who));
  ctx.policy = std::move(policy);
}

std::string expiry_text(std::int64_t ms) { return ms == 0 ? "never" : format_time_ms(ms); }

boost::json::object info_json(const ApiKeyInfo& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"role_hint", k.role_hint},
          {"created_ms", k.created_ms},
          {"expires_ms", k.expires_ms},
          {"last_used_ms", k.last_used_ms},
          {"revoked", k.revoked}};
}

struct CreateArgs {
  std::string name, role_hint, expires = "0";
};

int do_create(const Context& ctx, const CreateArgs& a) {
  std::int64_t ttl = parse_duration_ms(a.expires);
  require_admin(ctx, asyncmq::Action::apikeys);
  auto store = ApiKeyStore::open(ctx.api_keys_file);
  NewApiKey made = store->create(a.name, a.role_hint, ttl);
  if (ctx.json) {
    auto o = info_json(made.info);
    o["key"] = made.key;
    print_json(o);
  } else {
    std::cout << made.key << '\n';
    std::cout.flush();
    std::cerr << "API key " << made.info.id << " for '" << made.info.name << "', expires "
              << expiry_text(made.info.expires_ms)
              << ". Store it now: it is not shown again (only its hash is kept in "
              << store->file().string() << ").\n";
  }
  return kExitOk;
}

int do_list(const Context& ctx) {
  require_admin(ctx, asyncmq::Action::apikeys);
  auto keys = ApiKeyStore::open(ctx.api_keys_file)->list();
  if (ctx.json) {
    boost::json::array arr;
    for (const auto& k : keys) arr.push_back(info_json(k));
    print_json({{"keys", std::move(arr)}});
    return kExitOk;
  }
  if (keys.empty()) {
    std::cout << "no API keys\n";
    return kExitOk;
  }
  Table t({"ID", "NAME", "ROLE-HINT", "CREATED", "EXPIRES", "LAST-USED", "STATE"});
  for (const auto& k : keys)
    t.add({k.id, k.name, ellipsize(k.role_hint, 24), format_time_ms(k.created_ms),
           expiry_text(k.expires_ms), format_time_ms(k.last_used_ms),
           k.revoked ? "revoked" : "active"});
  t.print(std::cout);
  return kExitOk;
}

int do_revoke(const Context& ctx, const std::string& id) {
  require_admin(ctx, asyncmq::Action::apikeys);
  ApiKeyStore::open(ctx.api_keys_file)->revoke(id);
  if (ctx.json) {
    print_json({{"revoked", id}});
  } else {
    std::cout << "revoked " << id << '\n';
  }
  return kExitOk;
}

struct CheckArgs {
  std::string action, queue;
};

int do_check(const Context& ctx, const CheckArgs& a) {
  auto action = action_from_string(a.action);
  if (!action) throw InvalidArgument("unknown action '" + ellipsize(a.action, 32) + "'");
  if (!ctx.policy) throw InvalidArgument("no policy configured (--policy / ASYNCMQ_POLICY / policy.file)");
  check_audited(ctx, *action, a.queue);
  if (ctx.json) {
    print_json({{"principal", ctx.principal->id()}, {"action", a.action}, {"queue", a.queue},
                {"allowed", true}});
  } else {
    std::cout << "allowed: " << ctx.principal->id() << " may " << a.action << " on queue '"
              << a.queue << "'\n";
  }
  return kExitOk;
}

}  // namespace

// The command ends with the denial, so the log opened here is the only one
// of this process.
void check_audited(const Context& ctx, asyncmq::Action action, std::string_view queue) {
  if (!ctx.policy || ctx.policy->allowed(*ctx.principal, action, queue)) return;
  // The observer holds the log weakly: keep it open through the check.
  auto log = open_audit_log(ctx);
  if (log) security::audit_denials(ctx.policy, log);
  ctx.policy->check(*ctx.principal, action, queue);
}

void require_admin(const Context& ctx, asyncmq::Action action) { check_audited(ctx, action, "*"); }

void add_identity_options(CLI::App& app, Context& ctx) {
  ctx.api_key = env_or("ASYNCMQ_API_KEY", "");
  ctx.token = env_or("ASYNCMQ_TOKEN", "");
  ctx.jwks_file = env_or("ASYNCMQ_JWKS", "");
  ctx.jwt_issuer = env_or("ASYNCMQ_JWT_ISSUER", "");
  if (auto aud = env_or("ASYNCMQ_JWT_AUDIENCE", ""); !aud.empty()) ctx.jwt_audiences.push_back(aud);
  auto last = CLI::MultiOptionPolicy::TakeLast;
  app.add_option("--api-key", ctx.api_key,
                 "API key to act as (env ASYNCMQ_API_KEY, preferred: argv is visible in ps)")
      ->multi_option_policy(last);
  app.add_option("--token", ctx.token, "JWT to act as (env ASYNCMQ_TOKEN, preferred)")
      ->multi_option_policy(last);
  app.add_option("--policy", ctx.policy_file,
                 "policy file (TOML); when set, every command needs a credential and is checked "
                 "(setting policy.file, env ASYNCMQ_POLICY_FILE or ASYNCMQ_POLICY)")
      ->multi_option_policy(last);
  app.add_option("--api-keys", ctx.api_keys_file,
                 "API key store (setting auth.api_keys_file, env ASYNCMQ_AUTH_API_KEYS_FILE or "
                 "ASYNCMQ_API_KEYS; default ./asyncmq-api-keys.json)")
      ->multi_option_policy(last);
  app.add_option("--jwks", ctx.jwks_file, "JWKS file with the keys that verify --token (env ASYNCMQ_JWKS)")
      ->multi_option_policy(last);
  app.add_option("--jwt-issuer", ctx.jwt_issuer, "required token issuer (env ASYNCMQ_JWT_ISSUER)")
      ->multi_option_policy(last);
  app.add_option("--jwt-audience", ctx.jwt_audiences,
                 "accepted token audience, repeatable (env ASYNCMQ_JWT_AUDIENCE)");
}

void wrap_action_with_identity(CLI::App& app, Context& ctx) {
  // The worker's queues, if the worker command was chosen: a worker that
  // may not claim would otherwise run and log a denial at every poll.
  std::vector<std::string> worker_queues;
  if (CLI::App* w = app.get_subcommand("worker"); w && w->parsed()) {
    if (CLI::Option* q = w->get_option_no_throw("--queue")) worker_queues = q->as<std::vector<std::string>>();
  }
  ctx.action = [&ctx, inner = std::move(ctx.action), worker_queues]() {
    resolve_identity(ctx);
    for (const auto& q : worker_queues) check_audited(ctx, asyncmq::Action::claim, q);
    return inner();
  };
}

void add_identity_commands(CLI::App& app, Context& ctx) {
  auto* apikey = app.add_subcommand("apikey", "create, list and revoke API keys");
  apikey->require_subcommand(1);

  auto create_args = std::make_shared<CreateArgs>();
  auto* create = apikey->add_subcommand(
      "create", "make an API key; prints it once (only its SHA-256 is stored)");
  create->add_option("--name", create_args->name, "the principal's name (policy: apikey:NAME)")->required();
  create->add_option("--role-hint", create_args->role_hint,
                     "free text for the policy author (a claim; grants nothing by itself)");
  create->add_option("--expires", create_args->expires, "lifetime: 90s, 15m, 12h, 30d; 0 for never (default 0)");
  create->callback([&ctx, create_args] { ctx.action = [&ctx, create_args] { return do_create(ctx, *create_args); }; });

  auto* list = apikey->add_subcommand("list", "list API keys (never the keys or their hashes)");
  list->callback([&ctx] { ctx.action = [&ctx] { return do_list(ctx); }; });

  auto revoke_id = std::make_shared<std::string>();
  auto* revoke = apikey->add_subcommand("revoke", "revoke an API key by id");
  revoke->add_option("id", *revoke_id, "key id (from apikey list)")->required();
  revoke->callback([&ctx, revoke_id] { ctx.action = [&ctx, revoke_id] { return do_revoke(ctx, *revoke_id); }; });

  auto* policy = app.add_subcommand("policy", "inspect the access policy");
  policy->require_subcommand(1);
  auto check_args = std::make_shared<CheckArgs>();
  auto* check = policy->add_subcommand(
      "check", "exit 0 if the calling principal may do ACTION on QUEUE, else 1 (a denial)");
  check->add_option("--action", check_args->action,
                    "add, claim, complete, fail, heartbeat, pause, resume, retry, clean, cancel, "
                    "remove, read, keys, apikeys, purge or audit")
      ->required();
  check->add_option("--queue", check_args->queue, "queue name")->required();
  check->callback([&ctx, check_args] { ctx.action = [&ctx, check_args] { return do_check(ctx, *check_args); }; });
}

}  // namespace asyncmq::cli

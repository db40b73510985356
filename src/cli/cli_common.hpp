// Shared pieces of the `asyncmq` command: the parsed global options, the
// action a subcommand selects, opening the backend safely, and output.
//
// How a command runs: CLI11 parses the whole command line; the chosen
// subcommand's callback only stores an `Action` in the Context. run_cli then
// runs that action outside the parser, so that parse errors (exit 2) and
// command errors (exit 2 for invalid input, 1 otherwise) are told apart in
// one place (cli.cpp).
//
// Input before I/O: every action validates all of its input (names, JSON,
// options, ids) before it opens the backend, so bad input never creates or
// touches a database file.
#pragma once

#include <asyncmq/audit.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/job.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/settings.hpp>
#include <asyncmq/task.hpp>

#include <boost/json/value.hpp>

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace asyncmq::cli {

// Exit codes (also in include/asyncmq/cli.hpp).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

using Action = std::function<int()>;

// Global options and the selected action. One per run_cli call.
//
// Members that are also settings (backend_uri, key_file, policy_file,
// api_keys_file, audit_dir; see kSettingFlags in cli.cpp) hold their
// flag's value while the command line is parsed, empty if the flag was not
// given, and the effective setting (flag > ASYNCMQ_* > asyncmq.toml >
// default) once run_cli has loaded the settings, before any action runs.
struct Context {
  std::string backend_uri;  // --backend, setting backend.uri
  // The effective settings (asyncmq.toml, ASYNCMQ_* and flags), loaded by
  // run_cli after parsing and before the action runs.
  Settings settings;
  bool json = false;
  // The audit trail (commands_audit.cpp): empty audit_dir (--audit-dir,
  // setting audit.dir) means none.
  std::string audit_dir;
  std::string audit_checkpoints;  // default audit_dir/checkpoints.log
  std::string audit_key;          // default audit_dir/writer.key
  const TaskRegistry* user_tasks = nullptr;
  Action action;

  // Identity (commands_identity.cpp). Credentials are secrets: never
  // printed, logged or put into an error message.
  std::string api_key;        // --api-key / ASYNCMQ_API_KEY
  std::string token;          // --token / ASYNCMQ_TOKEN (a JWT)
  std::string policy_file;    // --policy, setting policy.file
  std::string api_keys_file;  // --api-keys, setting auth.api_keys_file
  std::string jwks_file;      // --jwks / ASYNCMQ_JWKS: keys for --token
  std::string jwt_issuer;     // --jwt-issuer / ASYNCMQ_JWT_ISSUER
  std::vector<std::string> jwt_audiences;  // --jwt-audience / ASYNCMQ_JWT_AUDIENCE
  // Resolved before the action runs (resolve_identity); both null without
  // a policy: then the CLI checks nothing, as before identities existed.
  std::shared_ptr<const Principal> principal;
  std::shared_ptr<Policy> policy;
  // Data protection (issue 5). The key file (--key-file, setting
  // security.key_file); empty: the keys in ASYNCMQ_KEYS if set, else no
  // sealing. The subject key directory (--subject-keys, env
  // ASYNCMQ_SUBJECT_KEYS); empty: "<database file>.subject-keys" next to an
  // sqlite:// store, in memory for memory://.
  std::string key_file;
  std::string subject_keys_dir;
};

// The keys a command seals and opens with, from the global options.
struct Protection {
  std::shared_ptr<Keyring> keys;               // null: no sealing configured
  std::shared_ptr<SubjectKeyStore> subjects;   // null without keys
  std::shared_ptr<Codec> codec;                // the sealing codec, or null
};
// Loads them (KeyFileError for an unsafe or malformed key file).
Protection load_protection(const Context& ctx);

// How a command uses the store.
enum class Access {
  create,       // may create the database (add, worker, pause, bench)
  must_exist,   // read or modify existing data only: a missing file is an error
};

// Checks the backend URI without opening it: for sqlite:// it refuses a path
// that exists but is not a readable SQLite database (InvalidArgument, exit 2),
// and for Access::must_exist a path that does not exist. Never creates or
// changes a file. Other schemes are left to open_backend.
void preflight_backend(std::string_view uri, Access access);

// preflight_backend, then Client::open; with a principal and policy
// resolved, the client enforces the policy; with keys configured
// (load_protection), it seals with them. `env` is the client's Env (the
// system one except in the scheduler's hidden simulation mode).
std::shared_ptr<Client> open_client(const Context& ctx, Access access, Env& env = Env::system());
std::shared_ptr<Client> open_client(const Context& ctx, Access access, const Protection& p,
                                    Env& env = Env::system());

// Registers the subcommands; their callbacks set ctx.action.
void add_job_commands(CLI::App& app, Context& ctx);
void add_queue_commands(CLI::App& app, Context& ctx);
void add_worker_command(CLI::App& app, Context& ctx);
void add_bench_command(CLI::App& app, Context& ctx);
void add_identity_commands(CLI::App& app, Context& ctx);
// `repeat add|list|pause|resume|remove` and `scheduler` (commands_repeat.cpp).
void add_repeat_commands(CLI::App& app, Context& ctx);

// The global identity options (--api-key, --token, --policy, --api-keys,
// --jwks, --jwt-issuer, --jwt-audience and their environment variables).
void add_identity_options(CLI::App& app, Context& ctx);
// Wraps ctx.action so that, before it runs, the credential is resolved to
// a principal and the policy loaded (see commands_identity.cpp), and a
// worker whose principal may not claim from one of its queues is refused.
void wrap_action_with_identity(CLI::App& app, Context& ctx);
// Refuses `action` on `queue` when a policy is configured and denies it,
// hooking the audit trail (when configured) to the policy first: denials
// the CLI decides before any Client exists (a worker that may not claim,
// apikey, keys, purge, policy check) are counted, logged and audited like
// the ones a Client's backend decides. No policy: allows everything.
void check_audited(const Context& ctx, asyncmq::Action action, std::string_view queue);
// check_audited on every queue ("*"): apikey, keys and purge are admin acts.
void require_admin(const Context& ctx, asyncmq::Action action);
void add_keys_commands(CLI::App& app, Context& ctx);  // keys ..., purge
void add_config_commands(CLI::App& app, Context& ctx);

void add_audit_commands(CLI::App& app, Context& ctx);
// The global --audit-dir, --audit-checkpoints, --audit-key options.
void add_audit_options(CLI::App& app, Context& ctx);

// The AuditLog the global options configure, or null when --audit-dir is
// not given. open_client attaches it (actor "cli").
std::shared_ptr<AuditLog> open_audit_log(const Context& ctx);

// ---- output ----

// Milliseconds since the epoch as "2024-05-01T12:34:56.789Z"; "-" for 0.
std::string format_time_ms(std::int64_t ms);

// A job as a JSON object. Payload and result are embedded as JSON when they
// parse, as strings otherwise. The data subject is never shown (only whether
// one is set).
boost::json::object job_to_json(const Job& job);

// The full JSON document on stdout, followed by a newline.
void print_json(const boost::json::value& v);

// A compact, left-aligned text table with a header row.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void add(std::vector<std::string> row);
  void print(std::ostream& out) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Shortens `s` to at most `max` characters, marking the cut with "...",
// after redacting it (redact_text), so the cut never splits a secret.
std::string ellipsize(std::string_view s, std::size_t max);

}  // namespace asyncmq::cli

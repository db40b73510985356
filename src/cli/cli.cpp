// run_cli: the `asyncmq` command line.
//
// Exit codes:
//   0  success
//   2  usage or input error: a CLI11 parse error (unknown option, missing or
//      malformed value), any asyncmq error in the "invalid input" group
//      (bad name, JSON, payload size, option, job id, state, backend URI or
//      scheme), and a database path that is missing (for commands that only
//      read), unreadable, or not an SQLite file.
//   1  runtime error: everything else, including NotFound for a job id that
//      is well formed but absent, and Conflict (e.g. retrying a completed
//      job). NotFound is an answer about the store, not about the command
//      line, so it is not a usage error.
//
// Errors go to stderr as "asyncmq: error: <message>". Messages never contain
// payloads (the library's messages do not echo them, and CLI11's "unexpected
// argument" message, which would echo a stray argument, is replaced) and
// backend URIs in them are masked.
#include <asyncmq/cli.hpp>
#include <asyncmq/error.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_features.hpp"
#include "cli/redacting_output.hpp"
#include "core/log.hpp"
#include "core/uri.hpp"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <exception>
#include <iostream>

namespace asyncmq {
namespace {

void print_error(const std::string& message) {
  std::cerr << "asyncmq: error: " << core::mask_uri(message) << '\n';
}

// boost::system::system_error appends ": <code message> [asyncmq:N]" to the
// text it was given; show the text and the code's name once.
std::string describe(const Error& e) {
  std::string msg = e.what();
  std::string suffix = ": " + e.code().what();
  if (msg.size() >= suffix.size() && msg.compare(msg.size() - suffix.size(), suffix.size(), suffix) == 0)
    msg.erase(msg.size() - suffix.size());
  std::string name = e.code().message();
  if (msg.find(name) != std::string::npos) return msg;  // already says it
  return msg + " (" + name + ")";
}

// CLI11's own message lists every stray argument, and a stray positional
// may be a payload (a forgotten --payload). Name unknown options, which are
// the caller's syntax, but only count stray positionals.
std::string describe_extras(const CLI::App& app) {
  std::vector<std::string> options;
  std::size_t positionals = 0;
  std::vector<const CLI::App*> apps{&app};
  for (std::size_t i = 0; i < apps.size(); ++i) {
    for (const std::string& arg : apps[i]->remaining()) {
      if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
        options.push_back(arg.substr(0, std::min<std::size_t>(arg.find('='), 40)));
      } else {
        ++positionals;
      }
    }
    for (const CLI::App* sub : apps[i]->get_subcommands()) apps.push_back(sub);
  }
  std::string msg;
  if (!options.empty()) {
    msg = options.size() == 1 ? "unknown option " : "unknown options ";
    for (std::size_t i = 0; i < options.size(); ++i) msg += (i ? ", " : "") + options[i];
  }
  if (positionals > 0) {
    if (!msg.empty()) msg += "; ";
    msg += std::to_string(positionals) + " unexpected argument" + (positionals > 1 ? "s" : "") +
           " (not shown: it may hold data)";
  }
  if (msg.empty()) msg = "unexpected arguments";
  return msg;
}

int run_action(const cli::Action& action) {
  try {
    return action();
  } catch (const Error& e) {
    print_error(describe(e));
    return is_invalid_input(e.code()) ? cli::kExitUsage : cli::kExitRuntime;
  } catch (const CLI::Error& e) {
    // Validation a command does itself in CLI11's terms.
    print_error(e.what());
    return cli::kExitUsage;
  } catch (const std::exception& e) {
    print_error(e.what());
    return cli::kExitRuntime;
  }
}

// Global flags that are also settings: what the flag gave goes in as the
// flag layer of load_settings, and the effective value comes back into the
// Context member the commands read.
struct SettingFlag {
  const char* key;
  const char* flag;
  std::string cli::Context::*member;
  std::string Settings::*setting;
};
const SettingFlag kSettingFlags[] = {
    {"backend.uri", "--backend", &cli::Context::backend_uri, &Settings::backend_uri},
    {"security.key_file", "--key-file", &cli::Context::key_file, &Settings::key_file},
    {"policy.file", "--policy", &cli::Context::policy_file, &Settings::policy_file},
    {"auth.api_keys_file", "--api-keys", &cli::Context::api_keys_file, &Settings::api_keys_file},
    {"audit.dir", "--audit-dir", &cli::Context::audit_dir, &Settings::audit_dir},
};

}  // namespace

int run_cli(int argc, const char* const* argv, const TaskRegistry& tasks) {
  // Everything printed from here on is redacted line by line.
  cli::RedactingOutput redacting_output;
  cli::Context ctx;
  ctx.user_tasks = &tasks;

  CLI::App app{"asyncmq: a durable, security-first job queue", "asyncmq"};
  app.require_subcommand(1);
  // Global options may come before or after the subcommand.
  app.fallthrough();
  std::string config_flag, log_level_flag, log_format_flag;
  app.add_option("--config", config_flag,
                 "settings file (env ASYNCMQ_CONFIG; default ./asyncmq.toml if present)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--backend", ctx.backend_uri,
                 "backend URI: sqlite:///./file.db, sqlite:///abs/file.db[?sync=full], memory:// "
                 "(setting backend.uri, env ASYNCMQ_BACKEND_URI or ASYNCMQ_BACKEND; default "
                 "sqlite:///./asyncmq.db)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--log-level", log_level_flag,
                 "debug, info, warn, error or off (setting log.level, env ASYNCMQ_LOG_LEVEL)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--log-format", log_format_flag,
                 "text or json (setting log.format, env ASYNCMQ_LOG_FORMAT)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--json", ctx.json, "print one JSON document to stdout");
  cli::add_audit_options(app, ctx);
  app.footer(
      "Exit codes: 0 ok, 2 usage or input error, 1 runtime error (including job not found).");

  cli::add_job_commands(app, ctx);
  cli::add_queue_commands(app, ctx);
  cli::add_worker_command(app, ctx);
  cli::add_bench_command(app, ctx);
  cli::add_identity_commands(app, ctx);
  cli::add_flow_commands(app, ctx);
  cli::add_events_commands(app, ctx);
  cli::add_repeat_commands(app, ctx);
  cli::add_identity_options(app, ctx);
  cli::add_audit_commands(app, ctx);
  cli::add_keys_commands(app, ctx);
  cli::add_config_commands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError&) {
    print_error(describe_extras(app));
    std::cerr << "Run with --help for more information.\n";
    return cli::kExitUsage;
  } catch (const CLI::ParseError& e) {
    print_error(e.what());
    std::cerr << "Run with --help for more information.\n";
    return cli::kExitUsage;
  } catch (const std::exception& e) {
    // Something thrown by a callback while parsing.
    print_error(e.what());
    return cli::kExitUsage;
  }
  if (!ctx.action) {
    print_error("no command given; run 'asyncmq --help'");
    return cli::kExitUsage;
  }
  // Settings (flag > env > file > default), then logging and redaction by
  // them, before any command touches a backend.
  int loaded = run_action([&] {
    SettingsSources sources;
    sources.config_file = config_flag;
    for (const SettingFlag& f : kSettingFlags) {
      if (!(ctx.*f.member).empty()) sources.flags[f.key] = {f.flag, ctx.*f.member};
    }
    if (!log_level_flag.empty()) sources.flags["log.level"] = {"--log-level", log_level_flag};
    if (!log_format_flag.empty()) sources.flags["log.format"] = {"--log-format", log_format_flag};
    ctx.settings = load_settings(sources);
    configure_redaction(ctx.settings.redaction());
    core::LogConfig log;
    log.level = core::parse_log_level(ctx.settings.log_level);
    log.format = core::parse_log_format(ctx.settings.log_format);
    log.file = ctx.settings.log_file;
    core::configure_logging(log);
    for (const SettingFlag& f : kSettingFlags) ctx.*f.member = ctx.settings.*f.setting;
    return cli::kExitOk;
  });
  if (loaded != cli::kExitOk) return loaded;
  cli::wrap_action_with_identity(app, ctx);
  return run_action(ctx.action);
}

}  // namespace asyncmq

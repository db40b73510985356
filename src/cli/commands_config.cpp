// `asyncmq config show [--json]`: the effective settings, each with where it
// came from (default, file PATH:LINE, env NAME, flag --NAME). URI passwords
// and literal redaction patterns are masked, key material is never read
// here (only whether ASYNCMQ_KEYS is set is shown), and the output passes
// through the CLI's redaction like every other line.
#include "cli/cli_common.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <cstdlib>
#include <iostream>

namespace asyncmq::cli {
namespace {

int do_show(const Context& ctx) {
  std::vector<SettingLine> lines = describe_settings(ctx.settings);
  if (const char* keys = std::getenv("ASYNCMQ_KEYS"); keys && *keys) {
    lines.push_back({"security.keys", ctx.key_file.empty() ? "**** (in use: no key file)"
                                                                    : "**** (ignored: a key file is set)",
                     "env ASYNCMQ_KEYS"});
  }
  if (ctx.json) {
    boost::json::object settings;
    for (const auto& l : lines) settings[l.key] = {{"value", l.value}, {"source", l.origin}};
    print_json({{"config_file", ctx.settings.config_file.empty()
                                    ? boost::json::value(nullptr)
                                    : boost::json::value(ctx.settings.config_file)},
                {"settings", std::move(settings)}});
    return kExitOk;
  }
  std::cout << "settings file: "
            << (ctx.settings.config_file.empty() ? "(none)" : ctx.settings.config_file) << '\n';
  Table t({"KEY", "VALUE", "SOURCE"});
  for (const auto& l : lines) t.add({l.key, l.value.empty() ? "\"\"" : l.value, l.origin});
  t.print(std::cout);
  return kExitOk;
}

}  // namespace

void add_config_commands(CLI::App& app, Context& ctx) {
  auto* config = app.add_subcommand("config", "inspect the settings (asyncmq.toml, ASYNCMQ_*, flags)");
  config->require_subcommand(1);
  auto* show = config->add_subcommand(
      "show", "print the effective settings, secrets masked, and where each came from");
  show->callback([&ctx] { ctx.action = [&ctx] { return do_show(ctx); }; });
}

}  // namespace asyncmq::cli

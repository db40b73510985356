// Settings: what the `asyncmq` command (and a program that wants the same
// configuration) reads from `asyncmq.toml`, ASYNCMQ_* variables and flags.
//
// Where a value comes from, highest first:
//   1. a command-line flag (--backend, --log-level, --log-format,
//      --key-file, --policy, --api-keys, --audit-dir)
//   2. the environment: ASYNCMQ_<SECTION>_<KEY>, the dotted key upper-cased
//      with '.' as '_' (backend.uri -> ASYNCMQ_BACKEND_URI, log.level ->
//      ASYNCMQ_LOG_LEVEL, security.key_file -> ASYNCMQ_SECURITY_KEY_FILE,
//      guards.max_depth -> ASYNCMQ_GUARDS_MAX_DEPTH, audit.dir ->
//      ASYNCMQ_AUDIT_DIR, audit.backend_sink ->
//      ASYNCMQ_AUDIT_BACKEND_SINK). Older names are kept: ASYNCMQ_BACKEND,
//      ASYNCMQ_KEY_FILE, ASYNCMQ_POLICY and ASYNCMQ_API_KEYS (the
//      ASYNCMQ_<SECTION>_<KEY> name wins when both are set). Lists are
//      comma-separated; booleans are true/false/1/0/yes/no.
//   3. the settings file: `--config FILE`, else ASYNCMQ_CONFIG, else
//      ./asyncmq.toml if it exists (a file named explicitly must exist)
//   4. the default
//
// The file (every key optional):
//
//   [backend]
//   uri = "sqlite:///./asyncmq.db"   # passwords in it are masked when shown
//   [log]
//   level = "warn"                   # debug | info | warn | error | off
//   format = "text"                  # text | json (one JSON object a line)
//   file = ""                        # also append log lines here (0600)
//   [security]
//   key_file = ""                    # keyring file; set: payloads are sealed
//   redact_fields = []               # added to default_redacted_fields()
//   redact_patterns = []             # "literal:TEXT" or a regular expression
//   [guards]                         # every queue's limits (GuardLimits)
//   max_payload_bytes = 0
//   max_depth = 32
//   max_keys_per_object = 10000
//   max_keys_total = 100000
//   allow_pan = false
//   [guards.queue."payments.*"]      # a queue pattern's own limits: the
//   allow_pan = true                 # keys above, unset ones from [guards]
//   [policy]
//   file = ""                        # access policy (TOML); set: every
//                                    # command needs a credential
//   [auth]
//   api_keys_file = "asyncmq-api-keys.json"  # the API key store
//   [audit]
//   dir = ""                         # set: write the audit trail there
//   backend_sink = false             # also keep the chain in the store's
//                                    # audit table (AuditOptions::backend_sink)
//
// Per-queue guard tables are read from the file only. A key the table does
// not know, a value of the wrong type or a malformed value is refused with
// InvalidArgument (errc::invalid_config) naming the key and the file and
// line, or the variable or flag; never ignored.
//
// Thread safety: load_settings is safe to call concurrently (it only reads
// the environment and the file); a Settings is a plain value.
#pragma once

#include <asyncmq/security.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace asyncmq {

struct Settings {
  std::string backend_uri = "sqlite:///./asyncmq.db";
  std::string log_level = "warn";
  std::string log_format = "text";
  std::string log_file;
  std::string key_file;
  std::vector<std::string> redact_fields;    // in addition to the defaults
  std::vector<std::string> redact_patterns;
  GuardOptions guards;
  std::string policy_file;
  std::string api_keys_file = "asyncmq-api-keys.json";
  std::string audit_dir;
  bool audit_backend_sink = false;  // AuditOptions::backend_sink

  // The settings file read; empty if none.
  std::string config_file;
  // For every key shown by describe_settings: "default", "file PATH:LINE",
  // "env NAME" or "flag --NAME".
  std::map<std::string, std::string> origins;

  // The redaction rules these settings ask for (defaults plus additions).
  RedactionOptions redaction() const;
};

struct SettingsSources {
  // --config; empty: ASYNCMQ_CONFIG, then ./asyncmq.toml if it exists.
  std::string config_file;
  // Flag values by dotted key, with the flag's name for messages and
  // origins: {"backend.uri", {"--backend", "memory://"}}.
  std::map<std::string, std::pair<std::string, std::string>> flags;
  // How variables are read (tests replace it). Null: std::getenv.
  std::function<const char*(const char*)> getenv;
};

// Reads file, environment and flags (order above). Throws InvalidArgument
// (errc::invalid_config) as described above, NotFound-free: a missing file
// named explicitly is InvalidArgument too (the CLI exits 2).
Settings load_settings(const SettingsSources& sources);

// One line of `asyncmq config show`: the effective value as text, with URI
// passwords and literal redaction patterns masked, and its origin.
struct SettingLine {
  std::string key;
  std::string value;
  std::string origin;
};
std::vector<SettingLine> describe_settings(const Settings& settings);

// The variable that sets `key` ("backend.uri" -> "ASYNCMQ_BACKEND_URI").
std::string settings_env_name(std::string_view key);

}  // namespace asyncmq

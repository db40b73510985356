// The planted-secrets acceptance test (issue 5): the CLI and a worker run
// with a sealing key, a backend URI password, a redacted payload field that
// a task fails on, a card number, and a handler's log line and progress
// holding secrets; none of them may appear in anything the processes print
// (job show, job logs, events tail, with and without --json), in the log
// file, or (sealing being on) in the SQLite database, its WAL or its
// shared-memory file.
//
// No sleeps: the worker is polled with the CLI a bounded number of times.
#include <asyncmq/backend.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/codec.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>

#include "security/crypto.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/text_file.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace asyncmq::testing {
namespace {

namespace fs = std::filesystem;

// Every window of `min_len` bytes of `secret` found in `haystack`.
std::vector<std::string> windows_in(const std::string& haystack, const std::string& secret,
                                    std::size_t min_len) {
  std::vector<std::string> found;
  if (secret.size() < min_len) min_len = secret.size();
  for (std::size_t i = 0; i + min_len <= secret.size(); ++i) {
    std::string w = secret.substr(i, min_len);
    if (haystack.find(w) != std::string::npos) found.push_back(w);
  }
  return found;
}

class PlantedSecrets : public ::testing::Test {
 protected:
  void SetUp() override {
    key_bytes_ = security::random_bytes(32);
    key_b64_ = security::base64_encode(key_bytes_);
    env_key_b64_ = security::base64_encode(security::random_bytes(32));
    std::ofstream(keys()) << "# sealing key\nk1 primary " << key_b64_ << "\n";
    ASSERT_EQ(::chmod(keys().c_str(), 0600), 0);
    std::ofstream(dir_.file("asyncmq.toml"))
        << "[backend]\nuri = \"sqlite://" << db() << "\"\n"
        << "[log]\nlevel = \"debug\"\nformat = \"json\"\nfile = \"" << log() << "\"\n"
        << "[security]\nkey_file = \"" << keys() << "\"\n";
    options_.cwd = dir_.path();  // the CLI finds ./asyncmq.toml there
  }

  std::string db() const { return dir_.file("q.db"); }
  std::string keys() const { return dir_.file("keys"); }

  // What a user's handler does, written here in-process with the same keys
  // as the CLI (no worker program needed): a job on queue "handler",
  // claimed, with one log line (sealed, Field::log) and one progress value
  // (sealed, Field::progress, as the worker does).
  std::string run_handler(const std::string& log_line, const std::string& progress) {
    ClientOptions o;
    o.codec = make_sealing_codec(Keyring::load_file(keys()),
                                 open_subject_key_dir(db() + ".subject-keys"));
    auto client = Client::open("sqlite://" + db(), Env::system(), std::move(o));
    Queue queue(client, "handler");
    JobId id = sync_wait(queue.add("report", boost::json::object{{"step", 1}}));
    Backend& backend = client->backend();
    ClaimRequest claim;
    claim.queue = "handler";
    claim.worker_id = "planted-test";
    claim.now_ms = client->env().now_ms();
    std::vector<Job> jobs = sync_wait(backend.claim(claim));
    EXPECT_EQ(jobs.size(), 1u);
    if (jobs.empty()) return id.str();
    LeaseRef lease{jobs[0].id, jobs[0].lease.token};
    std::vector<LogLine> lines(1);
    lines[0].time_ms = claim.now_ms;
    lines[0].text = client->codec().encode(codec_context(jobs[0], Field::log), log_line);
    EXPECT_TRUE(sync_wait(backend.append_logs(lease, std::move(lines))));
    std::string sealed_progress =
        client->codec().encode(codec_context(jobs[0], Field::progress), progress);
    EXPECT_TRUE(sync_wait(backend.set_progress(lease, sealed_progress, claim.now_ms)));
    return id.str();
  }
  std::string log() const { return dir_.file("asyncmq.log"); }

  ProcessResult cli(std::vector<std::string> args, ProcessOptions options = {}) {
    if (options.cwd.empty()) options.cwd = options_.cwd;
    args.insert(args.begin(), ASYNCMQ_CLI_PATH);
    ProcessResult r = run_process(args, options);
    said_.push_back(r.out);
    said_.push_back(r.err);
    return r;
  }

  std::string state_of(const std::string& id) {
    ProcessResult r = cli({"job", "show", id, "--json"});
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(r.out, ec);
    if (ec || !v.is_object()) return "?";
    return std::string(v.at("state").as_string());
  }

  TempDir dir_;
  ProcessOptions options_;
  std::string key_bytes_, key_b64_, env_key_b64_;
  std::vector<std::string> said_;  // every stdout and stderr
};

TEST_F(PlantedSecrets, NoneAppearsInAnyOutputLogOrStore) {
  const std::string field_password = "Field-Pw-PLANTED-88ab1e";
  const std::string uri_password = "Uri-Pw-PLANTED-5d1c07";
  const std::string pan = "4111 1111 1111 1111";
  const std::string pan_digits = "4111111111111111";

  // 1. A job whose payload holds a password and whose task (the built-in
  //    `fail`) fails with an error message that names it.
  boost::json::object payload;
  payload["user"] = "bob";
  payload["password"] = field_password;
  payload["message"] = "login failed for {\"user\": \"bob\", \"password\": \"" + field_password + "\"}";
  ProcessResult add = cli({"job", "add", "planted", "fail", "--attempts", "1", "--payload",
                           boost::json::serialize(payload)});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  const std::string id = trim(add.out);

  // 2. A card number in a payload: refused by the guard, naming the rule and
  //    the path.
  ProcessResult card = cli({"job", "add", "planted", "echo", "--payload",
                            "{\"customer\":{\"card\":\"" + pan + "\"}}"});
  EXPECT_EQ(card.exit_code, 2) << card.err;
  EXPECT_NE(card.err.find("card_number"), std::string::npos) << card.err;
  EXPECT_NE(card.err.find("$.customer.card"), std::string::npos) << card.err;
  ProcessResult card_number = cli({"job", "add", "planted", "echo", "--payload",
                                   "[1, " + pan_digits + "]"});
  EXPECT_EQ(card_number.exit_code, 2) << card_number.err;

  // 3. A backend URI with a password, on the command line and in the
  //    environment: fails cleanly, masked.
  ProcessResult redis = cli({"--backend", "redis://app:" + uri_password + "@127.0.0.1:1/0",
                             "queue", "stats"});
  EXPECT_EQ(redis.exit_code, 2) << redis.err;
  EXPECT_NE(redis.err.find("unsupported backend scheme"), std::string::npos) << redis.err;
  // Error paths that do print the URI print it masked.
  ProcessResult opt = cli({"--backend", "memory://app:" + uri_password + "@h/?colour=1", "queue",
                           "stats"});
  EXPECT_EQ(opt.exit_code, 2) << opt.err;
  EXPECT_NE(opt.err.find("memory://app:****@h/"), std::string::npos) << opt.err;
  ProcessResult host = cli({"--backend", "sqlite://app:" + uri_password + "@host/x.db", "queue",
                            "stats"});
  EXPECT_EQ(host.exit_code, 2) << host.err;
  EXPECT_NE(host.err.find("sqlite://app:****@host"), std::string::npos) << host.err;
  ProcessOptions with_env = options_;
  with_env.env["ASYNCMQ_BACKEND_URI"] = "postgres://app:" + uri_password + "@127.0.0.1:1/x";
  with_env.env["ASYNCMQ_KEYS"] = "k9 primary " + env_key_b64_;
  ProcessResult shown = cli({"config", "show"}, with_env);
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("postgres://app:****@"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("env ASYNCMQ_BACKEND_URI"), std::string::npos) << shown.out;
  cli({"config", "show", "--json"}, with_env);
  cli({"--backend", "postgres://app:" + uri_password + "@127.0.0.1:1/x", "job", "list", "planted"});

  // 4. A worker runs the job to `dead` (one attempt).
  Process worker({ASYNCMQ_CLI_PATH, "worker", "--queue", "planted"}, options_);
  bool dead = false;
  for (int i = 0; i < 600 && !dead; ++i) dead = state_of(id) == "dead";
  worker.send_signal(SIGTERM);
  auto stopped = worker.wait_for(60'000);
  ASSERT_TRUE(stopped.has_value()) << "worker did not stop";
  said_.push_back(stopped->out);
  said_.push_back(stopped->err);
  ASSERT_TRUE(dead) << stopped->err;

  // 5. Everything a person would look at.
  ProcessResult show = cli({"job", "show", id});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("login failed"), std::string::npos) << show.out;  // the error is there...
  EXPECT_NE(show.out.find("****"), std::string::npos) << show.out;          // ...masked
  ProcessResult json = cli({"job", "show", id, "--json"});
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json.out, ec);
  ASSERT_FALSE(ec) << "redacted JSON output must stay JSON";
  EXPECT_EQ(v.at("payload").at("password"), "****");
  EXPECT_EQ(v.at("payload").at("user"), "bob");
  cli({"job", "list", "planted", "--state", "dead"});
  cli({"job", "list", "planted", "--state", "dead", "--json"});
  cli({"queue", "stats"});

  // 5b. A handler's log line and progress: shown, redacted, by job logs,
  //     job show and events tail (a progress event carries no value; tail
  //     shows the job's current one).
  const std::string log_secret = "Log-Pw-PLANTED-2b7e90";
  // Not PLANTED-like, so that the store scan for windows of the field
  // password cannot match it; step 7 scans for it on its own.
  const std::string progress_token = "ProgTok.c41f3a9e77";
  // The events tail --from-start below reads what was recorded meanwhile.
  ASSERT_EQ(cli({"events", "record", "--for", "1h"}).exit_code, 0);
  const std::string handler = run_handler(
      "calling the bank with {\"user\": \"bob\", \"password\": \"" + log_secret +
          "\"} for card " + pan,
      "{\"step\":\"auth\",\"token\":\"" + progress_token + "\"}");
  ProcessResult logs = cli({"job", "logs", handler});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("calling the bank"), std::string::npos) << logs.out;
  ProcessResult logs_json = cli({"job", "logs", handler, "--json"});
  ASSERT_EQ(logs_json.exit_code, 0) << logs_json.err;
  boost::json::value lj = boost::json::parse(logs_json.out, ec);
  ASSERT_FALSE(ec) << "redacted JSON output must stay JSON: " << logs_json.out;
  ASSERT_EQ(lj.at("lines").as_array().size(), 1u);
  std::string line_text(lj.at("lines").at(0).at("text").as_string());
  EXPECT_NE(line_text.find("calling the bank"), std::string::npos) << line_text;
  EXPECT_NE(line_text.find("****"), std::string::npos) << line_text;
  ProcessResult handler_json = cli({"job", "show", handler, "--json"});
  boost::json::value hj = boost::json::parse(handler_json.out, ec);
  ASSERT_FALSE(ec) << handler_json.out;
  EXPECT_EQ(hj.at("progress").at("step"), "auth");
  EXPECT_EQ(hj.at("progress").at("token"), "****");
  cli({"job", "show", handler});
  // The handler's job has three events: waiting, active, progress.
  ProcessResult events = cli({"events", "tail", "handler", "--from-start", "--count", "3", "--json"});
  ASSERT_EQ(events.exit_code, 0) << events.err;
  std::istringstream event_lines(events.out);
  std::string event_line;
  boost::json::value progress_now;
  int progress_events = 0;
  while (std::getline(event_lines, event_line)) {
    boost::json::value e = boost::json::parse(event_line, ec);
    ASSERT_FALSE(ec) << "redacted JSON output must stay JSON: " << event_line;
    if (e.at("type") != "progress") continue;
    ++progress_events;
    EXPECT_EQ(e.at("detail"), "") << "a progress event carries no value: " << event_line;
    EXPECT_TRUE(e.at("progress_error").is_null()) << event_line;
    progress_now = e.at("progress");
  }
  EXPECT_EQ(progress_events, 1) << events.out;
  ASSERT_TRUE(progress_now.is_object()) << events.out;
  EXPECT_EQ(progress_now.at("step"), "auth") << events.out;
  EXPECT_EQ(progress_now.at("token"), "****") << events.out;
  ProcessResult events_text = cli({"events", "tail", "handler", "--from-start", "--count", "3"});
  EXPECT_EQ(events_text.exit_code, 0) << events_text.err;
  EXPECT_NE(events_text.out.find("progress"), std::string::npos) << events_text.out;
  EXPECT_NE(events_text.out.find("now: {\"step\":\"auth\""), std::string::npos)
      << events_text.out;

  // 6. Nothing planted anywhere.
  std::string logged = slurp(log());
  EXPECT_FALSE(logged.empty()) << "the log file was not written (log level debug)";
  std::vector<std::pair<std::string, std::string>> planted = {
      {"key (base64)", key_b64_},       {"env key (base64)", env_key_b64_},
      {"field password", field_password}, {"URI password", uri_password},
      {"card number", pan},             {"card digits", pan_digits},
      {"log line password", log_secret}, {"progress token", progress_token}};
  for (const auto& [what, secret] : planted) {
    for (std::size_t i = 0; i < said_.size(); ++i) {
      EXPECT_EQ(said_[i].find(secret), std::string::npos)
          << what << " in output #" << i << ":\n" << said_[i];
    }
    EXPECT_EQ(logged.find(secret), std::string::npos) << what << " in the log file:\n" << logged;
  }
  // Raw key bytes: not in any output either.
  for (const auto& s : said_) EXPECT_EQ(s.find(key_bytes_), std::string::npos);

  // 7. The store: no 8-byte window of the field password, and no key.
  std::string stored;
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    std::string name = entry.path().filename().string();
    if (name.rfind("q.db", 0) == 0) stored += slurp(entry.path().string());
  }
  ASSERT_FALSE(stored.empty());
  auto leaks = windows_in(stored, field_password, 8);
  EXPECT_TRUE(leaks.empty()) << "field password window in the store: " << leaks.front();
  EXPECT_EQ(stored.find(key_b64_), std::string::npos);
  EXPECT_EQ(stored.find(key_bytes_), std::string::npos);
  EXPECT_TRUE(windows_in(stored, "login failed", 12).empty()) << "the error is stored unsealed";
  auto progress_leaks = windows_in(stored, progress_token, 8);
  EXPECT_TRUE(progress_leaks.empty()) << "progress token window in the store: "
                                      << progress_leaks.front();
  EXPECT_TRUE(windows_in(stored, log_secret, 8).empty()) << "the log line is stored unsealed";
}

}  // namespace
}  // namespace asyncmq::testing

// `asyncmq keys add | activate | list | retire | reseal` and
// `asyncmq purge --subject ID`: key rotation and erasure (issue 5).
//
// Rotation, step by step:
//   asyncmq keys add                 a new random key, decrypt-only
//   asyncmq keys activate ID         it seals from now on (workers reload
//                                    the key file on SIGHUP or when it
//                                    changes; the old primary opens only)
//   asyncmq keys reseal              every stored job moves under it, while
//                                    workers keep running
//   asyncmq keys retire OLD          disabled; refused while anything
//                                    stored still needs it
// Output never holds key bytes, subjects or their blind indexes.
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"
#include "security/key_file.hpp"
#include "security/reseal.hpp"
#include "security/sealing_codec.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>

namespace asyncmq::cli {
namespace {

const std::string& require_key_file(const Context& ctx) {
  require_admin(ctx, asyncmq::Action::keys);
  if (ctx.key_file.empty())
    throw InvalidArgument(
        "this command edits the key file: give --key-file PATH (or set ASYNCMQ_KEY_FILE or "
        "security.key_file)");
  return ctx.key_file;
}

// The sealing codec of `p`, or InvalidArgument if no keys are configured.
security::SealingCodec& sealing(const Protection& p) {
  auto* codec = dynamic_cast<security::SealingCodec*>(p.codec.get());
  if (!codec)
    throw InvalidArgument(
        "no keys configured: give --key-file PATH (or set ASYNCMQ_KEY_FILE, security.key_file or "
        "ASYNCMQ_KEYS)");
  return *codec;
}

std::uint64_t count_of(const std::map<std::string, std::uint64_t>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? 0 : it->second;
}

// Key usage of the store, if the store exists; nullopt otherwise (a key file
// can be managed before any job is stored).
std::optional<security::KeyUsage> usage_if_store(const Context& ctx, const Protection& p) {
  try {
    preflight_backend(ctx.backend_uri, Access::must_exist);
  } catch (const InvalidArgument&) {
    return std::nullopt;
  }
  auto client = open_client(ctx, Access::must_exist, p);
  return sync_wait(security::key_usage(client->backend(), sealing(p)));
}

int do_add(const Context& ctx, const std::string& id, bool index) {
  security::KeyFileEditor editor(require_key_file(ctx), /*create_missing=*/true);
  std::string made = editor.add(id, Env::system().now_ms(), index);
  editor.save();
  if (index) {
    if (ctx.json) {
      print_json({{"id", made}, {"state", "index"}});
    } else {
      std::cout << made << '\n';
    }
    return kExitOk;
  }
  if (ctx.json) {
    print_json({{"id", made}, {"state", "decrypt-only"}});
  } else {
    std::cout << made << '\n';
    std::cerr << "added key '" << made << "' (decrypt-only); make it primary with "
              << "'asyncmq keys activate " << made << "'\n";
  }
  return kExitOk;
}

int do_activate(const Context& ctx, const std::string& id) {
  security::KeyFileEditor editor(require_key_file(ctx), /*create_missing=*/false);
  std::string old = editor.ring()->primary_id();
  editor.set_state(id, KeyState::primary);
  editor.save();
  if (ctx.json) {
    print_json({{"primary", id}, {"previous", old.empty() ? boost::json::value(nullptr) : boost::json::value(old)}});
  } else {
    std::cout << "key '" << id << "' is primary"
              << (old.empty() || old == id ? std::string() : "; '" + old + "' is decrypt-only")
              << '\n';
    std::cerr << "running workers pick it up on SIGHUP or within a second of the file change; "
                 "then run 'asyncmq keys reseal'\n";
  }
  return kExitOk;
}

int do_list(const Context& ctx) {
  require_admin(ctx, asyncmq::Action::keys);
  Protection p = load_protection(ctx);
  if (!p.keys)
    throw InvalidArgument(
        "no keys configured: give --key-file PATH (or set ASYNCMQ_KEY_FILE, security.key_file or "
        "ASYNCMQ_KEYS)");
  auto usage = usage_if_store(ctx, p);
  auto keys = p.keys->list();
  if (ctx.json) {
    boost::json::array arr;
    for (const auto& k : keys) {
      boost::json::object o;
      o["id"] = k.id;
      o["state"] = std::string(to_string(k.state));
      o["created"] = k.created_ms ? boost::json::value(format_time_ms(k.created_ms))
                                  : boost::json::value(nullptr);
      if (usage) {
        o["jobs"] = count_of(usage->jobs_by_key, k.id);
        o["log_jobs"] = count_of(usage->log_jobs_by_key, k.id);  // of `jobs`
        o["subject_keys"] = count_of(usage->subject_keys_by_key, k.id);
      }
      arr.push_back(std::move(o));
    }
    boost::json::object doc;
    doc["keys"] = std::move(arr);
    doc["index_key"] = p.keys->has_index_key();
    if (usage) {
      doc["jobs_scanned"] = usage->jobs;
      doc["log_lines_scanned"] = usage->log_lines;
      doc["subject_sealed_jobs"] = usage->subject_jobs;
      doc["unsealed_jobs"] = usage->unsealed_jobs;
    }
    print_json(doc);
    return kExitOk;
  }
  Table t({"ID", "STATE", "CREATED", "JOBS", "BY-LOGS", "SUBJECT-KEYS"});
  for (const auto& k : keys) {
    t.add({k.id, std::string(to_string(k.state)), format_time_ms(k.created_ms),
           usage ? std::to_string(count_of(usage->jobs_by_key, k.id)) : "-",
           usage ? std::to_string(count_of(usage->log_jobs_by_key, k.id)) : "-",
           usage ? std::to_string(count_of(usage->subject_keys_by_key, k.id)) : "-"});
  }
  t.print(std::cout);
  if (usage) {
    std::cout << usage->jobs << " stored jobs with " << usage->log_lines << " log lines; "
              << usage->subject_jobs << " sealed under their subject's key";
    if (usage->unsealed_jobs) std::cout << "; " << usage->unsealed_jobs << " not sealed";
    std::cout << '\n';
  }
  if (!p.keys->has_index_key())
    std::cout << "no index key: jobs with a data subject cannot be added\n";
  return kExitOk;
}

int do_retire(const Context& ctx, const std::string& id) {
  security::KeyFileEditor editor(require_key_file(ctx), /*create_missing=*/false);
  auto ring = editor.ring();
  bool known = false;
  for (const auto& k : ring->list()) known = known || k.id == id;
  if (!known) throw NotFound("no key with id '" + id + "' in " + ctx.key_file);
  if (ring->primary_id() == id)
    throw Conflict("key '" + id + "' is the primary key; activate another key first");
  Protection p = load_protection(ctx);
  if (auto usage = usage_if_store(ctx, p)) {
    std::uint64_t jobs = count_of(usage->jobs_by_key, id);
    std::uint64_t log_jobs = count_of(usage->log_jobs_by_key, id);
    std::uint64_t subject_keys = count_of(usage->subject_keys_by_key, id);
    if (jobs || subject_keys) {
      // Log lines named apart: a job whose row is under the new key (a
      // reseal from before log lines were walked) can still need the old
      // one through its lines alone, which the job count does not show.
      std::string by_logs;
      if (log_jobs)
        by_logs = " (" + std::to_string(log_jobs) + " of the jobs through their log lines)";
      throw Conflict("key '" + id + "' is still needed by " + std::to_string(jobs) +
                     " stored jobs" + by_logs + " and " + std::to_string(subject_keys) +
                     " subject keys; run 'asyncmq keys reseal' first");
    }
  }
  editor.set_state(id, KeyState::disabled);
  editor.save();
  if (ctx.json) {
    print_json({{"id", id}, {"state", "disabled"}});
  } else {
    std::cout << "key '" << id << "' is disabled\n";
  }
  return kExitOk;
}

// A progress line on a terminal, redrawn in place.
void draw_bar(std::uint64_t done, std::uint64_t total, const security::ResealProgress& p) {
  constexpr int kWidth = 30;
  double frac = total ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 1.0;
  int fill = static_cast<int>(frac * kWidth);
  std::cerr << "\r  pass " << p.pass << " [" << std::string(static_cast<std::size_t>(fill), '#')
            << std::string(static_cast<std::size_t>(kWidth - fill), '.') << "] "
            << static_cast<int>(frac * 100) << "%  " << done << "/" << total << " scanned, "
            << p.resealed << " re-sealed" << std::flush;
}

boost::asio::awaitable<std::uint64_t> total_jobs(Backend& backend) {
  std::uint64_t total = 0;
  std::vector<std::string> names = co_await backend.queues();
  for (const auto& q : names) {
    StateCounts c = co_await backend.counts(q);
    for (auto n : c) total += n;
  }
  co_return total;
}

int do_reseal(const Context& ctx, std::size_t batch) {
  if (batch < 1 || batch > 1000) throw InvalidArgument("--batch must be in [1, 1000]");
  require_admin(ctx, asyncmq::Action::keys);
  Protection p = load_protection(ctx);
  security::SealingCodec& codec = sealing(p);
  auto client = open_client(ctx, Access::must_exist, p);
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  const std::uint64_t total = sync_wait(total_jobs(client->backend()));
  std::uint64_t batches = 0;
  security::ResealOptions o;
  o.batch = batch;
  o.progress = [&](const security::ResealProgress& pr) {
    ++batches;
    if (tty) {
      draw_bar(pr.scanned, total, pr);
    } else if (batches % 50 == 0) {
      std::cerr << "reseal: pass " << pr.pass << ": " << pr.scanned << " of about " << total
                << " scanned, " << pr.resealed << " re-sealed\n";
    }
  };
  security::ResealReport r = sync_wait(security::reseal_all(client->backend(), codec, o));
  if (tty) std::cerr << '\n';
  const std::string primary = p.keys->primary_id();
  if (ctx.json) {
    print_json({{"primary", primary},
                {"resealed", r.resealed},
                {"passes", r.passes},
                {"complete", r.complete},
                {"scanned", r.last.scanned},
                {"log_lines_scanned", r.last.log_lines_scanned},
                {"unopenable", r.last.unopenable},
                {"conflicts", r.last.conflicts},
                {"subject_keys_rewrapped", r.subject_keys.rewrapped},
                {"subject_keys_failed", r.subject_keys.failed}});
  } else {
    std::cout << "re-sealed " << r.resealed << " jobs under key '" << primary << "' in "
              << r.passes << (r.passes == 1 ? " pass" : " passes") << "; " << r.last.scanned
              << " jobs and " << r.last.log_lines_scanned << " log lines checked";
    if (r.subject_keys.rewrapped) std::cout << "; " << r.subject_keys.rewrapped << " subject keys re-wrapped";
    std::cout << '\n';
    if (r.last.unopenable)
      std::cout << r.last.unopenable << " jobs have a field or log line that failed to open; "
                << "they were left as they are (see 'asyncmq keys list')\n";
    if (r.subject_keys.failed)
      std::cout << r.subject_keys.failed << " subject keys failed to open and were left\n";
    if (!r.complete)
      std::cout << "jobs kept changing under the walk; run 'asyncmq keys reseal' again\n";
  }
  return r.complete && r.last.unopenable == 0 && r.subject_keys.failed == 0 ? kExitOk
                                                                             : kExitRuntime;
}

int do_purge(const Context& ctx, std::string subject) {
  if (subject.empty()) throw InvalidArgument("--subject must not be empty");
  if (subject.size() > 256) throw InvalidArgument("--subject is longer than 256 bytes");
  require_admin(ctx, asyncmq::Action::purge);
  Protection p = load_protection(ctx);
  auto client = open_client(ctx, Access::must_exist, p);
  // The sealing codec itself, not the client's: that one wraps it in the
  // payload guards, and erase_subject destroys the subject key only through
  // a SealingCodec.
  Codec& codec = p.codec ? *p.codec : client->codec();
  security::ErasureReport r =
      sync_wait(security::erase_subject(client->backend(), codec, std::move(subject)));
  const bool key_destroyed = r.key_destroyed;
  if (ctx.json) {
    print_json({{"purged_jobs", r.jobs}, {"subject_key_destroyed", key_destroyed},
                {"scrubbed", r.scrubbed}});
  } else {
    std::cout << "purged " << r.jobs << " jobs of the subject"
              << (key_destroyed ? "; its data key is destroyed" : "") << '\n';
    if (!r.scrubbed)
      std::cout << "the store could not overwrite every old copy now (another process held "
                   "it); run the purge again when it is idle\n";
  }
  return kExitOk;
}

}  // namespace

void add_keys_commands(CLI::App& app, Context& ctx) {
  if (const char* e = std::getenv("ASYNCMQ_SUBJECT_KEYS"); e && *e) ctx.subject_keys_dir = e;
  app.add_option("--key-file", ctx.key_file,
                 "key file: payloads are sealed with its primary key (setting "
                 "security.key_file, env ASYNCMQ_SECURITY_KEY_FILE or ASYNCMQ_KEY_FILE; else "
                 "the keys in ASYNCMQ_KEYS; else no sealing)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--subject-keys", ctx.subject_keys_dir,
                 "directory of per-subject data keys (env ASYNCMQ_SUBJECT_KEYS; default "
                 "<database file>.subject-keys)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  auto* keys = app.add_subcommand("keys", "manage the keyring: add, activate, list, retire, reseal");
  keys->require_subcommand(1);

  auto add_id = std::make_shared<std::string>();
  auto add_index = std::make_shared<bool>(false);
  auto* add = keys->add_subcommand("add", "add a new random 256-bit key (decrypt-only until activated)");
  add->add_option("--id", *add_id, "key id (default: k<date>-<random>)");
  add->add_flag("--index", *add_index,
                "make it the blind-index key for data subjects instead (at most one)");
  add->callback([&ctx, add_id, add_index] {
    ctx.action = [&ctx, add_id, add_index] { return do_add(ctx, *add_id, *add_index); };
  });

  auto act_id = std::make_shared<std::string>();
  auto* act = keys->add_subcommand("activate", "make a key primary (the old primary becomes decrypt-only)");
  act->add_option("id", *act_id, "key id")->required();
  act->callback([&ctx, act_id] { ctx.action = [&ctx, act_id] { return do_activate(ctx, *act_id); }; });

  auto* list = keys->add_subcommand("list", "list keys: ids, states, created, stored jobs per key");
  list->callback([&ctx] { ctx.action = [&ctx] { return do_list(ctx); }; });

  auto ret_id = std::make_shared<std::string>();
  auto* ret = keys->add_subcommand("retire", "disable a key (refused while stored jobs need it)");
  ret->add_option("id", *ret_id, "key id")->required();
  ret->callback([&ctx, ret_id] { ctx.action = [&ctx, ret_id] { return do_retire(ctx, *ret_id); }; });

  auto batch = std::make_shared<std::size_t>(500);
  auto* reseal = keys->add_subcommand(
      "reseal", "re-seal every stored job under the primary key (safe while workers run; resumable)");
  reseal->add_option("--batch", *batch, "jobs per batch (default 500)");
  reseal->callback([&ctx, batch] { ctx.action = [&ctx, batch] { return do_reseal(ctx, *batch); }; });

  auto subject = std::make_shared<std::string>();
  auto* purge = app.add_subcommand(
      "purge", "erase every job of a data subject and destroy its data key (crypto-shredding)");
  purge->add_option("--subject", *subject, "the data subject's id")->required();
  purge->callback([&ctx, subject] { ctx.action = [&ctx, subject] { return do_purge(ctx, *subject); }; });
}

}  // namespace asyncmq::cli

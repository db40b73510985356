#include <asyncmq/client.hpp>
#include <asyncmq/audit.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>

#include "security/policy_backend.hpp"

#include "security/audit_backend.hpp"
#include "security/redaction.hpp"

#include <boost/json/stream_parser.hpp>

namespace asyncmq {

void validate_name(std::string_view kind, std::string_view name) {
  auto fail = [&](const std::string& why) {
    throw InvalidArgument("invalid " + std::string(kind) + " name: " + why +
                              " (allowed: 1-128 characters of A-Z a-z 0-9 . _ : -, "
                              "starting with a letter or digit)",
                          errc::invalid_name);
  };
  if (name.empty()) fail("it is empty");
  if (name.size() > 128) fail("it is " + std::to_string(name.size()) + " characters long");
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) fail("it must start with a letter or digit");
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (!(alnum(c) || c == '.' || c == '_' || c == ':' || c == '-'))
      fail("character " + std::to_string(i + 1) + " is not allowed");
  }
}

boost::json::value parse_payload(std::string_view text, const ClientOptions& options) {
  if (text.size() > options.max_payload_bytes) {
    throw InvalidArgument("payload is " + std::to_string(text.size()) +
                              " bytes, over the limit of " +
                              std::to_string(options.max_payload_bytes) + " bytes",
                          errc::payload_too_large);
  }
  boost::json::parse_options po;
  po.max_depth = options.max_json_depth;
  boost::json::stream_parser parser({}, po);
  boost::system::error_code ec;
  std::size_t used = parser.write(text.data(), text.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    throw InvalidArgument("payload is not valid JSON: " + ec.message() + " near byte " +
                              std::to_string(used),
                          errc::malformed_json);
  }
  return parser.release();
}

Client::Client(std::shared_ptr<Backend> backend, Env& env, ClientOptions options)
    : backend_(std::move(backend)),
      codec_(options.codec ? options.codec : make_plain_codec()),
      env_(env),
      options_(std::move(options)) {
  if (!backend_) throw InvalidArgument("Client needs a backend");
  if (options_.audit) {
    // Inside the policy decorator: only calls the policy allowed reach the
    // audit records of transitions; denials are recorded by the observer.
    std::string actor = !options_.actor.empty() ? options_.actor
                        : options_.principal    ? options_.principal->id()
                                                : std::string("library");
    backend_ = security::make_auditing_backend(std::move(backend_), options_.audit, actor);
    if (options_.policy) security::audit_denials(options_.policy, options_.audit);
  }
  if (options_.principal || options_.policy) {
    if (!options_.principal || !options_.policy)
      throw InvalidArgument("ClientOptions: a principal and a policy go together (got only one)");
    backend_ = security::make_policy_backend(std::move(backend_), options_.principal, options_.policy);
  }
  // Library users get redacted log lines without configuring anything.
  security::install_log_redaction();
}

std::shared_ptr<Client> Client::open(std::string_view uri, Env& env, ClientOptions options) {
  return std::make_shared<Client>(open_backend(uri, env), env, std::move(options));
}

void Client::decode(Job& job) {
  // Always decoded, even when empty: a blanked payload (or a completed job's
  // blanked result) must fail the codec's check, not read as "nothing".
  // A redacted field was replaced above the codec, by the policy backend;
  // only a Client that carries a principal has one.
  const bool policed = options_.principal != nullptr;
  auto redacted = [&](const std::string& s) { return policed && s == kRedacted; };
  if (!redacted(job.payload))
    job.payload = codec_->decode(codec_context(job, Field::payload), job.payload);
  if ((job.state == JobState::completed || !job.result.empty()) && !redacted(job.result))
    job.result = codec_->decode(codec_context(job, Field::result), job.result);
  if (!job.error.empty() && !redacted(job.error)) {
    if (job.error[0] == kSystemError)
      job.error.erase(0, 1);
    else
      job.error = codec_->decode(codec_context(job, Field::error), job.error);
  }
  decode_progress(job);
}

bool Client::decode_progress(Job& job) {
  job.progress_error.clear();
  if (job.progress.empty()) return true;  // none reported
  if (options_.principal != nullptr && job.progress == kRedacted) return true;
  try {
    job.progress = codec_->decode(codec_context(job, Field::progress), job.progress);
    return true;
  } catch (const IntegrityError& e) {
    job.progress.clear();
    job.progress_error = e.what();
    return false;
  }
}

boost::asio::awaitable<JobState> Client::cancel(const JobId& id) {
  co_return co_await backend_->cancel(id, env_.now_ms());
}

boost::asio::awaitable<std::vector<LogLine>> Client::logs(const JobId& id, std::size_t limit) {
  auto job = co_await backend_->get(id);
  if (!job) throw NotFound("job " + id.str() + " not found");
  auto lines = co_await backend_->logs(id, limit);
  for (auto& l : lines) l.text = codec_->decode(codec_context(*job, Field::log), l.text);
  co_return lines;
}

boost::asio::awaitable<std::optional<Job>> Client::get(const JobId& id) {
  auto job = co_await backend_->get(id);
  if (job) decode(*job);
  co_return job;
}

boost::asio::awaitable<void> Client::remove(const JobId& id) { co_await backend_->remove(id); }

boost::asio::awaitable<void> Client::retry(const JobId& id) {
  co_await backend_->retry(id, env_.now_ms());
}

boost::asio::awaitable<std::vector<std::string>> Client::queues() {
  co_return co_await backend_->queues();
}

}  // namespace asyncmq

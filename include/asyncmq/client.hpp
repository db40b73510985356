// A Client is a backend together with the payload path in front of it: the
// codec seam, the input limits and the Env. Queues and Workers are made from
// one Client, so producers and workers always agree on how data is encoded.
//
// Thread safety: safe for concurrent use; immutable after construction.
// Lifetime: shared; holds the Backend and Codec; the Env must outlive it.
#pragma once

#include <asyncmq/backend.hpp>
#include <asyncmq/codec.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/job.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace asyncmq {

struct Principal;
class Policy;
class AuditLog;

struct ClientOptions {
  // Largest accepted payload, in bytes of JSON text. Larger ones are refused
  // with errc::payload_too_large before anything is written.
  std::size_t max_payload_bytes = 1 << 20;
  // JSON nesting deeper than this is refused (protects the parser's stack).
  std::size_t max_json_depth = 64;
  // The codec seam; null means make_plain_codec().
  std::shared_ptr<Codec> codec;
  // Who is calling, and what they may do (include/asyncmq/identity.hpp).
  // Both or neither: with both, every backend call of this Client (and of
  // its Queues and Workers) is checked against `policy` for `principal`,
  // denials throw PermissionDenied, and reads of queues where the principal
  // is not admin show payload, result, error, progress and log lines as
  // kRedacted. Neither: no
  // checks (the library trusts its caller).
  std::shared_ptr<const Principal> principal;
  std::shared_ptr<Policy> policy;
  // The audit trail (audit.hpp); null means none. When set, the Client wraps
  // its backend in an auditing decorator, so every Queue and Worker made
  // from it writes audit records for the transitions it makes.
  std::shared_ptr<AuditLog> audit;
  // Who acts through this client, in audit records of calls that carry no
  // worker id (add, remove, retry, pause): a principal name, "cli". Empty
  // means the principal's id, or "library" without one. With a policy too,
  // the policy's denials are audited (action "denied") and the audit
  // decorator sits inside the policy one, so it records allowed calls only.
  std::string actor;
};

// Queue and task names: 1..128 characters from [A-Za-z0-9._:-], starting
// with a letter or digit. Such names are safe in file names, URLs, Redis keys
// and log lines without quoting. Throws InvalidArgument naming the problem.
void validate_name(std::string_view kind, std::string_view name);

// Parses `text` as JSON under `options`' limits. Throws InvalidArgument
// (errc::malformed_json or errc::payload_too_large) naming the problem and its
// position, never echoing the content.
boost::json::value parse_payload(std::string_view text, const ClientOptions& options);

// One job of a flow, in the flat form (Queue::add_flow takes a tree).
// `ref` names the node within the flow; `parent` names its parent's ref
// (empty for the one root). A parent runs once all its children completed;
// what a child's failure does to it is the child's `on_failure`.
struct FlowNode {
  std::string ref;
  std::string parent;
  std::string queue;
  std::string task;
  boost::json::value payload;
  JobOptions options;
  ChildFailure on_failure = ChildFailure::fail_parent;
};

// Largest flow accepted in one call.
inline constexpr std::size_t kMaxFlowJobs = 100'000;

class Client {
 public:
  Client(std::shared_ptr<Backend> backend, Env& env, ClientOptions options = {});

  // Opens the backend at `uri` (see open_backend).
  static std::shared_ptr<Client> open(std::string_view uri, Env& env = Env::system(),
                                      ClientOptions options = {});

  Backend& backend() const { return *backend_; }
  Codec& codec() const { return *codec_; }
  Env& env() const { return env_; }
  const ClientOptions& options() const { return options_; }

  // Job-level operations by id, whatever the queue. Payload, result, error
  // and progress of returned jobs are decoded (see decode).
  boost::asio::awaitable<std::optional<Job>> get(const JobId& id);
  boost::asio::awaitable<void> remove(const JobId& id);
  boost::asio::awaitable<void> retry(const JobId& id);
  boost::asio::awaitable<std::vector<std::string>> queues();
  // Cancels a job (see Backend::cancel): returns cancelled, or active when
  // the running handler has been asked to stop.
  boost::asio::awaitable<JobState> cancel(const JobId& id);
  // The job's log lines, decoded, oldest first.
  boost::asio::awaitable<std::vector<LogLine>> logs(const JobId& id, std::size_t limit = 1000);

  // Adds a flow: jobs in any queues, linked parent to child, all or none in
  // one transaction. Returns the ids in the order of `nodes`. Throws
  // InvalidArgument (nothing written) for bad names, payloads or options, a
  // duplicate or unknown ref, no root or several, or a cycle, naming it.
  boost::asio::awaitable<std::vector<JobId>> add_flow(std::vector<FlowNode> nodes);

  // Decodes the stored fields of `job` in place. Throws IntegrityError for
  // payload, result and error. Progress is decoded by decode_progress: one
  // that fails to open does not throw.
  // Fields redacted by the policy (kRedacted, with a principal attached)
  // are left as they are.
  // Errors the backend wrote itself (kSystemError) are shown as they are.
  void decode(Job& job);
  // Decodes only `job.progress` in place (for readers that show nothing
  // else, such as `events tail`). If it fails to open, clears it, puts the
  // IntegrityError's message (job and field, never the content) in
  // `job.progress_error` and returns false; never throws IntegrityError.
  bool decode_progress(Job& job);

 private:
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<Codec> codec_;
  Env& env_;
  ClientOptions options_;
};

}  // namespace asyncmq

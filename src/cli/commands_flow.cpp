// `asyncmq flow add --file FLOW.json`: a parent job and its children (any
// depth, across queues), added all or none.
//
// The file holds one of two forms.
//
// Flat: an array of jobs, each naming itself (`ref`) and its parent's ref
// (`parent`, absent or empty for the one root):
//   [{"ref": "report", "queue": "reports", "task": "merge"},
//    {"ref": "a", "parent": "report", "queue": "fetch", "task": "get",
//     "payload": {"url": "..."}, "on_failure": "ignore",
//     "options": {"attempts": 3, "ttl_ms": 60000}}]
//
// Nested: one object, the root, with its `children` (refs are then the
// positions "0", "1", ... depth-first, the root first; a child's queue
// defaults to its parent's):
//   {"queue": "reports", "task": "merge",
//    "children": [{"queue": "fetch", "task": "get", "children": [...]}]}
//
// Per job: queue, task (required, except a nested child's queue), payload
// (any JSON, default {}), on_failure ("fail" the parent, "ignore" the child,
// or "wait" for it to be retried; default fail), options: priority,
// attempts, delay_ms, timeout_ms, ttl_ms, lifo, group (the group key, see
// `queue limit --per-group`). Unknown keys are refused, so a misspelt option
// never goes unnoticed.
//
// The whole flow is validated (shape, cycle, names, options, payload sizes,
// payload guards) against an in-memory store before the real store is
// opened: bad input writes nothing.
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/sync.hpp>

#include "cli/cli_common.hpp"
#include "cli/cli_features.hpp"

#include <CLI/CLI.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <cstdint>
#include <iostream>
#include <memory>

namespace asyncmq::cli {
namespace {

namespace json = boost::json;

// A flow file may hold many jobs (up to kMaxFlowJobs), each with a payload.
constexpr std::size_t kMaxFlowFileBytes = 64u << 20;
// Nesting of the nested form plus the payloads inside it.
constexpr unsigned kMaxFlowFileDepth = 1024;

[[noreturn]] void refuse(const std::string& where, const std::string& why) {
  throw InvalidArgument("flow file: " + where + ": " + why);
}

std::int64_t int_field(const json::value& v, const std::string& where, const char* key) {
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64() && v.as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v.as_uint64());
  refuse(where, std::string(key) + " must be an integer");
}

std::string string_field(const json::value& v, const std::string& where, const char* key) {
  if (!v.is_string()) refuse(where, std::string(key) + " must be a string");
  return std::string(v.as_string());
}

JobOptions parse_options(const json::value& v, const std::string& where) {
  JobOptions o;
  if (!v.is_object()) refuse(where, "options must be an object");
  for (const auto& [key, val] : v.as_object()) {
    if (key == "priority") {
      o.priority = static_cast<std::int32_t>(
          std::clamp<std::int64_t>(int_field(val, where, "priority"), INT32_MIN, INT32_MAX));
    } else if (key == "attempts") {
      o.attempts = static_cast<std::int32_t>(
          std::clamp<std::int64_t>(int_field(val, where, "attempts"), INT32_MIN, INT32_MAX));
    } else if (key == "delay_ms") {
      o.delay_ms = int_field(val, where, "delay_ms");
    } else if (key == "timeout_ms") {
      o.timeout_ms = int_field(val, where, "timeout_ms");
    } else if (key == "ttl_ms") {
      o.ttl_ms = int_field(val, where, "ttl_ms");
    } else if (key == "group") {
      o.group = string_field(val, where, "group");
    } else if (key == "lifo") {
      if (!val.is_bool()) refuse(where, "lifo must be true or false");
      o.lifo = val.as_bool();
    } else {
      refuse(where, "unknown option '" + std::string(key).substr(0, 64) +
                        "' (known: priority, attempts, delay_ms, timeout_ms, ttl_ms, lifo, "
                        "group)");
    }
  }
  validate_options(o);
  return o;
}

ChildFailure parse_on_failure(const json::value& v, const std::string& where) {
  std::string s = string_field(v, where, "on_failure");
  if (s == "fail") return ChildFailure::fail_parent;
  if (s == "ignore") return ChildFailure::ignore;
  if (s == "wait") return ChildFailure::wait;
  refuse(where, "on_failure must be fail, ignore or wait");
}

// Fills the fields common to both forms; `extra` names the form's own keys.
FlowNode parse_node(const json::object& o, const std::string& where,
                    std::initializer_list<std::string_view> extra) {
  FlowNode n;
  n.payload = json::object{};
  for (const auto& [key, val] : o) {
    if (key == "queue") {
      n.queue = string_field(val, where, "queue");
    } else if (key == "task") {
      n.task = string_field(val, where, "task");
    } else if (key == "payload") {
      n.payload = val;
    } else if (key == "options") {
      n.options = parse_options(val, where);
    } else if (key == "on_failure") {
      n.on_failure = parse_on_failure(val, where);
    } else if (std::find(extra.begin(), extra.end(), std::string_view(key.data(), key.size())) == extra.end()) {
      refuse(where, "unknown key '" + std::string(key).substr(0, 64) + "'");
    }
  }
  if (n.task.empty()) refuse(where, "task is missing");
  return n;
}

void parse_nested(const json::value& v, const std::string& parent_ref,
                  const std::string& parent_queue, std::vector<FlowNode>& out) {
  std::string where = "job " + std::to_string(out.size() + 1);
  if (!v.is_object()) refuse(where, "a job must be an object");
  if (out.size() >= kMaxFlowJobs)
    refuse(where, "over the limit of " + std::to_string(kMaxFlowJobs) + " jobs");
  const json::object& o = v.as_object();
  FlowNode n = parse_node(o, where, {"children"});
  if (n.queue.empty()) {
    if (parent_queue.empty()) refuse(where, "the root needs a queue");
    n.queue = parent_queue;
  }
  n.ref = std::to_string(out.size());
  n.parent = parent_ref;
  std::string ref = n.ref;
  std::string queue = n.queue;
  out.push_back(std::move(n));
  if (const auto* children = o.if_contains("children")) {
    if (!children->is_array()) refuse(where, "children must be an array");
    for (const auto& c : children->as_array()) parse_nested(c, ref, queue, out);
  }
}

std::vector<FlowNode> parse_flow(const std::string& text) {
  json::parse_options po;
  po.max_depth = kMaxFlowFileDepth;
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec, {}, po);
  if (ec) throw InvalidArgument("flow file is not valid JSON: " + ec.message(), errc::malformed_json);
  std::vector<FlowNode> nodes;
  if (doc.is_object()) {
    parse_nested(doc, "", "", nodes);
    return nodes;
  }
  if (!doc.is_array()) {
    throw InvalidArgument("flow file: expected an array of jobs (flat form) or one object (nested form)");
  }
  const json::array& arr = doc.as_array();
  if (arr.size() > kMaxFlowJobs)
    throw InvalidArgument("flow file: " + std::to_string(arr.size()) + " jobs, over the limit of " +
                          std::to_string(kMaxFlowJobs));
  nodes.reserve(arr.size());
  for (std::size_t i = 0; i < arr.size(); ++i) {
    std::string where = "job " + std::to_string(i + 1);
    if (!arr[i].is_object()) refuse(where, "a job must be an object");
    const json::object& o = arr[i].as_object();
    FlowNode n = parse_node(o, where, {"ref", "parent"});
    if (const auto* r = o.if_contains("ref")) n.ref = string_field(*r, where, "ref");
    if (const auto* p = o.if_contains("parent"); p && !p->is_null())
      n.parent = string_field(*p, where, "parent");
    if (n.queue.empty()) refuse(where, "queue is missing");
    nodes.push_back(std::move(n));
  }
  return nodes;
}

int do_flow_add(const Context& ctx, const std::string& file) {
  std::vector<FlowNode> nodes = parse_flow(read_input_file("flow file", file, kMaxFlowFileBytes));
  // Full validation, the same code as the real add, against a throwaway
  // in-memory store: shape, cycles, names, options, payloads and the
  // payload guards (asyncmq.toml [guards]).
  {
    ClientOptions scratch_options;
    scratch_options.codec = make_guarded_codec(make_plain_codec(), ctx.settings.guards);
    auto scratch = Client::open("memory://", Env::system(), std::move(scratch_options));
    sync_wait(scratch->add_flow(nodes));
  }
  auto client = open_client(ctx, Access::create);
  std::vector<JobId> ids = sync_wait(client->add_flow(nodes));
  if (ctx.json) {
    json::object by_ref;
    for (std::size_t i = 0; i < nodes.size(); ++i) by_ref[nodes[i].ref] = ids[i].str();
    std::string root;
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (nodes[i].parent.empty()) root = ids[i].str();
    print_json({{"root", root}, {"jobs", nodes.size()}, {"ids", std::move(by_ref)}});
    return kExitOk;
  }
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    std::cout << nodes[i].ref << ' ' << ids[i].str() << ' ' << nodes[i].queue
              << (nodes[i].parent.empty() ? " (root)" : "") << '\n';
  }
  return kExitOk;
}

}  // namespace

void add_flow_commands(CLI::App& app, Context& ctx) {
  auto* flow = app.add_subcommand("flow", "parent jobs that wait for their children");
  flow->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto* add = flow->add_subcommand(
      "add", "add a flow from a JSON file, all jobs or none; prints 'ref id queue' per job");
  add->add_option("--file", *file,
                  "the flow: a flat array [{ref, parent, queue, task, payload, options, "
                  "on_failure}] or one nested object {queue, task, ..., children: [...]} "
                  "('-' for stdin)")
      ->required();
  add->callback([&ctx, file] { ctx.action = [&ctx, file] { return do_flow_add(ctx, *file); }; });
}

}  // namespace asyncmq::cli

// The `asyncmq` command's settings (asyncmq.toml, ASYNCMQ_* variables,
// flags) taking effect end to end, and the payload guards refusing bad
// input before any store is created.
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/text_file.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace asyncmq::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class SettingsCli : public ::testing::Test {
 protected:
  // Runs the CLI in the test's directory, where it finds ./asyncmq.toml.
  ProcessResult cli(std::vector<std::string> args, ProcessOptions options = {}) {
    options.cwd = dir_.path();
    args.insert(args.begin(), ASYNCMQ_CLI_PATH);
    return run_process(args, options);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.file(name)) << text;
  }
  std::string db() const { return dir_.file("q.db"); }
  std::string backend_toml() const { return "[backend]\nuri = \"sqlite://" + db() + "\"\n"; }

  TempDir dir_;
};

TEST_F(SettingsCli, GuardsRefuseJobAndFlowAddBeforeTheStoreExists) {
  write("asyncmq.toml", backend_toml() + "[guards]\nmax_depth = 3\n");
  ProcessResult card = cli({"job", "add", "q", "echo", "--payload", R"({"card":"4111 1111 1111 1111"})"});
  EXPECT_EQ(card.exit_code, 2) << card.err;
  EXPECT_NE(card.err.find("card_number"), std::string::npos) << card.err;
  ProcessResult deep = cli({"job", "add", "q", "echo", "--payload", R"({"a":{"b":{"c":{}}}})"});
  EXPECT_EQ(deep.exit_code, 2) << deep.err;
  EXPECT_NE(deep.err.find("max_depth"), std::string::npos) << deep.err;
  write("flow.json", R"([{"ref": "root", "queue": "q", "task": "echo"},
    {"ref": "a", "parent": "root", "queue": "q", "task": "echo",
     "payload": {"pan": 4111111111111111}}])");
  ProcessResult flow = cli({"flow", "add", "--file", dir_.file("flow.json")});
  EXPECT_EQ(flow.exit_code, 2) << flow.err;
  EXPECT_NE(flow.err.find("card_number"), std::string::npos) << flow.err;
  EXPECT_EQ(flow.err.find("4111"), std::string::npos) << flow.err;
  EXPECT_FALSE(fs::exists(db())) << "refused input created the store";
  // The same payloads pass where the settings allow them.
  write("asyncmq.toml", backend_toml() + "[guards]\nallow_pan = true\n");
  EXPECT_EQ(cli({"job", "add", "q", "echo", "--payload", R"({"a":{"b":{"c":{}}}})"}).exit_code, 0);
  EXPECT_EQ(cli({"flow", "add", "--file", dir_.file("flow.json")}).exit_code, 0);
}

}  // namespace
}  // namespace asyncmq::testing

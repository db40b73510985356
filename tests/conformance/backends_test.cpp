// Every backend runs the whole conformance suite.
#include "conformance/backend_fixture.hpp"

namespace asyncmq::testing {

INSTANTIATE_TEST_SUITE_P(
    AllBackends, BackendConformance,
    ::testing::Values(
        BackendParam{"memory", [](const std::string&) { return std::string("memory://"); }},
        BackendParam{"sqlite",
                     [](const std::string& dir) { return "sqlite://" + dir + "/conformance.db"; }}),
    [](const ::testing::TestParamInfo<BackendParam>& info) { return info.param.name; });

}  // namespace asyncmq::testing

// Every backend runs the whole Backend conformance suite.
#include "conformance/backend_fixture.hpp"

namespace asyncmq::testing {

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendConformance, all_backends(), backend_name);

}  // namespace asyncmq::testing

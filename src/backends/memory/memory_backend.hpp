// memory:// — every job in this process's memory, behind one mutex.
//
// For tests, examples and benchmarks: fast and not durable. It is the
// reference implementation of the Backend contract; the conformance suite
// runs against it first.
#pragma once

#include <asyncmq/backend.hpp>

#include <memory>

namespace asyncmq::backends {

std::shared_ptr<Backend> make_memory_backend(Env& env);

}  // namespace asyncmq::backends

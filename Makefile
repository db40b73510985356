# Thin wrapper over CMake presets. The README's two commands: `make demo`, `make test`.
JOBS ?= $(shell nproc)

.PHONY: setup build test demo bench tsan clean

setup:
	@bash scripts/setup.sh

build: setup
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

test: setup
	@cmake --preset dev >/dev/null
	@cmake --build --preset dev -j $(JOBS)
	@# The optimised build that make demo and make bench use: GCC warns
	@# differently at -O2, and -Werror turns that into a broken demo.
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS) --target asyncmq_cli asyncmq_demo
	@ctest --preset dev

demo: build
	@rm -f build/demo.db build/demo.db-wal build/demo.db-shm
	@./build/release/asyncmq_demo sqlite:///./build/demo.db

bench: build
	@./build/release/asyncmq bench --backend memory:// --jobs 200000 --concurrency 32
	@./build/release/asyncmq bench --backend sqlite:///./build/bench.db --jobs 100000 --concurrency 32
	@./build/release/asyncmq bench --backend 'sqlite:///./build/bench-full.db?sync=full' --jobs 20000 --concurrency 32
	@./build/release/asyncmq_micro_bench

# ThreadSanitizer on the worker runtime tests, and on the audit decorator's
# relay thread (AuditOutbox runs a Worker and a producer thread through one
# decorator; AuditTable the backend sink's copies): about 2 s more.
tsan: setup
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS) --target conformance_tests
	@TSAN_OPTIONS=halt_on_error=1 ./build/tsan/tests/conformance_tests --gtest_filter='*WorkerConformance*:*AuditOutbox*:*AuditTable*'

clean:
	@rm -rf build

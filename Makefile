# Thin front door over CMake. The two commands a newcomer needs:
#   make run    build and start a local 3-site federation
#   make test   install missing packages, build with ASan+UBSan, run every tier
CMAKE ?= cmake
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
TEST_DIR := build/test
REL_DIR := build/release
FUZZ_SECONDS ?= 60

.PHONY: all deps build test run bench fuzz clean format

all: build

deps:
	@./ops/install-deps.sh

$(REL_DIR)/CMakeCache.txt:
	$(CMAKE) -S . -B $(REL_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: deps $(REL_DIR)/CMakeCache.txt
	$(CMAKE) --build $(REL_DIR) -j $(JOBS)

$(TEST_DIR)/CMakeCache.txt:
	$(CMAKE) -S . -B $(TEST_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DKVC_SANITIZE=ON -DKVC_FUZZ=ON >/dev/null

test: deps $(TEST_DIR)/CMakeCache.txt
	$(CMAKE) --build $(TEST_DIR) -j $(JOBS)
	cd $(TEST_DIR) && ctest --output-on-failure -j $(JOBS)

run: deps $(REL_DIR)/CMakeCache.txt
	$(CMAKE) --build $(REL_DIR) -j $(JOBS) --target kvc kvc-peer
	./ops/run-demo.sh $(REL_DIR)

bench: build
	./tests/bench/run.sh $(REL_DIR)

fuzz: deps $(TEST_DIR)/CMakeCache.txt
	$(CMAKE) --build $(TEST_DIR) -j $(JOBS)
	./tests/fuzz/run.sh $(TEST_DIR) $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

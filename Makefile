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

# Packages are checked once per change of the list (the script itself does
# nothing when all are installed); configure re-runs when a CMake file or
# this Makefile changes, not only when the build folder is new.
DEPS_STAMP := build/.deps-ok
CMAKE_FILES := $(shell find CMakeLists.txt tests -name CMakeLists.txt 2>/dev/null)

deps: $(DEPS_STAMP)

$(DEPS_STAMP): ops/install-deps.sh
	@./ops/install-deps.sh
	@mkdir -p build && touch $@

$(REL_DIR)/.configured: $(DEPS_STAMP) $(CMAKE_FILES) Makefile
	$(CMAKE) -S . -B $(REL_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DKVC_WERROR=ON >/dev/null
	@touch $@

build: $(REL_DIR)/.configured
	$(CMAKE) --build $(REL_DIR) -j $(JOBS)

$(TEST_DIR)/.configured: $(DEPS_STAMP) $(CMAKE_FILES) Makefile
	$(CMAKE) -S . -B $(TEST_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DKVC_SANITIZE=ON -DKVC_FUZZ=ON -DKVC_WERROR=ON >/dev/null
	@touch $@

test: $(TEST_DIR)/.configured
	$(CMAKE) --build $(TEST_DIR) -j $(JOBS)
	cd $(TEST_DIR) && ctest --output-on-failure -j $(JOBS)

run: $(REL_DIR)/.configured
	$(CMAKE) --build $(REL_DIR) -j $(JOBS) --target kvc kvc-peer
	./ops/run-demo.sh $(REL_DIR)

bench: build
	@./ops/install-deps.sh --bench
	./tests/bench/run.sh $(REL_DIR)

fuzz: $(TEST_DIR)/.configured
	$(CMAKE) --build $(TEST_DIR) -j $(JOBS)
	./tests/fuzz/run.sh $(TEST_DIR) $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

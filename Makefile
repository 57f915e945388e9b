# A thin driver over CMake; see docs/guide/build.md.
#
#   make demo       build and run examples/demo.c
#   make test       build everything, run the whole suite
#   make asan       the suite under AddressSanitizer + UBSan   (build-asan/)
#   make tsan       the suite under ThreadSanitizer (shim)     (build-tsan/)
#   make core       the library without src/thread/, and the tests and
#                   examples that do not use it                (build-core/)
#   make valgrind   the suite under valgrind (Criterion shim)  (build-valgrind/)
#   make aarch64    cross-build, run the tests under qemu-aarch64 (build-aarch64/)
#   make consumer   install to a temp prefix, build tests/consumer with
#                   find_package and with pkg-config, shared and static
#   make bench      build weft-bench (build/bin/weft-bench)
#   make soak       the randomized cancellation soak, long (SOAK_TIME s per program)
#   make fuzz       libFuzzer + ASan/UBSan on the stream readers, FUZZ_TIME s
#                   (60; clang)                                 (build-fuzz/)
#   make install PREFIX=/usr/local
#   make clean
#
# Variables: JOBS (2), BUILD (build), CMAKE_FLAGS (extra -D...), PREFIX.

JOBS ?= 2
BUILD ?= build
PREFIX ?= /usr/local
CMAKE ?= cmake
CTEST ?= ctest
CMAKE_FLAGS ?=
# Timeouts are multiplied by this under qemu (the shim reads it).
AARCH64_TIMEOUT_SCALE ?= 10

DEPS := scripts/deps.sh
CTEST_ARGS := --output-on-failure -j$(JOBS)

.PHONY: all demo test check build configure asan tsan valgrind aarch64 \
        core consumer bench soak fuzz install clean deps

all: build

deps:
	@$(DEPS) base

configure: deps
	$(CMAKE) -S . -B $(BUILD) $(CMAKE_FLAGS)

build: configure
	$(CMAKE) --build $(BUILD) -j$(JOBS)

demo: configure
	@test -f examples/demo.c || { echo "make demo: examples/demo.c does not exist yet" >&2; exit 1; }
	$(CMAKE) --build $(BUILD) -j$(JOBS) --target example-demo
	./$(BUILD)/bin/example-demo

test: build
	$(CTEST) --test-dir $(BUILD) $(CTEST_ARGS)

check: test

bench: configure
	$(CMAKE) --build $(BUILD) -j$(JOBS) --target weft-bench
	@echo "run: ./$(BUILD)/bin/weft-bench"

# tests/test_soak.c for a long time: each of its 8 programs runs random
# schedules for SOAK_TIME seconds (JOBS at a time: about 8 minutes in all
# by default on 2 cores; at most 800 s each), from a new random seed each
# run (printed; SOAK_SEED=N replays a run). WEFT_SOAK_SKIP,
# WEFT_SOAK_MAXFAIL... from the environment pass through. With the
# sanitizers (the options are those of make asan):
#   make soak BUILD=build-asan CMAKE_FLAGS=-DWEFT_SANITIZE=address,undefined
SOAK_TIME ?= 120
SOAK_SEED ?= random
soak: configure
	$(CMAKE) --build $(BUILD) -j$(JOBS) --target test_soak
	WEFT_SOAK_SEED=$(SOAK_SEED) WEFT_SOAK_TIME=$(SOAK_TIME) \
	WEFT_SOAK_ITERS=$${WEFT_SOAK_ITERS:-1000000000} \
	ASAN_OPTIONS="$${ASAN_OPTIONS:-detect_leaks=1}" \
	LSAN_OPTIONS="$${LSAN_OPTIONS:-suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0}" \
	UBSAN_OPTIONS="$${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}" \
	  ./$(BUILD)/bin/test_soak -j$(JOBS)

# fuzz/fuzz_stream.c: random data in random chunks through a socketpair
# or a pipe, read by readline, readuntil(_any), read_exactly and read
# (two readers at once, small limits, deadlines), every answer checked
# against a model; the inputs of fuzz/regress/ are replayed first.
FUZZ_TIME ?= 60
fuzz:
	@$(DEPS) fuzz
	fuzz/run.sh $(FUZZ_TIME)

# ASAN_OPTIONS / LSAN_OPTIONS / UBSAN_OPTIONS from the environment win over
# these. tests/lsan.supp hides leaks inside libcriterion itself.
asan: deps
	$(CMAKE) -S . -B build-asan -DWEFT_SANITIZE=address,undefined $(CMAKE_FLAGS)
	$(CMAKE) --build build-asan -j$(JOBS)
	ASAN_OPTIONS="$${ASAN_OPTIONS:-detect_leaks=1}" \
	LSAN_OPTIONS="$${LSAN_OPTIONS:-suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0}" \
	UBSAN_OPTIONS="$${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}" \
	  $(CTEST) --test-dir build-asan $(CTEST_ARGS)

# Criterion's runner crashes under TSan (SEGV inside libcriterion), so the
# TSan suite runs through the shim. test_scale is left out: TSan cannot
# map a trace for each of 100k tasks.
tsan: deps
	$(CMAKE) -S . -B build-tsan -DWEFT_SANITIZE=thread -DWEFT_TEST_SHIM=ON \
	  -DWEFT_TEST_EXCLUDE='^test_scale' $(CMAKE_FLAGS)
	$(CMAKE) --build build-tsan -j$(JOBS)
	TSAN_OPTIONS="$${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}" \
	WEFT_TIMEOUT_SCALE="$${WEFT_TIMEOUT_SCALE:-3}" \
	  $(CTEST) --test-dir build-tsan $(CTEST_ARGS)

# Core stands without the thread layer (WEFT_THREAD=OFF leaves src/thread/
# out, and every test, example or bench that calls a function of
# include/weft/thread.h: see CMakeLists.txt). A plain build, no sanitizer.
core: deps
	$(CMAKE) -S . -B build-core -DWEFT_THREAD=OFF $(CMAKE_FLAGS)
	$(CMAKE) --build build-core -j$(JOBS)
	$(CTEST) --test-dir build-core $(CTEST_ARGS)

# Criterion's runner does not survive valgrind well; the shim forks one
# child per test, which valgrind follows.
valgrind:
	@$(DEPS) base valgrind
	$(CMAKE) -S . -B build-valgrind -DWEFT_TEST_SHIM=ON -DCMAKE_BUILD_TYPE=Debug -DWEFT_TEST_EXCLUDE='^test_scale' \
	  "-DWEFT_TEST_WRAPPER=valgrind;-q;--error-exitcode=1;--leak-check=full;--errors-for-leak-kinds=definite;--trace-children=yes;--trace-children-skip=*/sh,*/bash,*/env,*python*,*/socat,*/nc,*/curl,*/wrk,*/true,*/false,*/cat,*/head,*/sleep,*/seq,*/grep,*/wc,*/tr,*/sort,*/printf,*/ls,*/pwd,*/setsid,*/yes" \
	  $(CMAKE_FLAGS)
	$(CMAKE) --build build-valgrind -j$(JOBS)
	WEFT_TIMEOUT_SCALE="$${WEFT_TIMEOUT_SCALE:-10}" $(CTEST) --test-dir build-valgrind $(CTEST_ARGS)

# Cross-build for aarch64 and run the tests (all but test_scale*) under
# qemu-aarch64 through the Criterion shim, statically linked. The
# subprocess pipeline example is left out: under qemu-user a child that
# fails before exec (posix_spawn's vfork is a fork there) exits 127
# instead of failing the spawn (test_proc skips those cases too). test_ps
# is left out too: it runs the weft-ps tools and forks loops with the
# listener thread, which qemu-user cannot exec or run as the kernel does.
aarch64:
	@$(DEPS) cross
	$(CMAKE) -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/aarch64-linux-gnu.cmake \
	  -DWEFT_TEST_SHIM=ON -DWEFT_STATIC_EXECUTABLES=ON \
	  -DWEFT_TEST_EXCLUDE='^test_scale|^test_ps$$|^example-subprocess_pipeline$$' $(CMAKE_FLAGS)
	$(CMAKE) --build build-aarch64 -j$(JOBS)
	QEMU_LD_PREFIX=/usr/aarch64-linux-gnu WEFT_TIMEOUT_SCALE=$(AARCH64_TIMEOUT_SCALE) \
	  timeout -s KILL 1500 $(CTEST) --test-dir build-aarch64 $(CTEST_ARGS)

consumer: build
	scripts/consumer.sh $(BUILD)

install: build
	$(CMAKE) --install $(BUILD) --prefix "$(PREFIX)"

clean:
	rm -rf $(BUILD) $(BUILD)-consumer build-asan build-tsan build-valgrind build-aarch64 build-consumer build-ucontext \
	  build-core build-fuzz build-bench

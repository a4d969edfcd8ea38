# make demo  - install what is missing, build, run the article's example
# make test  - install what is missing, build, run every test (plain, ASan+UBSan, TSan)
# make bench - the W1 benchmark (see README)
DEBS := build-essential cmake pkg-config clang libclang-rt-dev libxxhash-dev libcmocka-dev libzstd-dev liblz4-dev zlib1g-dev libsodium-dev libssl-dev libcsv-dev
JOBS ?= 2

.PHONY: all deps build demo test test-plain test-asan test-tsan test-fuzz bench clean

all: build

deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build/Makefile: CMakeLists.txt tests/CMakeLists.txt
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps build/Makefile
	cmake --build build -j $(JOBS)

demo: build
	./build/spillpool demo

test-plain: build
	cd build && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=address
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_SANITIZE=thread
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --output-on-failure -L concurrency

# libFuzzer over the spill-file decoder, from a corpus of real spill files.
test-fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_SANITIZE=address -DSP_FUZZ=ON -DSP_BUILD_TESTS=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_frame make_corpus fuzz_csv
	cd build-fuzz && ctest --output-on-failure -L fuzz

# The plain run last, so its summary closes the output.
test: test-asan test-tsan test-fuzz test-plain

bench: build
	./build/bench_w1 --runs 5

clean:
	rm -rf build build-asan build-tsan build-fuzz

# ws_port — build, test, demo, bench.
#   make setup      install what is missing (Debian packages, node ws)
#                   (make demo: the same without node)
#   make            build priv/ws_port
#   make test       everything CI runs (C unit tests, Erlang and Elixir suites,
#                   conformance peer)
#   make demo       start a local WebSocket server and run the example client
#   make c-test     cmocka unit tests of c_src
#   make asan       priv/ws_port built with AddressSanitizer + UBSan
#   make fuzz       libFuzzer harnesses c_test/fuzz_*.c, FUZZ_SECONDS each
#   make bench      throughput benchmarks (see bench/README.md)

CC ?= cc
ERL_INTERFACE := $(shell erl -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().' 2>/dev/null)
CFLAGS ?= -O2 -g
WS_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I$(ERL_INTERFACE)/include -Ic_src
WS_LIBS := -L$(ERL_INTERFACE)/lib -lei -lwebsockets -lssl -lcrypto -lcares -luv -lpthread -lm

SRCS := $(wildcard c_src/*.c)
LIB_SRCS := $(filter-out c_src/ws_port.c,$(SRCS))
BUILD ?= c_build
OBJS := $(patsubst c_src/%.c,$(BUILD)/%.o,$(SRCS))
LIB_OBJS := $(patsubst c_src/%.c,$(BUILD)/%.o,$(LIB_SRCS))
HDRS := $(wildcard c_src/*.h)
TARGET ?= priv/ws_port

TEST_SRCS := $(wildcard c_test/test_*.c)
TEST_BINS := $(patsubst c_test/%.c,$(BUILD)/%,$(TEST_SRCS))

.PHONY: setup all test test-all beam-lint c-test erl-test ex-test conformance demo asan bench clean cppcheck fmt fuzz

all: $(TARGET)

$(TARGET): $(OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD $@"; $(CC) $(WS_CFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(WS_LIBS)

$(BUILD)/%.o: c_src/%.c $(HDRS)
	@mkdir -p $(BUILD)
	@echo "  CC $<"; $(CC) $(WS_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/test_%: c_test/test_%.c $(LIB_OBJS) $(HDRS)
	@echo "  LD $@"; $(CC) $(WS_CFLAGS) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(WS_LIBS) -lcmocka

c-test: $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; $$t; done

asan:
	$(MAKE) BUILD=c_build/asan TARGET=priv/ws_port.asan \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" priv/ws_port.asan c-test-asan

c-test-asan: $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; $$t; done

# libFuzzer (clang): each harness c_test/fuzz_X.c runs FUZZ_SECONDS on the
# seeds in c_test/corpus/fuzz_X/ (new inputs go to c_build/fuzz/corpus/, the
# seed directory is never written). Any crash, leak, sanitizer report or
# timeout fails the target; the crashing input is left in c_build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -std=c11 -D_GNU_SOURCE -Ic_src -I$(ERL_INTERFACE)/include
FUZZ_SRCS := $(wildcard c_test/fuzz_*.c)
FUZZ_BINS := $(patsubst c_test/%.c,c_build/fuzz/%,$(FUZZ_SRCS))
# the c_src files each harness links (default: the codec alone)
FUZZ_LINK_fuzz_proto := c_src/ws_codec.c c_src/wsp_proto.c c_src/wsp_backoff.c
FUZZ_LINK_fuzz_text := c_src/wsp_text.c
FUZZ_LINK_fuzz_proxy := c_src/wsp_proxy.c c_src/ws_codec.c

c_build/fuzz/fuzz_%: c_test/fuzz_%.c c_src/ws_codec.c c_src/wsp_proto.c c_src/wsp_backoff.c \
  c_src/wsp_text.c c_src/wsp_proxy.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ-LD $@"; $(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< \
	  $(or $(FUZZ_LINK_fuzz_$*),c_src/ws_codec.c) -L$(ERL_INTERFACE)/lib -lei -lssl -lcrypto

fuzz: $(FUZZ_BINS)
	@set -e; for b in $(FUZZ_BINS); do n=$$(basename $$b); \
	  mkdir -p c_build/fuzz/corpus/$$n; echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $$b -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -print_final_stats=1 -artifact_prefix=c_build/fuzz/$$n- \
	    c_build/fuzz/corpus/$$n c_test/corpus/$$n 2>c_build/fuzz/$$n.log \
	  || { tail -n 60 c_build/fuzz/$$n.log; echo "fuzz: $$n FAILED (log c_build/fuzz/$$n.log)"; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done ' c_build/fuzz/$$n.log; done

cppcheck:
	cppcheck --std=c11 --enable=warning,performance,portability --error-exitcode=1 \
	  --inline-suppr --quiet -Ic_src c_src c_test

setup:
	.ci/setup

erl-test: all
	rebar3 eunit

ex-test: all
	mix test

# Static checks of the BEAM code: formatting, no compile warnings, dialyzer.
beam-lint: all
	mix format --check-formatted
	mix compile --force --warnings-as-errors
	rebar3 dialyzer

conformance: all
	test/conformance.sh

test: setup
	$(MAKE) all
	$(MAKE) test-all

test-all: c-test cppcheck asan beam-lint ex-test erl-test conformance
	$(MAKE) fuzz FUZZ_SECONDS=20

# the demo needs no node package: its setup skips node and npm ci
demo:
	.ci/setup --no-node
	$(MAKE) all
	examples/demo.sh

bench: all
	$(MAKE) -C bench

clean:
	rm -rf c_build priv/ws_port priv/ws_port.asan _build

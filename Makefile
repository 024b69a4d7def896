# ws_port — build, test, demo, bench.
#   make            build priv/ws_port
#   make test       everything CI runs (C unit tests, Erlang and Elixir suites,
#                   conformance peer)
#   make demo       start a local WebSocket server and run the example client
#   make c-test     cmocka unit tests of c_src
#   make asan       priv/ws_port built with AddressSanitizer + UBSan
#   make bench      throughput benchmarks (see bench/README.md)

CC ?= cc
ERL_INTERFACE := $(shell erl -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().' 2>/dev/null)
CFLAGS ?= -O2 -g
WS_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I$(ERL_INTERFACE)/include -Ic_src
WS_LIBS := -L$(ERL_INTERFACE)/lib -lei -lwebsockets -lssl -lcrypto -lcares -lpthread -lm

SRCS := $(wildcard c_src/*.c)
LIB_SRCS := $(filter-out c_src/ws_port.c,$(SRCS))
BUILD ?= c_build
OBJS := $(patsubst c_src/%.c,$(BUILD)/%.o,$(SRCS))
LIB_OBJS := $(patsubst c_src/%.c,$(BUILD)/%.o,$(LIB_SRCS))
HDRS := $(wildcard c_src/*.h)
TARGET ?= priv/ws_port

TEST_SRCS := $(wildcard c_test/test_*.c)
TEST_BINS := $(patsubst c_test/%.c,$(BUILD)/%,$(TEST_SRCS))

.PHONY: all test c-test erl-test ex-test conformance demo asan bench clean cppcheck fmt

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

cppcheck:
	cppcheck --std=c11 --enable=warning,performance,portability --error-exitcode=1 \
	  --inline-suppr --quiet -Ic_src c_src c_test

erl-test: all
	rebar3 eunit

ex-test: all
	mix test

conformance: all
	test/conformance.sh

test: all c-test cppcheck ex-test erl-test conformance

demo: all
	examples/demo.sh

bench: all
	$(MAKE) -C bench

clean:
	rm -rf c_build priv/ws_port priv/ws_port.asan _build

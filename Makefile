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
#   make fuzz-long  fuzz_conn for FUZZ_RUNS executions over FUZZ_JOBS nice-19
#                   processes, per-job counts and their sum (c_test/fuzz_long.sh)
#   make chaos      the chaos test on ws and wss, CHAOS_SECONDS each (seed:
#                   CHAOS_SEED, printed), on the ASan build
#   make bench      throughput benchmarks (see bench/README.md)
#   make WSP_PORTABLE=1   (or make portable)
#                   priv/ws_port.portable: the paths used where Linux's are
#                   missing (macOS, the BSDs: no splice, epoll, abstract
#                   sockets, pipe sizing), built on Linux to test them
#   make portable-check   that binary imports no Linux-only call
#   make portable-test    the end-to-end suites against that binary

CC ?= cc
ERL_INTERFACE := $(shell erl -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().' 2>/dev/null)
CFLAGS ?= -O2 -g

# Libraries: pkg-config when it knows them (Homebrew and the BSDs install
# under /opt/homebrew, /usr/local, /usr/pkg), else the plain linker flags,
# which work where everything is under /usr. PKG_CONFIG= turns it off.
PKG_CONFIG ?= pkg-config
pc_cflags = $(if $(PKG_CONFIG),$(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null))
pc_libs = $(or $(if $(PKG_CONFIG),$(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)),$(2))
DEP_CFLAGS := $(call pc_cflags,libwebsockets) $(call pc_cflags,openssl) \
  $(call pc_cflags,libcares) $(call pc_cflags,libuv) $(call pc_cflags,zlib)
DEP_LIBS := $(call pc_libs,libwebsockets,-lwebsockets) $(call pc_libs,openssl,-lssl -lcrypto) \
  $(call pc_libs,libcares,-lcares) $(call pc_libs,libuv,-luv) $(call pc_libs,zlib,-lz)

WS_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I$(ERL_INTERFACE)/include -Ic_src \
  $(DEP_CFLAGS)
WS_LIBS := -L$(ERL_INTERFACE)/lib -lei $(DEP_LIBS) -lpthread -lm

# WSP_PORTABLE=1: the portable paths (c_src/wsp_compat.h) on Linux, in their
# own build directory and binary
ifeq ($(WSP_PORTABLE),1)
WS_CFLAGS += -DWSP_PORTABLE
BUILD ?= c_build/portable
TARGET ?= priv/ws_port.portable
endif

SRCS := $(wildcard c_src/*.c)
LIB_SRCS := $(filter-out c_src/ws_port.c,$(SRCS))
BUILD ?= c_build
OBJS := $(patsubst c_src/%.c,$(BUILD)/%.o,$(SRCS))
LIB_OBJS := $(patsubst c_src/%.c,$(BUILD)/%.o,$(LIB_SRCS))
HDRS := $(wildcard c_src/*.h)
TARGET ?= priv/ws_port

TEST_SRCS := $(wildcard c_test/test_*.c)
TEST_BINS := $(patsubst c_test/%.c,$(BUILD)/%,$(TEST_SRCS))

.PHONY: setup all test test-all beam-lint c-test erl-test ex-test conformance demo asan bench clean cppcheck fmt fuzz fuzz-long \
  portable portable-check portable-test chaos

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
  -std=c11 -D_GNU_SOURCE -Ic_src -I$(ERL_INTERFACE)/include $(DEP_CFLAGS)
FUZZ_SRCS := $(wildcard c_test/fuzz_*.c)
FUZZ_BINS := $(patsubst c_test/%.c,c_build/fuzz/%,$(FUZZ_SRCS))
# the c_src files each harness links (default: the codec alone)
FUZZ_LINK_fuzz_proto := c_src/ws_codec.c c_src/wsp_proto.c c_src/wsp_backoff.c c_src/wsp_deflate.c c_src/wsp_buf.c
FUZZ_LINK_fuzz_deflate := c_src/wsp_deflate.c c_src/ws_codec.c c_src/wsp_buf.c
FUZZ_LINK_fuzz_text := c_src/wsp_text.c
# the connection state machine, unchanged, over fake_net.c's loop, link and
# DNS (link-time stand-ins) and fake_sock.c's in-memory sockets (its socket
# system calls wrapped at link time)
FUZZ_CONN_SRCS := c_src/wsp_conn.c c_src/ws_codec.c c_src/wsp_proto.c c_src/wsp_backoff.c \
  c_src/wsp_buf.c c_src/wsp_tls.c c_src/wsp_deflate.c c_src/wsp_compat.c c_src/wsp_proxy.c \
  c_src/wsp_optcache.c
FUZZ_LINK_fuzz_conn := c_test/fake_net.c c_test/fake_loop.c c_test/fake_sock.c $(FUZZ_CONN_SRCS)
FUZZ_LDFLAGS_fuzz_conn := $(foreach f,socket connect setsockopt getsockopt send recv shutdown close,-Wl,--wrap=$(f))
c_build/fuzz/fuzz_conn: c_test/fake_net.c c_test/fake_net.h c_test/fake_loop.c c_test/fake_loop.h \
  c_test/fake_sock.c c_test/fake_sock.h $(FUZZ_CONN_SRCS)
# the port link's framing both ways and its splice path, over fake_loop.c
FUZZ_LINK_SRCS := c_src/wsp_link.c c_src/wsp_buf.c c_src/wsp_proto.c c_src/ws_codec.c \
  c_src/wsp_backoff.c c_src/wsp_deflate.c c_src/wsp_compat.c
FUZZ_LINK_fuzz_link := c_test/fake_loop.c $(FUZZ_LINK_SRCS)
c_build/fuzz/fuzz_link: c_test/fake_loop.c c_test/fake_loop.h $(FUZZ_LINK_SRCS)
# libFuzzer options of a harness (default: none)
FUZZ_LINK_fuzz_proxy := c_src/wsp_proxy.c c_src/ws_codec.c
# the CLI's stdin lines, whole and in pieces against a reference
FUZZ_LINK_fuzz_lines := c_src/wsp_lines.c c_src/wsp_buf.c c_src/ws_codec.c
c_build/fuzz/fuzz_lines: c_src/wsp_lines.c
FUZZ_OPTS_fuzz_conn := -max_len=16384
FUZZ_OPTS_fuzz_link := -max_len=8192
rparen := )

c_build/fuzz/fuzz_%: c_test/fuzz_%.c c_src/ws_codec.c c_src/wsp_proto.c c_src/wsp_backoff.c \
  c_src/wsp_text.c c_src/wsp_deflate.c c_src/wsp_buf.c c_src/wsp_proxy.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ-LD $@"; $(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< \
	  $(or $(FUZZ_LINK_fuzz_$*),c_src/ws_codec.c) $(FUZZ_LDFLAGS_fuzz_$*) -L$(ERL_INTERFACE)/lib -lei \
	  $(call pc_libs,openssl,-lssl -lcrypto) $(call pc_libs,zlib,-lz) -lm

fuzz: $(FUZZ_BINS)
	@set -e; for b in $(FUZZ_BINS); do n=$$(basename $$b); opts=''; \
	  case $$n in $(foreach h,$(notdir $(FUZZ_BINS)),$(h)$(rparen) opts='$(FUZZ_OPTS_$(h))';;) esac; \
	  mkdir -p c_build/fuzz/corpus/$$n; echo "== $$n ($(FUZZ_SECONDS) s) $$opts"; \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $$b -max_total_time=$(FUZZ_SECONDS) $$opts \
	    -timeout=10 -print_final_stats=1 -artifact_prefix=c_build/fuzz/$$n- \
	    c_build/fuzz/corpus/$$n c_test/corpus/$$n 2>c_build/fuzz/$$n.log \
	  || { tail -n 60 c_build/fuzz/$$n.log; echo "fuzz: $$n FAILED (log c_build/fuzz/$$n.log)"; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done ' c_build/fuzz/$$n.log; done

# the long run of fuzz_conn (issue 17): FUZZ_RUNS executions in all over
# FUZZ_JOBS processes at nice 19 on one shared corpus (c_build/fuzz/long/),
# their counts and the sum printed at the end (c_test/fuzz_long.sh)
FUZZ_RUNS ?= 10000000
FUZZ_JOBS ?= 2
FUZZ_LONG_SECONDS ?= 0
fuzz-long: c_build/fuzz/fuzz_conn
	@FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_LONG_SECONDS=$(FUZZ_LONG_SECONDS) c_test/fuzz_long.sh

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

# The portable build (see WSP_PORTABLE above).
portable:
	$(MAKE) WSP_PORTABLE=1

# None of these may be imported by the portable binary.
LINUX_ONLY := splice vmsplice tee pipe2 accept4 epoll_create epoll_create1 epoll_ctl \
  epoll_wait epoll_pwait epoll_pwait2 eventfd eventfd_read eventfd_write signalfd \
  timerfd_create timerfd_settime timerfd_gettime getrandom
portable-check: portable
	test/portable_check.sh priv/ws_port.portable $(LINUX_ONLY)

# The end-to-end ExUnit suites with every driver running the portable binary
# (test_helper.exs reads WS_PORT_PROGRAM).
PORTABLE_TESTS := test/ws_port_e2e_test.exs test/client_test.exs test/zero_copy_test.exs \
  test/flow_control_test.exs test/cli_test.exs
portable-test: portable-check
	$(MAKE) WSP_PORTABLE=1 c-test
	WS_PORT_PROGRAM=priv/ws_port.portable mix test $(PORTABLE_TESTS)

test-all: c-test cppcheck asan beam-lint ex-test erl-test conformance portable-test
	$(MAKE) fuzz FUZZ_SECONDS=20
	$(MAKE) chaos CHAOS_SECONDS=60

# The chaos test (test/chaos_test.exs): CHAOS_SECONDS of random connection
# lives against test/peers/chaos_server.py on ws, then on wss, on the
# ASan/UBSan build. A failure prints its seed; CHAOS_SEED=N replays it.
CHAOS_SECONDS ?= 60
CHAOS_SEED ?=
chaos: asan
	WS_PORT_PROGRAM=priv/ws_port.asan CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_SEED=$(CHAOS_SEED) \
	  mix test --only chaos --seed 0 test/chaos_test.exs

# the demo needs no node package: its setup skips node and npm ci
demo:
	.ci/setup --no-node
	$(MAKE) all
	examples/demo.sh

bench: all
	$(MAKE) -C bench

clean:
	rm -rf c_build priv/ws_port priv/ws_port.asan priv/ws_port.portable _build

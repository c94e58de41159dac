# nsgate: see README.md. Targets: build, test, bench, lint, run, fuzz, clean.

GO ?= go
# Go from the official tarball and tools installed with 'go install'.
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

# How much each fuzz target runs in 'make test': execution counts of about
# 4 s each here. Counts, not durations: a duration -fuzztime can fail with a
# spurious "context deadline exceeded" under load (a race in Go's fuzz
# coordinator, go.dev/issue/75804, fixed in Go 1.27). 'make fuzz FUZZTIME=10m'
# digs deeper.
FUZZTIME ?=
FUZZ_TARGETS = \
	./internal/packet:FuzzDecode:300000x \
	./internal/config:FuzzParse:200000x \
	./internal/dhcp:FuzzHandle:150000x \
	./internal/dhcp6:FuzzHandle:150000x \
	./internal/ndp:FuzzHandle:150000x \
	./internal/dns:FuzzServFail:200000x \
	./internal/engine:FuzzHandleFrame:250000x \
	./internal/engine:FuzzTapFrame:150000x \
	./internal/api:FuzzHandle:150000x \
	./internal/vmsock:FuzzStream:6000x \
	./internal/pasta:FuzzParse:100000x \
	./internal/pasta:FuzzBoundPorts:100000x

CMD ?= ip addr

.PHONY: all build test setup gotest gotest-sandbox gotest-nopeek test-kernel fuzz bats lint bench bench-vm run clean install uninstall

# make install: the binary and the man page under $(DESTDIR)$(PREFIX).
PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MAN1DIR = $(PREFIX)/share/man/man1
# go-md2man renders docs/nsgate.1.md: go install github.com/cpuguy83/go-md2man/v2@v2.0.7
MD2MAN ?= go-md2man

all: build

# The commit --version prints: HEAD, marked -dirty when tracked files
# differ from it; empty outside a git checkout (nsgate then says unknown).
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)

build:
	$(GO) build -ldflags "-X main.commit=$(COMMIT)" -o nsgate .

# Everything CI runs. Needs root: the integration tests build network
# namespaces and run the rootless cases as the user tests/setup.sh creates.
test: build setup lint gotest gotest-sandbox gotest-nopeek fuzz bats test-kernel

setup:
	./tests/setup.sh

# Unit tests and, with the integration tag, the tests against real kernels,
# namespaces, udhcpc and ping, all with the race detector.
gotest:
	$(GO) test -race -count=1 -tags integration -timeout 15m ./...

# The traffic suites again, with nsgate sandboxed and under its seccomp
# filter (the options podman passes).
gotest-sandbox:
	NSGATE_TEST_ARGS="--enable-sandbox --enable-seccomp" $(GO) test -race -count=1 -tags integration -timeout 15m \
		-run 'TestTCP|TestUDP|TestDNS|TestPing|TestForward|TestOutbound|TestVM|TestIPv6|TestDHCPv6' .

# The TCP traffic suites again on the fallback for kernels before 6.9 (no
# SO_PEEK_OFF on TCP sockets), forced on this kernel: both ways of sending
# host data to the namespace are tested on every run.
gotest-nopeek:
	NSGATE_NO_PEEK_OFF=1 $(GO) test -race -count=1 -tags integration -timeout 15m \
		-run 'TestTCP|TestForwardTCP|TestSpawnTraffic|TestIPv6TCP|TestIPv6Forward' .

# The suites on Debian's packaged kernels, booted under qemu (TCG): Debian
# 12's 6.1, and Debian 11's 5.10, the oldest nsgate supports (no
# mount_setattr: the sandbox's fallback runs). See docs/kernels.md.
test-kernel:
	./tests/kernel/run.sh
	KERNEL_SUITE=bullseye ./tests/kernel/run.sh

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; budget=$${rest#*:}; \
		budget=$${FUZZTIME:-$$budget}; \
		echo "fuzz $$pkg $$fn ($$budget)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$$budget $$pkg; \
	done

bats: build
	bats tests/

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	staticcheck ./...
	staticcheck -tags integration ./...

# The project's own benchmarks: per-frame cost of parsing and answering, then
# TCP end to end (throughput each way, round trips, connections) through
# nsgate and, when installed, slirp4netns, in a sealed namespace topology
# (root). ../shared/bench/netbench compares with pasta and a veth pair too.
bench: build setup
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=200000x ./internal/...
	$(GO) test -tags integration -run='^$$' -bench='BenchmarkTCP|BenchmarkStalledFlowsRSS' -timeout 15m .

# TCP between a qemu guest and the host through nsgate --socket and passt
# --socket, same guest, same run (needs qemu-system-x86, iperf3, passt).
bench-vm: setup
	./tests/vm/bench.sh

# Runs CMD (default: ip addr) in a new namespace served by nsgate.
run: build
	./nsgate -- $(CMD)

nsgate.1: docs/nsgate.1.md
	@command -v $(MD2MAN) >/dev/null || { echo "$(MD2MAN) not found: go install github.com/cpuguy83/go-md2man/v2@v2.0.7" >&2; exit 1; }
	$(MD2MAN) -in docs/nsgate.1.md -out nsgate.1

install: build nsgate.1
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN1DIR)
	install -m 0755 nsgate $(DESTDIR)$(BINDIR)/nsgate
	install -m 0644 nsgate.1 $(DESTDIR)$(MAN1DIR)/nsgate.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/nsgate $(DESTDIR)$(MAN1DIR)/nsgate.1

clean:
	rm -f nsgate nsgate.1

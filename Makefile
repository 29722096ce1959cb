# ftpsgate: the two commands a new machine needs are `make demo` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# A count, not a duration: Go 1.26's fuzz coordinator can fail a target with a
# bare "context deadline exceeded" when a -fuzztime duration ends while a worker
# is busy on a loaded machine (golang/go#75804, fixed in Go 1.27). A count has no
# deadline to race. `make fuzz` explores for a fixed time and may hit that race.
FUZZTIME ?= 50000x

.PHONY: all build test test-deps unit fuzz-smoke fuzz demo demo-check bench bench-quick vet clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ftpsgate ./cmd/ftpsgate
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ftpsload ./cmd/ftpsload

# Installs what the tests need (Debian packages; vsftpd, pure-ftpd and
# ProFTPD unpacked, never installed; an FTP-only account), then runs every test with the race detector, then each fuzz
# target for a few seconds.
test: test-deps vet
	$(GO) test -race -count=1 -timeout 40m ./...
	$(MAKE) fuzz-smoke

test-deps:
	./scripts/test-deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Unit tests only: no root, no FTP servers. In proxy/, the tests that need
# neither: the command dispatch and the failures the scripted backend
# plays (fakebackend_test.go), and the internal tests.
UNIT_PROXY_TESTS = TestDispatchWithoutRoot TestDispatchReadOnly TestBackendFailsMidDownload TestBackendPASVForeignAddress \
	TestHostileBackend TestBackendUnavailable TestAnnouncedSize TestHandshakeDiagnosis TestSiblingSessionTickets \
	TestUserNameSpellings TestPlaintextHostForgotten TestBansByIPv6Prefix TestCheckConfigVerbs \
	TestSessionCache TestTicketOwner TestPoolOrder TestStickyUser TestPoolsAcrossReload TestBackendQueue \
	TestEOFConnCoalesces TestRelayCoalescesTLSRecords TestReadHeld
space := $() $()
unit:
	$(GO) test -count=1 ./rewrite/... ./policy/... ./proxy/config/... ./proxy/dataport/...
	$(GO) test -count=1 -run '^($(subst $(space),|,$(strip $(UNIT_PROXY_TESTS))))$$' ./proxy/

fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzParseCommand$$' -fuzztime $(FUZZTIME) ./rewrite/
	$(GO) test -run '^$$' -fuzz '^FuzzReadReply$$' -fuzztime $(FUZZTIME) ./rewrite/
	$(GO) test -run '^$$' -fuzz '^FuzzActive$$' -fuzztime $(FUZZTIME) ./rewrite/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./proxy/config/
	$(GO) test -run '^$$' -fuzz '^FuzzReadResponse$$' -fuzztime $(FUZZTIME) ./proxy/scan/

fuzz:
	$(MAKE) fuzz-smoke FUZZTIME=2m

# Runs ftpsgate in front of a real vsftpd on loopback; Ctrl-C stops both.
# The vsftpd is the copy test-deps unpacked: an FTP server installed on the
# machine is neither used nor removed.
demo: build test-deps
	./scripts/demo.sh

# What make demo sets up, and its self-check, then stops (CI runs it).
demo-check: build test-deps
	./scripts/demo.sh --check

# ftpsgate against vsftpd's own FTPS, plain FTP, ProFTPD mod_proxy and the
# Go TLS ceiling, in one run on loopback (needs root; under 10 minutes on 2
# cores): prints the table, writes results/bench.{md,json,svg}.
bench: build test-deps
	./scripts/bench.sh

# The same, every figure shrunk: a smoke test of the whole benchmark (CI
# runs it; no timing is asserted), under 2 minutes.
bench-quick: build test-deps
	QUICK=1 ./scripts/bench.sh

# What the builds and make bench-quick leave; results/ holds the last
# make bench run, which is kept under version control.
clean:
	rm -rf bin results/quick

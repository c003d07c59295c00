# durablews developer entry points. `make test` is the project's test command; CI runs
# it through .ci/run (a fresh clone, as root, CI=true, no stdin).
#
#   make test       cgo + broker + chromium + web deps, go vet, gofmt check, go test -race,
#                   web tests (node, incl. the headless-Chromium e2e), short fuzz runs
#   make cgo        install gcc + libc6-dev if missing: go test -race needs cgo (scripts/cgo.sh)
#   make broker     make the RabbitMQ under test ready: RABBITMQ's shared node (4.0 by default,
#                   in a debootstrapped root: scripts/rabbitmq-versions.sh; 3.10: scripts/rabbitmq.sh)
#   make test-matrix  the guarantee suite (chaos with kill -9, tab sessions + security, browser
#                   e2e, streams, cluster chaos) on every other supported version (MATRIX_VERSIONS;
#                   each installed and started by scripts/rabbitmq-versions.sh)
#   make chromium   install Debian's chromium/chromium-driver if missing (scripts/chromium.sh)
#   make web-deps   npm ci in web/ (when web/package.json exists and node_modules is stale)
#   make web-test   node --test in web/ (DURABLEWS_E2E=$(WEB_E2E))
#   make demo       broker (+ tab sessions config) + web deps, then go run ./example
#   make demo-cluster  the demo against `make cluster` (tab sessions, quorum tab queues, all 3 nodes): kill a
#                   node (bash scripts/rabbitmq-cluster.sh kill N) and watch the page fail over
#   make bench      cmd/durablews-bench: durablews vs watermill-amqp vs raw amqp091-go, streams, connected tabs, receipts off vs on
#                   (~25 min; the 1,000-tab scenarios on a private node; BENCH_FLAGS=-short/-markdown)
#   make tab-sessions-broker  configure the shared broker for tab sessions (restarts it if its config changed)
#   make tab-sessions-plan    what that would change (read-only)
#   make doctor     go run ./cmd/durablews doctor (checks the local broker, read-only)
#   make cluster    a local 3-node cluster beside the machine's broker (scripts/rabbitmq-cluster.sh start;
#                   AMQP 5681-5683, Web-STOMP 15681-15683); make cluster-status / cluster-stop
#   make sizing     broker memory per tab queue / message / connected tab on a private node (~3 min)
#   make fmt / vet / fmt-check / gotest / gotest-norace / fuzz
#
# Knobs: make test RABBITMQ=4.3 (the version under test: 4.0, 3.10, 4.3; also DURABLEWS_RABBITMQ)
#        make test FUZZTIME=1000000x TEST_TIMEOUT=30m GOTEST_FLAGS='-v' PKGS=./internal/...
#        WEB_TESTS=0 (skip web-test)  WEB_E2E=0 (web tests without the browser e2e)
#        make demo-cluster DEMO_FLAGS=-addr=127.0.0.1:8081 (extra flags of go run ./example)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# CI's environment may lack Go on PATH.
export PATH := /usr/local/go/bin:$(PATH)

GO           ?= go
# The RabbitMQ under test (README "Supported RabbitMQ versions"): the default first, then the
# rest of the matrix. Every test, the bench and the demo find its node through
# DURABLEWS_RABBITMQ (internal/brokerversion) and the URLs scripts/rabbitmq-versions.sh prints.
RABBITMQ        ?= $(or $(DURABLEWS_RABBITMQ),4.0)
MATRIX_VERSIONS ?= $(filter-out $(RABBITMQ),$(shell bash scripts/rabbitmq-versions.sh list))
export DURABLEWS_RABBITMQ := $(RABBITMQ)
# eval-able DURABLEWS_*_URL settings of RABBITMQ's shared node, for shells of recipes.
BROKER_ENV = eval "$$(bash scripts/rabbitmq-versions.sh env $(RABBITMQ))"; export DURABLEWS_AMQP_URL DURABLEWS_WEB_STOMP_URL DURABLEWS_MANAGEMENT_URL;
PKGS         ?= ./...
TEST_TIMEOUT ?= 20m
GOTEST_FLAGS ?=
FUZZTIME     ?= 200000x
WEB_TESTS    ?= 1
WEB_E2E      ?= 1

# Steps run one after another, in the order written (go test parallelises by itself).
.NOTPARALLEL:
.DEFAULT_GOAL := help

.PHONY: help test test-matrix matrix-one cgo broker chromium web-deps web-test demo bench fmt fmt-check vet gotest fuzz doctor sizing tab-sessions-broker tab-sessions-plan cluster cluster-status cluster-stop demo-cluster

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

# Every step runs even in `make -n test`'s listing; the first failing one stops the run
# with a line naming it.
TEST_STEPS := cgo broker chromium web-deps vet fmt-check gotest gotest-norace web-test fuzz

test:
	@for step in $(TEST_STEPS); do \
		echo "==> make $$step"; \
		if ! $(MAKE) --no-print-directory $$step; then \
			echo >&2; \
			echo "make test: FAILED at step '$$step' (see its output above)" >&2; \
			exit 1; \
		fi; \
	done; \
	echo "make test: OK: all steps passed ($(TEST_STEPS))"

# The guarantee suite, run on every other supported version by test-matrix (README "Supported
# RabbitMQ versions"): single-node chaos with kill -9, tab faults and Web-STOMP durability, cluster
# chaos with quorum tab queues (root tests below); tab sessions with the security negative tests,
# streams resume and kill -9, the browser tests in headless Chromium (Go and node), the demo walk,
# setup/doctor, the kill -9 metadata measurement (packages below, whole).
GUARANTEE_ROOT_TESTS := ^(TestChaos_NothingConfirmedIsLost|TestCluster|TestTabFaults_.*|TestWebSTOMP_.*)$$
GUARANTEE_PKGS       := ./tabsession/ ./broadcast/ ./web/ ./example/ ./cmd/durablews/ ./internal/testbroker/

test-matrix:
	@for v in $(MATRIX_VERSIONS); do \
		echo "==> RabbitMQ $$v: the guarantee suite"; \
		start=$$SECONDS; \
		if ! $(MAKE) --no-print-directory matrix-one RABBITMQ=$$v; then \
			echo >&2; echo "make test-matrix: FAILED on RabbitMQ $$v (see its output above)" >&2; exit 1; \
		fi; \
		echo "==> RabbitMQ $$v: guarantee suite OK in $$((SECONDS - start)) s"; \
	done; \
	echo "make test-matrix: OK on RabbitMQ $(MATRIX_VERSIONS)"

# One version of the matrix: its broker, then the guarantee suite against it.
matrix-one: broker chromium web-deps
	@$(BROKER_ENV) set -x; $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run '$(GUARANTEE_ROOT_TESTS)' . && \
		$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(GUARANTEE_PKGS)
	@$(MAKE) --no-print-directory web-test

# go test -race needs cgo, and cgo a C compiler with libc headers: a fresh Debian has none.
cgo:
	@GO=$(GO) bash scripts/cgo.sh

broker:
	@bash scripts/rabbitmq-versions.sh start $(RABBITMQ)

cluster:
	@bash scripts/rabbitmq-cluster.sh start

cluster-status:
	@bash scripts/rabbitmq-cluster.sh status

cluster-stop:
	@bash scripts/rabbitmq-cluster.sh stop

chromium:
	@bash scripts/chromium.sh

# npm ci only when web/node_modules is missing or older than the lock file, so a re-run
# does not pull node_modules from under a test running in web/.
web-deps:
	@if [ ! -f web/package.json ]; then \
		echo "web-deps: no web/package.json yet; skipping"; \
		exit 0; \
	fi; \
	command -v npm >/dev/null || { echo "web-deps: ERROR: npm not found (install Node.js 20 + npm)" >&2; exit 1; }; \
	cd web; \
	if [ -f package-lock.json ]; then \
		if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ] \
			&& [ node_modules/.package-lock.json -nt package.json ]; then \
			echo "web-deps: web/node_modules up to date"; \
		else \
			echo "web-deps: npm ci (web/)"; \
			npm ci --no-audit --no-fund --loglevel=error </dev/null; \
		fi; \
	else \
		echo "web-deps: no web/package-lock.json; npm install (web/)"; \
		npm install --no-audit --no-fund --loglevel=error </dev/null; \
	fi

web-test: web-deps
	@if [ "$(WEB_TESTS)" = 0 ]; then echo "web-test: skipped (WEB_TESTS=0)"; exit 0; fi; \
	if [ ! -f web/package.json ] || ! grep -q '"test"[[:space:]]*:' web/package.json; then \
		echo "web-test: no \"test\" script in web/package.json; skipping"; \
		exit 0; \
	fi; \
	$(BROKER_ENV) cd web && DURABLEWS_E2E=$(WEB_E2E) npm test --silent </dev/null

# The demo uses tab sessions: rabbitmq-tab-sessions.sh configures RABBITMQ's node for them
# (signing key, OAuth 2 backend, policy; restarts it only if its config changed).
demo: broker web-deps
	@if [ ! -d example ]; then \
		echo "demo: ERROR: ./example does not exist yet" >&2; \
		exit 1; \
	fi
	bash scripts/rabbitmq-tab-sessions.sh
	@$(BROKER_ENV) set -x; $(GO) run ./example -signing-key "$$(bash scripts/rabbitmq-tab-sessions.sh key-path)" \
		-amqp "$$DURABLEWS_AMQP_URL" -ws "$$DURABLEWS_WEB_STOMP_URL" $(DEMO_FLAGS)

# The production path on a cluster: tab sessions (make cluster configures every node for them)
# with quorum tab queues, which survive a killed node.
CLUSTER_AMQP := amqp://guest:guest@127.0.0.1:5681/,amqp://guest:guest@127.0.0.1:5682/,amqp://guest:guest@127.0.0.1:5683/
CLUSTER_WS   := ws://127.0.0.1:15681/ws,ws://127.0.0.1:15682/ws,ws://127.0.0.1:15683/ws

demo-cluster: cluster web-deps
	$(GO) run ./example -quorum -signing-key "$$(bash scripts/rabbitmq-tab-sessions.sh key-path)" \
		-amqp '$(CLUSTER_AMQP)' -ws '$(CLUSTER_WS)' $(DEMO_FLAGS)

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags sizing,measure $(PKGS)  # the measurement tests behind build tags

# Go files of the module, minus npm's tree and testdata (which may hold odd Go on purpose).
GO_FILES_CMD := find . -name '*.go' -not -path './.git/*' -not -path '*/node_modules/*' -not -path '*/testdata/*' -print

fmt:
	@$(GO_FILES_CMD) | xargs -r gofmt -l -w

fmt-check:
	@bad=$$($(GO_FILES_CMD) | xargs -r gofmt -l); \
	if [ -n "$$bad" ]; then \
		echo "fmt-check: FAILED: these files are not gofmt-formatted (run: make fmt):" >&2; \
		sed 's/^/  /' <<<"$$bad" >&2; \
		exit 1; \
	fi; \
	echo "fmt-check: ok"

gotest:
	@$(BROKER_ENV) set -x; $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(GOTEST_FLAGS) $(PKGS)

# Tests that cannot run under -race because of races in a dependency's code
# (files with //go:build !race; each says why).
gotest-norace:
	@$(BROKER_ENV) set -x; $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '^TestWatermillAMQPSubscriberAcrossRestarts$$' $(GOTEST_FLAGS) .

# Every `func FuzzX(` in a *_test.go is fuzzed for FUZZTIME, one target at a time
# (go test -fuzz takes one package and one target). New targets are picked up
# automatically; no targets at all is fine. FUZZTIME is a count (200000x), not a
# duration: with a duration, Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" failure at the deadline with no failing input
# (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race.
fuzz:
	@targets=$$(grep -rn --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git \
		-E '^func Fuzz[A-Za-z0-9_]*\(' . | sed -E 's#^(.*)/[^/]*_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort -u || true); \
	if [ -z "$$targets" ]; then echo "fuzz: no fuzz targets (func FuzzX in *_test.go); nothing to do"; exit 0; fi; \
	n=0; \
	while read -r dir name; do \
		n=$$((n + 1)); \
		echo "fuzz: $$name in $$dir for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir" </dev/null; \
	done <<<"$$targets"; \
	echo "fuzz: ok ($$n target(s), $(FUZZTIME) each)"

# The 1,000-tab scenarios need more open files than a default broker has (1,024): the
# shared broker runs everything else, a private node with a raised limit runs those.
bench: broker
	$(GO) run ./cmd/durablews-bench $(if $(findstring -short,$(BENCH_FLAGS)),,-connected-k 10,100) $(BENCH_FLAGS)
	$(if $(findstring -short,$(BENCH_FLAGS)),,ulimit -n 65536 2>/dev/null || true; \
		$(GO) run ./cmd/durablews-bench -private-broker -scenarios '^connected' -connected-k 1000 $(BENCH_FLAGS))

doctor:
	$(GO) run ./cmd/durablews doctor

sizing:
	$(GO) test -tags sizing -run TestSizing -v -count=1 -timeout 20m ./cmd/durablews/

tab-sessions-broker:
	@bash scripts/rabbitmq-tab-sessions.sh

tab-sessions-plan:
	@bash scripts/rabbitmq-tab-sessions.sh plan

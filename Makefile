# fedgate — node agent for Powernode federation.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
# Privileged tests are named TestPrivileged*; they need root (network namespaces, TUN, netlink).
PRIV_RUN := ^TestPrivileged

.PHONY: help build test test-unit test-privileged lint bench run demo clean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n",$$1,$$2}'

build: ## build bin/fedgated and bin/fedgate
	$(GO) build -o $(BIN)/fedgated ./cmd/fedgated
	$(GO) build -o $(BIN)/fedgate ./cmd/fedgate

test: ## go vet, unit tests with -race, then the privileged tests (skips fail under CI=true)
	$(GO) vet $(PKGS)
	$(MAKE) test-unit
	$(MAKE) test-privileged

test-unit: ## unit tests with the race detector (privileged tests excluded)
	@set -o pipefail; out=$$(mktemp); \
	$(GO) test -race -count=1 -timeout 20m -skip '$(PRIV_RUN)' -v $(PKGS) > $$out 2>&1; rc=$$?; \
	grep -E '^(ok|FAIL|---|panic:)|^\s+--- FAIL' $$out | grep -v -- '--- PASS\|--- SKIP'; \
	if [ $$rc -ne 0 ]; then grep -vE '^(=== (RUN|PAUSE|CONT|NAME)|\s*--- PASS|PASS$$|ok )' $$out | tail -150; \
	  echo "--- test messages (log lines left out):"; grep -E '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: |^\s*--- FAIL|^panic:' $$out | grep -v 'level=' | tail -80; fi; \
	echo "unit tests: $$(grep -cE -- '^--- PASS' $$out) passed, $$(grep -cE -- '^--- FAIL' $$out) failed"; \
	rm -f $$out; exit $$rc

test-privileged: build ## privileged tests in network namespaces (root); a skip is a failure when CI is set
	@set -o pipefail; out=$$(mktemp); \
	$(GO) test -race -count=1 -timeout 20m -p 1 -run '$(PRIV_RUN)' -v $(PKGS) 2>&1 | tee $$out | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; rc=$${PIPESTATUS[0]}; \
	skipped=$$(grep -cE -- '--- SKIP: TestPrivileged' $$out || true); \
	echo "privileged tests: $$(grep -cE -- '--- PASS: TestPrivileged' $$out) passed, $$(grep -cE -- '--- FAIL: TestPrivileged' $$out) failed, $$skipped skipped"; \
	if [ $$rc -ne 0 ]; then grep -vE '^(=== RUN|--- PASS|PASS|ok)' $$out | tail -80; \
	  echo "--- test messages (log lines left out):"; grep -E '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: |^\s*--- FAIL|^panic:' $$out | grep -v 'level=' | tail -80; \
	  rm -f $$out; exit $$rc; fi; \
	if [ -n "$$CI" ] && [ "$$skipped" != 0 ]; then grep -A3 -- '--- SKIP: TestPrivileged' $$out; echo "CI is set: skipped privileged tests are failures"; rm -f $$out; exit 1; fi; \
	rm -f $$out

lint: ## gofmt -l, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

bench: build ## benchmarks with same-run baselines (raft, audit, netctl, proxy)
	./scripts/bench.sh

run: build ## start a single-node dev site (fedgated --dev)
	$(BIN)/fedgated --dev

demo: build ## two federated sites in network namespaces (root)
	./scripts/demo.sh

-include packaging/Makefile.inc

clean: ## remove build output
	rm -rf $(BIN) dist

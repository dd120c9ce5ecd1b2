# rwsplit: `make demo` shows it working on a local cluster, `make test` runs
# the whole suite (unit, real-server integration, examples build).
GO      ?= go
MODULES := . rwsplitpgx rwsplitmysql rwsplittest rwsplitprom rwsplitotel integration examples docs/plots
# Modules whose tests need no server: the core, the driver modules and the
# chart program.
UNIT_MODULES := . rwsplitpgx rwsplitmysql docs/plots
# The observer adapters: their tests run on local servers (no Docker).
ADAPTERS := rwsplitprom rwsplitotel
TESTFLAGS ?= -race -count=1

.PHONY: deps test vet unit integration fleet kit adapters examples demo bench benchdata plots fuzz chaos generate

# testcontainers-go, for the test kit's container backend. These machines
# carry /.dockerenv, so without the override testcontainers-go would reach
# the ports mapped on 127.0.0.1 through the default gateway; the reaper
# image cannot be pulled here, and the kit removes what it starts itself.
KIT_ENV := TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 TESTCONTAINERS_RYUK_DISABLED=true

deps:
	@bash scripts/deps.sh

vet:
	@for m in $(MODULES); do echo "go vet ($$m)"; (cd $$m && $(GO) vet ./...) || exit 1; done

unit:
	@for m in $(UNIT_MODULES); do echo "go test ($$m)"; (cd $$m && $(GO) test $(TESTFLAGS) ./...) || exit 1; done

# The chaos test runs 30s here (RWSPLIT_CHAOS_DURATION); `make chaos` runs
# it alone for 60s, verbosely. The fleet tests (names with Patroni or
# Fleet) run in `make fleet` instead.
integration: deps
	cd integration && RWSPLIT_CHAOS_DURATION=$${RWSPLIT_CHAOS_DURATION:-30s} $(GO) test $(TESTFLAGS) -skip 'Patroni|Fleet' -timeout 20m ./...

# The fleet tests: discovery from real Patroni clusters (etcd, Patroni,
# PostgreSQL on loopback, started by rwsplittest/patroni, whose own test
# runs in `make kit`) and from DNS: about 1.5 minutes here (2 cores, -race).
fleet: deps
	cd integration && $(GO) test $(TESTFLAGS) -run 'Patroni|Fleet' -timeout 10m ./...

# The test kit (rwsplittest), on containers and on local binaries, and its
# Patroni clusters (rwsplittest/patroni).
kit: deps
	cd rwsplittest && $(KIT_ENV) $(GO) test $(TESTFLAGS) -timeout 10m ./...

adapters: deps
	@for m in $(ADAPTERS); do echo "go test ($$m)"; (cd $$m && $(GO) test $(TESTFLAGS) ./...) || exit 1; done

examples: deps
	cd examples && $(GO) build -o /dev/null ./... && $(GO) run ./orm
	cd examples && $(KIT_ENV) $(GO) test $(TESTFLAGS) ./testing/...
	cd examples && $(GO) test $(TESTFLAGS) ./observe/...

test: deps vet unit integration fleet kit adapters examples

demo:
	@RWSPLIT_NO_DOCKER=1 bash scripts/deps.sh
	cd examples && $(GO) run ./quickstart

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	cd integration && $(GO) test -run '^$$' -bench . -benchmem ./...

# The charts in docs/ (BENCHMARKS.md, README). `make benchdata` reruns the
# benchmarks behind them on local servers (about 5 minutes) and writes
# their output to docs/bench/*.txt, each file replaced only if its
# benchmark passed (else the output is shown); `make plots` redraws
# docs/*.svg from those committed files with Go alone (docs/plots, a
# module of its own) and runs no benchmark.
BENCHDATA := docs/bench
# $(call bench_to,FILE): the output into FILE, or shown and dropped on failure.
bench_to = > $(1).tmp || { cat $(1).tmp; rm -f $(1).tmp; exit 1; }; mv $(1).tmp $(1)

benchdata:
	@RWSPLIT_NO_DOCKER=1 bash scripts/deps.sh
	@mkdir -p $(BENCHDATA)
	$(GO) test -run '^$$' -bench '^BenchmarkOverhead$$' -benchmem -count 15 -cpu 2 . $(call bench_to,$(BENCHDATA)/overhead.txt)
	cd integration && $(GO) test -run '^$$' -bench '^BenchmarkTailLatency$$' -benchtime=1x -benchmem -count 5 -timeout 10m . $(call bench_to,../$(BENCHDATA)/tail.txt)
	cd integration && $(GO) test -run '^$$' -bench '^BenchmarkFailover$$' -benchtime=1x -benchmem -timeout 20m . $(call bench_to,../$(BENCHDATA)/failover.txt)
	cd integration && $(GO) test -run '^$$' -bench '^BenchmarkSessionReplicaShare$$' -benchtime=1x -benchmem -timeout 10m . $(call bench_to,../$(BENCHDATA)/session.txt)

plots:
	cd docs/plots && $(GO) run . -in ../bench -out ..

# The chaos test alone, 60s (crashes, freezes and restarts replicas under
# load), with its report. See BENCHMARKS.md.
chaos: deps
	cd integration && $(GO) test -race -count=1 -run TestChaos -v -timeout 10m ./...

# Regenerates the code the integration tests use from sqlc and ent
# (committed: CI does not run this). sqlc builds from source the first
# time, about a minute.
generate:
	cd integration/sqlc && $(GO) run github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1 generate
	cd integration/entdb && $(GO) generate ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzClassify -fuzztime 60s ./internal/sqlclass/

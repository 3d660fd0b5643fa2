# cometql — see README.md. `make run` starts the server on its embedded
# default; `make test` runs every test CI runs.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/cometql/cometql/internal/version.Version=$(VERSION)
export CGO_ENABLED := 1

# Length of each fuzz target's run in make test.
FUZZTIME ?= 10s

.PHONY: all build run test test-go test-fuzz test-browser bench soak clean fmt vet

all: build

build:
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cometql ./cmd/cometql
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cometql-bench ./cmd/cometql-bench

run: build
	./bin/cometql

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

test: build vet test-go test-fuzz test-browser

# Every package under the race detector: nearly all of them hold
# concurrency, and the e2e tests run a race-built server.
test-go:
	$(GO) test -race -count=1 -timeout 20m ./...

# A short run of every fuzz target (longer runs: FUZZTIME=10m make test-fuzz).
test-fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

test-browser: build
	./scripts/browser-tests.sh

bench: build
	./scripts/bench.sh short

soak: build
	./scripts/soak.sh

clean:
	rm -rf bin

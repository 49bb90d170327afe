# recon: the two commands a new user needs are `make demo` and `make test`.
GO ?= go
PKGS := ./...

.PHONY: all build test test-simd verify bench demo clean

all: build

## build: compile every package and command into bin/
build:
	$(GO) build $(PKGS)
	@mkdir -p bin
	@if [ -n "$$(find cmd -name '*.go' 2>/dev/null | head -1)" ]; then $(GO) build -o bin/ ./cmd/...; fi

## test: the race-enabled test suite, then pkg/ae again with the SIMD kernels
test:
	$(GO) test -race $(PKGS)
	$(MAKE) --no-print-directory test-simd

## test-simd: pkg/ae built with GOEXPERIMENT=simd (AVX2/AVX-512 kernels where the CPU has them)
test-simd:
	GOEXPERIMENT=simd $(GO) test -count=1 ./pkg/ae/

## verify: gofmt, go vet (both kernel builds), every exported name documented, go mod tidy leaves no diff
verify:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOEXPERIMENT=simd $(GO) vet ./pkg/ae/
	$(GO) run ./scripts/doccheck $$(go list -f '{{.Dir}}' ./pkg/... ./internal/... 2>/dev/null)
	@cp go.mod /tmp/recon-go.mod.$$$$ && cp go.sum /tmp/recon-go.sum.$$$$ && $(GO) mod tidy && \
		if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changed go.mod/go.sum:"; git diff -- go.mod go.sum; \
			cp /tmp/recon-go.mod.$$$$ go.mod; cp /tmp/recon-go.sum.$$$$ go.sum; rm -f /tmp/recon-go.*.$$$$; exit 1; fi; \
		rm -f /tmp/recon-go.*.$$$$
	@echo verify: ok

## bench: pkg/ae throughput, portable and SIMD builds, against the PyTorch peer when installed
bench:
	scripts/bench.sh

## demo: the whole pipeline on the embedded broker (not wired yet)
demo:
	@echo "make demo: the distributed pipeline (devkafka, coordinator, trainers, scorers) is not wired yet;"
	@echo "it arrives with the Kafka and demo issues. Today: make test, make bench."

clean:
	rm -rf bin

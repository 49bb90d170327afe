# recon: the two commands a new user needs are `make demo` and `make test`.
GO ?= go
PKGS := ./...
# Binaries use the AVX2/AVX-512 kernels (Go 1.26 GOEXPERIMENT=simd) on amd64;
# the default Go build stays portable.
SIMD := $(if $(filter amd64,$(shell $(GO) env GOARCH)),GOEXPERIMENT=simd,)

.PHONY: all build image test test-simd test-monitoring e2e screenshots bench-console verify verify-proto proto bench bench-score bench-train eval eval-stream fuzz demo clean

all: build

## build: compile every package and command into bin/
build:
	$(GO) build $(PKGS)
	@mkdir -p bin
	$(SIMD) $(GO) build -o bin/ ./cmd/... ./tools/...

## test: the race-enabled test suite, the whole-pipeline tests (too slow under -race), the Kubernetes manifests (deploy/, its own module), then pkg/ae with the SIMD kernels
test:
	$(GO) test -race $(PKGS)
	$(GO) test ./internal/pipeline/
	cd deploy && $(GO) test ./...
	$(MAKE) --no-print-directory test-simd

CHROMIUM ?= $(shell command -v chromium 2>/dev/null)

## e2e: the real binaries as processes, with kill -9 of a scorer, a trainer and the coordinator and a devkafka restart mid-stream, a real Prometheus and Alertmanager on the shipped rules and dashboard, and the console in headless Chromium; then test-monitoring
e2e: bin/tools/prometheus bin/tools/alertmanager
	@if [ -z "$(CHROMIUM)" ]; then echo "make e2e: the console's browser test needs Chromium (apt-get install chromium)"; exit 1; fi
	RECON_PROMETHEUS=$(CURDIR)/bin/tools/prometheus RECON_ALERTMANAGER=$(CURDIR)/bin/tools/alertmanager RECON_CHROMIUM=$(CHROMIUM) $(GO) test -tags e2e -count=1 -v ./e2e/
	$(MAKE) --no-print-directory test-monitoring

# Prometheus, promtool and Alertmanager, pinned, built from the Go module
# proxy into bin/tools. (Alertmanager v0.35's module has no built web UI,
# which its embed needs; v0.28.1's builds.)
PROMETHEUS_VERSION := v0.316.0
ALERTMANAGER_VERSION := v0.28.1
bin/tools/promtool bin/tools/prometheus:
	GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION) github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)
bin/tools/alertmanager:
	GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/prometheus/alertmanager/cmd/alertmanager@$(ALERTMANAGER_VERSION)

## test-monitoring: promtool check rules and promtool test rules on deploy/monitoring, and every dashboard query parsed (builds the pinned promtool first)
test-monitoring: bin/tools/promtool
	cd deploy && RECON_PROMTOOL=$(CURDIR)/bin/tools/promtool $(GO) test -count=1 -run 'TestPromtool' -v .

## screenshots: the console's browser test alone, writing a screenshot of each page to docs/console/ (the README shows them; needs chromium)
screenshots:
	@if [ -z "$(CHROMIUM)" ]; then echo "make screenshots: needs Chromium (apt-get install chromium)"; exit 1; fi
	RECON_CHROMIUM=$(CHROMIUM) RECON_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -tags e2e -count=1 -run TestConsoleInABrowser -v ./e2e/

## bench-console: the demo for 11 minutes (its own precision and recall gate off), printing the console's CPU share, resident memory each minute and whether it read every alert and score (MET / NOT MET against under 10% of a core, flat memory, nothing missed)
bench-console: build
	bin/demo --seconds 660 --min-quality 0 --dir $${TMPDIR:-/tmp}/recon-bench-console $(BENCH_FLAGS)

## test-simd: pkg/ae and internal/kernels built with GOEXPERIMENT=simd (AVX2/AVX-512 kernels where the CPU has them) under -race; then, without -race, the check that no AVX kernel runs legacy SSE code with dirty upper register halves
# checkptr is off for the race run: archsimd's own masked loads and stores
# (Load*SlicePart, StoreSlicePart) convert a short slice to a full-width array
# pointer, which checkptr refuses at the end of an allocation
# (golang/go#78413, #80856); pkg/ae itself holds no unsafe code.
test-simd:
	GOEXPERIMENT=simd $(GO) test -race -gcflags=all=-d=checkptr=0 -count=1 ./pkg/ae/ ./internal/kernels/
	GOEXPERIMENT=simd $(GO) test -count=1 -run TestNoScalarSSEInVectorKernels ./pkg/ae/

## verify: generated protobuf code and the README's flag reference current, gofmt, go vet (both kernel builds), golangci-lint (.golangci.yml: errcheck, staticcheck, errorlint, sloglint, revive's exported-comment rule, unused), go mod tidy leaves no diff
verify: verify-proto bin/tools/golangci-lint
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOEXPERIMENT=simd $(GO) vet ./pkg/ae/
	$(GO) vet -tags e2e ./e2e/
	bin/tools/golangci-lint run $(PKGS)
	GOEXPERIMENT=simd bin/tools/golangci-lint run ./pkg/ae/
	cd deploy && $(GO) vet ./... && $(GO) mod tidy -diff && $(CURDIR)/bin/tools/golangci-lint run --config $(CURDIR)/.golangci.yml ./...
	$(GO) run ./scripts/flagdoc --check README.md
	$(GO) mod tidy -diff
	@echo verify: ok

# The linter, pinned, built from the module proxy into bin/tools.
GOLANGCI_LINT_VERSION := v2.15.0
bin/tools/golangci-lint:
	GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

PROTOS := $(wildcard proto/recon/v1/*.proto)
PROTOC := protoc -I proto --plugin=protoc-gen-go=bin/protoc-gen-go --plugin=protoc-gen-go-grpc=bin/protoc-gen-go-grpc
PROTO_PLUGINS := bin/protoc-gen-go bin/protoc-gen-go-grpc

## proto: regenerate proto/recon/v1 Go code (needs protoc: apt-get install protobuf-compiler)
proto: $(PROTO_PLUGINS)
	$(PROTOC) --go_out=proto --go_opt=paths=source_relative --go-grpc_out=proto --go-grpc_opt=paths=source_relative $(PROTOS:proto/%=%)

# The protoc plugins at the versions go.mod pins (its tool directives).
$(PROTO_PLUGINS): go.mod
	@mkdir -p bin
	$(GO) build -o bin/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc

## verify-proto: regenerating the protobuf code changes nothing
verify-proto: $(PROTO_PLUGINS)
	@if ! command -v protoc >/dev/null; then echo "verify-proto: protoc not installed (apt-get install protobuf-compiler)"; exit 1; fi
	@tmp=$$(mktemp -d) && $(PROTOC) --go_out=$$tmp --go_opt=paths=source_relative --go-grpc_out=$$tmp --go-grpc_opt=paths=source_relative $(PROTOS:proto/%=%) && \
		for f in $$(cd $$tmp && find . -name '*.pb.go'); do \
			if ! cmp -s $$tmp/$$f proto/$$f; then echo "verify-proto: proto/$$f differs from a regeneration (run make proto)"; diff $$tmp/$$f proto/$$f | head -20; rm -rf $$tmp; exit 1; fi; \
		done; rm -rf $$tmp; echo "verify-proto: ok"

## image: the container image (Dockerfile: static binaries, distroless, non-root); needs a Docker engine
image:
	@command -v docker >/dev/null || { echo "make image: no docker here; the Dockerfile builds with any OCI builder (docker, podman, buildah, kaniko)"; exit 1; }
	docker build -t recon:latest .

## bench: pkg/ae throughput, portable and SIMD builds, against the PyTorch peer when installed
bench:
	scripts/bench.sh

## bench-score: one scorer replica against devkafka in its own process: throughput against raw consumption, and event-to-alert latency
bench-score: build
	bin/benchscore $(BENCH_FLAGS)

## bench-train: distributed training throughput and weak scaling on loopback gRPC
bench-train:
	$(SIMD) $(GO) run ./tools/benchtrain $(BENCH_FLAGS)

FUZZTIME ?= 60s
## fuzz: every decoder of outside bytes for FUZZTIME each (checkpoints, damaged store files, CSV files, records)
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./internal/checkpoint/
	$(GO) test -run '^$$' -fuzz FuzzOpenDamaged -fuzztime $(FUZZTIME) ./internal/checkpoint/
	$(GO) test -run '^$$' -fuzz FuzzRead -fuzztime $(FUZZTIME) ./internal/table/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./pkg/stream/

## eval: anomaly-ranking quality on breast cancer and Fashion-MNIST (installs the two Debian data packages)
eval:
	@if [ ! -f /usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv ] || [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		echo "installing python3-sklearn and dataset-fashion-mnist (Debian) for the data"; \
		apt-get install -y -q python3-sklearn dataset-fashion-mnist >/dev/null || { apt-get update -q && apt-get install -y -q python3-sklearn dataset-fashion-mnist >/dev/null; }; fi
	$(SIMD) $(GO) run ./tools/eval $(EVAL_FLAGS)

## eval-stream: the adbench sets through the real binaries on devkafka (contaminated protocol, default flags) against the offline fit and the peers (installs python3-sklearn)
eval-stream: build
	@if [ ! -d /usr/lib/python3/dist-packages/sklearn ]; then \
		echo "installing python3-sklearn (Debian) for the peer detectors"; \
		apt-get install -y -q python3-sklearn >/dev/null || { apt-get update -q && apt-get install -y -q python3-sklearn >/dev/null; }; fi
	bin/eval --sets adbench-stream $(EVAL_FLAGS)

DEMO_SECONDS ?=
## demo: the whole pipeline on the embedded broker with a live view (DEMO_SECONDS=N: a bounded run ending in a summary)
demo: build
	bin/demo --bin bin --dir demo-run $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS),)

clean:
	rm -rf bin demo-run eval-run

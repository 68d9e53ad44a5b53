# Weir's build. Everything the build and tests need is installed by these
# targets into .tools/ (ignored by git); a second run is a no-op.
SHELL := /bin/bash
GO    ?= go
TOOLS := $(CURDIR)/.tools
BIN   := $(CURDIR)/bin

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
# The Kubernetes parts test-k8s builds into .tools (see their targets).
KUBE_BINS := $(TOOLS)/kube-apiserver $(TOOLS)/kube-controller-manager $(TOOLS)/kube-scheduler
# The MinIO server the S3 tests start (internal/miniotest) and `make minio` runs.
MINIO_VERSION              := v0.0.0-20260212201848-7aac2a2c5b7c

.PHONY: all build image run test test-k8s podman chromium bench bench-nexmark pgo fuzz proto lint tools minio kafka clean

all: build

# `weir version` prints these; override VERSION for a release build.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
MODIFIED ?= $(shell git diff --quiet HEAD 2>/dev/null || echo true)
CLI_PKG  := github.com/weirstream/weir/internal/cli
LDFLAGS  := -X $(CLI_PKG).version=$(VERSION) -X $(CLI_PKG).commit=$(COMMIT) -X $(CLI_PKG).modified=$(MODIFIED)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/weir ./cmd/weir

# The container image, built without Docker (internal/tools/image): a
# static linux weir, a non-root user and no shell, written to
# bin/image/oci (an OCI layout) and bin/image/weir-<version>.tar
# (`docker load -i` it), tagged weir:<version>. IMAGE_ARCH picks the
# architecture; the host's CA bundle is included for S3 over https.
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
CA_CERTS   ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/image/weir ./cmd/weir
	$(GO) run ./internal/tools/image --binary $(BIN)/image/weir --version $(VERSION) --arch $(IMAGE_ARCH) \
		$(if $(CA_CERTS),--ca-certs $(CA_CERTS)) --out $(BIN)/image

# The fraud-detection walkthrough on an embedded cluster; prints Alert{id=3}
# every 5 seconds. Ctrl-C stops it.
run: build
	$(BIN)/weir local --taskmanagers 2 --slots 2 --parallelism 2 --job fraud-detection

# Unit tests with the race detector, then the multi-process integration
# tests (they build bin/weir themselves). The S3 tests run a real MinIO.
# Then the chart on Kubernetes and in containers (test-k8s).
test: $(TOOLS)/minio $(TOOLS)/etcd $(TOOLS)/helm chromium
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 35m ./...
	cd examples && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	$(MAKE) test-k8s

# The chart (deploy/helm/weir) proven on real parts (deploy/helm/k8stest,
# build tag k8s): helm install/upgrade/uninstall on etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler with kwok's fake nodes; the
# rendered pods run as podman containers of the image. Nothing is skipped:
# a missing tool fails the run.
test-k8s: $(KUBE_BINS) $(TOOLS)/kwok $(TOOLS)/helm $(TOOLS)/etcd $(TOOLS)/minio podman image
	$(GO) vet -tags k8s ./deploy/helm/k8stest/
	WEIR_IMAGE_TAR=$(BIN)/image/weir-$(VERSION).tar $(GO) test -tags k8s -count=1 -timeout 15m -v ./deploy/helm/k8stest/

# Each fuzz target for FUZZTIME (30s) on one worker. `make test` runs
# their seeds and the crashers committed under testdata/fuzz as ordinary
# tests; a crash found here writes its input there: commit it with the fix.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./taskmanager/exchange:FuzzFrameCodec \
	./statebackend:FuzzStateFile \
	./statebackend:FuzzMetadata \
	./statebackend:FuzzMergeChain \
	./runtime:FuzzCodecs \
	./runtime:FuzzParams \
	./runtime/window:FuzzCodecs \
	./connectors/file:FuzzSplitCSV \
	./runtime/cep:FuzzStateRoundTrip \
	./runtime/cep:FuzzStateDecode \
	./runtime/cep:FuzzBufferDecode \
	./jobs:FuzzBuild \
	./jobs/fraud:FuzzCodecs \
	./jobs/seqcheck:FuzzCodecs \
	./jobs/seqcheck:FuzzParseJSON \
	./jobs/sequence:FuzzCodecs \
	./jobs/anomaly:FuzzParseEvent \
	./internal/auth:FuzzParseTokens \
	./rules:FuzzCompile \
	./rules:FuzzSetDecode \
	./rules:FuzzDeltas \
	./rules:FuzzDeltaDecode \
	./rules:FuzzStateDecode

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; echo "== $$name in $$pkg ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel $(FUZZ_PARALLEL) $$pkg; \
	done
FUZZ_PARALLEL ?= 1

# Micro-benchmarks (fraud job, exchange, state backend, file source,
# windows, rules), then cmd/weirbench on real processes: throughput and latency,
# checkpoint size/duration/stall to MinIO, checkpoint overhead, failover
# and rescale (about 10 minutes). Pass WEIRBENCH_FLAGS, e.g.
# WEIRBENCH_FLAGS='-only failover,rescale', to run a part.
bench: build $(TOOLS)/minio
	$(GO) test -pgo=$(PGO) -run '^$$' -bench . -benchmem -count 1 ./jobs/fraud/ ./runtime/ ./taskmanager/exchange/ ./statebackend/ ./statebackend/pebblestate/ ./connectors/file/ ./runtime/cep/ ./runtime/window/ ./rules/
	$(GO) test -pgo=$(PGO) -run '^$$' -bench RuleChangeLatency -benchtime 1x ./cmd/weir/
	$(GO) run ./cmd/weirbench --weir $(BIN)/weir $(WEIRBENCH_FLAGS)

# Profile-guided optimisation. cmd/weir/default.pgo is a CPU profile of
# the paths jobs spend their time in (the fraud job's light and
# state-heavy paths on both backends, windows, CEP, the rule engine, the
# exchange, the file source); go build applies it to the weir binary by
# itself (-pgo=auto), and bench builds its benchmarks with it, so that
# they measure the code as shipped. Run make pgo to regenerate it after
# larger changes to those paths (some 3 minutes).
PGO := $(CURDIR)/cmd/weir/default.pgo
PGO_RUNS := \
	'./jobs/fraud/:DetectorStateHeavy/backend=memory/accounts=100000$$:2x' \
	'./jobs/fraud/:DetectorStateHeavy/backend=pebble/accounts=100000$$:1x' \
	'./jobs/fraud/:DetectorChained$$:3s' \
	'./runtime/window/:TumblingCount$$|SlidingSum$$|SessionCount$$:1s' \
	'./runtime/cep/:CEPThreeStep$$:2s' \
	'./rules/:EngineIndexed$$|KeyGroupIndexed$$:1s' \
	'./taskmanager/exchange/:RemoteThroughput$$:2s' \
	'./connectors/file/:SourceCSV$$:2s'

pgo:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; n=0; \
	for r in $(PGO_RUNS); do \
		pkg=$${r%%:*}; rest=$${r#*:}; bench=$${rest%:*}; t=$${rest##*:}; n=$$((n+1)); \
		echo "== $$pkg $$bench ($$t)"; \
		$(GO) test -pgo=off -run '^$$' -bench "$$bench" -benchtime $$t -cpu 1 -cpuprofile $$tmp/$$n.prof $$pkg >/dev/null; \
	done; \
	$(GO) tool pprof -proto $$tmp/*.prof > $(PGO).new && mv $(PGO).new $(PGO); \
	ls -l $(PGO)

# The Nexmark queries of the nexmark job (20 M events each, parallelism 2,
# checkpoints every 10 s, blackhole sink): events/s and events/s per core
# used beside Flink's published figures. NEXMARK_FLAGS, e.g.
# NEXMARK_FLAGS='-nexmark-queries q5 -nexmark-events 5000000', narrow it.
bench-nexmark: build
	$(GO) run ./cmd/weirbench --weir $(BIN)/weir -only nexmark $(NEXMARK_FLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd examples && $(GO) vet ./...

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# protoc comes from Debian's protobuf-compiler package.
$(TOOLS)/.protoc:
	@mkdir -p $(TOOLS)
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	@touch $@

# etcd 3.7 for the multi-process tests: a tiny main of ours
# calling etcdmain.Main, at the version go.mod pins (go install of etcd is
# refused, Debian's etcd-server is 3.4).
$(TOOLS)/etcd: go.mod go.sum internal/tools/etcd/main.go
	$(GO) build -o $@ ./internal/tools/etcd

# A cold install builds MinIO from source and takes a few minutes.
$(TOOLS)/minio:
	GOBIN=$(TOOLS) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

# Helm, for the chart's tests (deploy/helm/weir: helm lint --strict and
# helm template against good and bad values). A cold build takes a few
# minutes.
HELM_VERSION := v3.22.0
$(TOOLS)/helm:
	GOBIN=$(TOOLS) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# Kubernetes for test-k8s: kube-apiserver, kube-controller-manager and
# kube-scheduler built from k8s.io/kubernetes at the version
# internal/tools/k8s/go.mod pins (a module of ours, as `go install` of
# k8s.io/kubernetes is refused). One go build shares the compilation; a
# cold build takes several minutes.
$(KUBE_BINS) &: internal/tools/k8s/go.mod internal/tools/k8s/go.sum
	@mkdir -p $(TOOLS)
	cd internal/tools/k8s && $(GO) build -o $(TOOLS)/ k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
	@touch $(KUBE_BINS)

# kwok: fake nodes that report the pods placed on them as running.
KWOK_VERSION := v0.8.0
$(TOOLS)/kwok:
	GOBIN=$(TOOLS) $(GO) install sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)

# podman with the runc runtime (crun fails in this VM), from Debian,
# installed only when missing.
podman:
	@command -v podman >/dev/null && command -v runc >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc; }

# Chromium for the dashboard's browser test (cmd/weir/web_test.go drives it
# with chromedp), from Debian, installed only when missing; the package
# lists are refreshed only when the install cannot find it.
chromium:
	@command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

PROTO_TOOLS := $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/.protoc

tools: $(PROTO_TOOLS) $(TOOLS)/minio $(TOOLS)/etcd $(TOOLS)/helm $(KUBE_BINS) $(TOOLS)/kwok chromium

# A MinIO server in the foreground for trying Weir against S3 by hand:
# S3 API on 127.0.0.1:9000, web console on 127.0.0.1:9001, data kept in
# .tools/minio-data across runs. Ctrl-C stops it. In another shell:
#   export AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=weiradmin AWS_SECRET_ACCESS_KEY=weiradmin-secret
# The bucket `weir` exists from the start: on a single drive, MinIO serves
# a top-level directory of its data dir as a bucket.
minio: $(TOOLS)/minio
	@mkdir -p $(TOOLS)/minio-data/weir
	MINIO_ROOT_USER=weiradmin MINIO_ROOT_PASSWORD=weiradmin-secret \
		$(TOOLS)/minio server --address 127.0.0.1:9000 --console-address 127.0.0.1:9001 $(TOOLS)/minio-data

# A development Kafka (franz-go's in-memory kfake) on 127.0.0.1:9092 with
# the topics transactions and alerts, for the README's Kafka walkthrough.
# Not a production broker: it keeps everything in memory. Ctrl-C stops it.
kafka:
	$(GO) run ./internal/tools/kafka serve --listen 127.0.0.1:9092

# Regenerates the committed Go code from proto/weir/v1/*.proto.
# Needs only the protoc tools, not a MinIO build.
proto: $(PROTO_TOOLS)
	cd proto && PATH=$(TOOLS):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative weir/v1/*.proto

clean:
	rm -rf $(BIN)

# Weir's build. Everything the build and tests need is installed by these
# targets into .tools/ (ignored by git); a second run is a no-op.
SHELL := /bin/bash
GO    ?= go
TOOLS := $(CURDIR)/.tools
BIN   := $(CURDIR)/bin

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

.PHONY: all build run test bench proto lint tools clean

all: build

build:
	$(GO) build -o $(BIN)/weir ./cmd/weir

# The fraud-detection walkthrough on an embedded cluster; prints Alert{id=3}
# every 5 seconds. Ctrl-C stops it.
run: build
	$(BIN)/weir local --taskmanagers 2 --slots 2 --parallelism 2 --job fraud-detection

# Unit tests with the race detector, then the multi-process integration
# tests (they build bin/weir themselves).
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./jobs/fraud/ ./taskmanager/exchange/
	$(GO) run ./cmd/weirbench --weir $(BIN)/weir

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# protoc comes from Debian's protobuf-compiler package.
$(TOOLS)/.protoc:
	@mkdir -p $(TOOLS)
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	@touch $@

tools: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/.protoc

# Regenerates the committed Go code from proto/weir/v1/*.proto.
proto: tools
	cd proto && PATH=$(TOOLS):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative weir/v1/*.proto

clean:
	rm -rf $(BIN)

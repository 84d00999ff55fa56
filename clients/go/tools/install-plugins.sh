#!/usr/bin/env bash
# Installs the two local buf plugins of the Go client, at pinned versions,
# into clients/go/.bin (ignored by git). The root buf.gen.yaml points at them.
# Run it before `npx --yes @bufbuild/buf@1.75.0 generate` (test.sh runs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Keep in step with the protobuf and grpc versions in go.mod.
PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

mkdir -p .bin
GOBIN="$PWD/.bin" GOFLAGS="${GOFLAGS:--p=1}" go install "$PROTOC_GEN_GO"
GOBIN="$PWD/.bin" GOFLAGS="${GOFLAGS:--p=1}" go install "$PROTOC_GEN_GO_GRPC"

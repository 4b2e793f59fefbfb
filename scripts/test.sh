#!/usr/bin/env bash
# test.sh: install test dependencies, then vet and test the whole module.
# CI=true makes missing fixtures (sshd) a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-deps.sh
go vet ./...
CI="${CI:-}" go test -race -count=1 -timeout 20m ./...

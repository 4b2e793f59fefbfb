#!/usr/bin/env bash
# test.sh: ferry's whole test run, the one the README names and .ci/run calls.
# Installs what the tests need when missing (scripts/test-deps.sh), then checks
# formatting, vet, staticcheck and known vulnerabilities, then runs every
# package's tests with the race detector, the integration suite against a real
# sshd on 127.0.0.1 included. CI=true makes a missing test server a failure
# instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# The newest Go 1.26 patch release: it carries the standard library's
# security fixes that govulncheck asks for. The go command fetches it once.
export GOTOOLCHAIN="${FERRY_GOTOOLCHAIN:-go1.26.10}"
export CI="${CI:-}"

step() { printf '== %s\n' "$*"; }

step "test dependencies"
bash scripts/test-deps.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n $unformatted ]]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "govulncheck"
vulncheck=../shared/tools/govulncheck-offline
if [[ -x $vulncheck ]]; then
	"$vulncheck" ./...
elif [[ $CI == true ]]; then
	echo "govulncheck: $vulncheck not found" >&2
	exit 1
else
	echo "govulncheck: $vulncheck not found here; skipped (CI runs it)"
fi

step "go test -race"
go test -race -count=1 -timeout 30m ./...

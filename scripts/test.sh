#!/usr/bin/env bash
# test.sh runs alterhost's whole test suite: vet, then every test with the
# race detector. It installs the test tools first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
GOOS=wasip1 GOARCH=wasm go vet ./abi/go/... ./examples/go/...
go test -race -count=1 -timeout 20m "$@" ./...

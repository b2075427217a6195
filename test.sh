#!/usr/bin/env bash
# Every test of every module in the workspace, with the race detector; then every fuzz
# target for FUZZTIME (10s by default; FUZZTIME=0 skips them) from its committed corpus.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")"

go test -race -count=1 $(go list -f '{{.Dir}}/...' -m)

fuzztime=${FUZZTIME:-10s}
if [[ $fuzztime == 0 || $fuzztime == 0s ]]; then
	exit 0
fi
# go test -fuzz takes one target of one package at a time. The targets are found in the
# sources (cheaper than building every test binary to list them) and run one by one.
grep -r -H -o --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' . |
	sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*).*#\1 \2#' | sort -u |
	while read -r dir target; do
		echo "fuzz ./$dir $target for $fuzztime"
		(cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" .)
	done

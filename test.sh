#!/usr/bin/env bash
# Every test of every module in the workspace, with the race detector; then the compose
# deployment brought up for real and checked; then every fuzz target for FUZZTIME (10s by
# default; FUZZTIME=0 skips them) from its committed corpus.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")"

# The fault suite's short pass (tools/chaos) spends most of its two minutes waiting on the
# system it runs, so it runs beside the other packages instead of alone after them. They are
# niced so that their builds take only the processor time it leaves: its answers are timed.
# Its lines are prefixed "chaos: " as they come. If this script ends early (interrupted, or a
# CI time-out), the pass is stopped with it: its processes die with the test binary.
chaos=github.com/demobank/yacredits/tools/chaos
others=$(go list $(go list -f '{{.Dir}}/...' -m) | grep -v -x "$chaos")
set -m # the pass gets a process group of its own, to stop as one
(go test -race -count=1 "$chaos" 2>&1 | sed -u 's/^/chaos: /'; exit "${PIPESTATUS[0]}") &
chaos_pid=$!
set +m
trap 'kill -- "-$chaos_pid" 2>/dev/null || true' EXIT
status=0
# shellcheck disable=SC2086 # one package a word
nice -n 10 go test -race -count=1 $others || status=$?
wait "$chaos_pid" || status=$?
trap - EXIT
if [[ $status != 0 ]]; then
	exit "$status"
fi

# The compose deployment run for real (tools/composeup, docs/testing.md): the images built
# from the Dockerfile, every service up and healthy, yacheck and a trace in Jaeger against
# it, then down with nothing left. It starts a Docker engine when none answers (root). It
# runs alone: built beside the packages, its programs made the whole run 1.6 minutes longer.
go run ./tools/composeup

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
		log=$(mktemp)
		if (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" .) 2>&1 | tee "$log"; then
			rm -f "$log"
			continue
		fi
		# Go 1.26's fuzz coordinator can fail a target at the -fuzztime boundary with a bare
		# "context deadline exceeded" when a busy machine delays a worker's shutdown
		# (go.dev/issue/75804, fixed in Go 1.27). A real finding always writes its failing
		# input; only a failure without one, and with that message, is not ours.
		if grep -q 'context deadline exceeded' "$log" && ! grep -q -e 'Failing input written' -e 'panic:' "$log"; then
			echo "fuzz ./$dir $target: the coordinator's deadline race (go.dev/issue/75804), no failing input found: not a failure"
			rm -f "$log"
			continue
		fi
		rm -f "$log"
		exit 1
	done

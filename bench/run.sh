#!/usr/bin/env bash
# run.sh: run every side-by-side benchmark of ferry in one go and keep the
# output, tables included, in a file.
#
#   bash bench/run.sh [OUTFILE]          # default bench/results-<UTC time>.txt
#   BENCH=Local bash bench/run.sh        # only the benchmarks matching a regexp
#   BENCH_REPS=5 BENCH_BIG_MIB=256 ...   # knobs, see bench/README.md
#   BENCH_FROM_HEAD=1 bash bench/run.sh  # build ferry from the last commit, not the work tree
#
# As root it first installs what is missing (sshd, rsync, rclone through
# scripts/test-deps.sh, and GNU time for exact peak-memory figures).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench/results-$(date -u +%Y%m%dT%H%M%SZ).txt}

if [[ $(id -u) -eq 0 ]]; then
	bash scripts/test-deps.sh
	if [[ ! -x /usr/bin/time ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >/dev/null
		echo "run.sh: installed time"
	fi
else
	echo "run.sh: not root, not installing anything; missing tools show as not measured" >&2
fi

if [[ -n ${BENCH_FROM_HEAD:-} ]]; then
	snap=$(mktemp -d)
	trap 'rm -rf "$snap"' EXIT
	git archive HEAD | tar -x -C "$snap"
	export BENCH_SRC=$snap
	echo "run.sh: building ferry from HEAD $(git rev-parse --short HEAD)"
fi

echo "run.sh: writing $out"
go test ./bench -run '^$' -bench "${BENCH:-.}" -benchtime 1x -count 1 -timeout 0 2>&1 | tee "$out"

#!/usr/bin/env bash
# Benchmarks: runs cometql-bench scenarios, each against a freshly started
# bin/cometql with its own data directory, and prints a Markdown table.
#
#   scripts/bench.sh short        quick versions of every scenario (make bench; a few minutes)
#   scripts/bench.sh full         the issue's targets, median of 3 runs each (~30 minutes)
#   scripts/bench.sh soak [DUR]   fanout, 5000 subscribers at 50 msg/s for DUR (default 10m), sampling the server
#
# Environment: COMETQL_BIN (server binary, default bin/cometql), BENCH_BIN
# (default bin/cometql-bench, built if missing), BENCH_RESULTS (JSON lines
# file to append to; default a new file under $TMPDIR), RUNS (runs per case
# in full mode, default 3).
set -euo pipefail

MODE=${1:-short}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SERVER=${COMETQL_BIN:-$ROOT/bin/cometql}
BENCH=${BENCH_BIN:-$ROOT/bin/cometql-bench}

case $MODE in
short | full | soak) ;;
*)
	echo "usage: scripts/bench.sh short|full|soak [duration]" >&2
	exit 2
	;;
esac

if [ ! -x "$SERVER" ]; then
	echo "bench.sh: $SERVER not found: run make build" >&2
	exit 1
fi
if [ ! -x "$BENCH" ]; then
	mkdir -p "$(dirname "$BENCH")"
	go build -o "$BENCH" ./cmd/cometql-bench
fi

# Every process here is capped by the open-file limit; take all of it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cometql-bench.XXXXXX")
RESULTS=${BENCH_RESULTS:-$WORK/results.jsonl}
PASSWORD="bench-$RANDOM$RANDOM"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	COMMIT="$COMMIT-dirty"
fi

# Raise the server's default caps where this build has the flags: the
# benchmarks open more than 1000 connections from few addresses and more
# long-poll sessions than the default allows.
HELP=$("$SERVER" --help 2>&1 || true)
EXTRA=()
has_flag() { grep -q -- "-$1[ =]" <<<"$HELP"; }
has_flag max-conns-per-ip && EXTRA+=(--max-conns-per-ip 1000000)
has_flag max-longpoll-sessions && EXTRA+=(--max-longpoll-sessions 100000)
has_flag ql-max-connections && EXTRA+=(--ql-max-connections 1000)
has_flag log-level && EXTRA+=(--log-level warn)

SERVER_PID=
SERVER_DATA=
QL=
HTTP=

stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 1 150); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
	[ -z "$SERVER_DATA" ] || rm -rf "$SERVER_DATA"
	SERVER_DATA=
}

cleanup() {
	stop_server
	rm -rf "$WORK"/data.*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server starts bin/cometql on free ports with a fresh data directory
# and waits for its "ready: CometQL on <addr>, HTTP on <addr>" line.
start_server() {
	local data log line
	data=$(mktemp -d "$WORK/data.XXXXXX")
	log="$data/server.log"
	SERVER_DATA=$data
	"$SERVER" --ql-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$data" \
		--password "$PASSWORD" "${EXTRA[@]}" >"$log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 1 300); do
		line=$(grep -m1 'ready: CometQL on ' "$log" || true)
		if [ -n "$line" ]; then
			QL=$(sed -E 's/.*CometQL on ([^,]+), HTTP on ([^ ]+).*/\1/' <<<"$line")
			HTTP=$(sed -E 's/.*CometQL on ([^,]+), HTTP on ([^ ]+).*/\2/' <<<"$line")
			return 0
		fi
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			echo "bench.sh: the server exited before it was ready:" >&2
			cat "$log" >&2
			SERVER_PID=
			return 1
		fi
		sleep 0.1
	done
	echo "bench.sh: the server was not ready after 30 s:" >&2
	cat "$log" >&2
	stop_server
	return 1
}

FAILED=0

# run_case LABEL SCENARIO [FLAGS...]: one run against a fresh server.
run_case() {
	local label=$1
	shift
	echo "== $label: cometql-bench $*" >&2
	if ! start_server; then
		FAILED=$((FAILED + 1))
		return 0
	fi
	if ! "$BENCH" "$@" --label "$label" --http "$HTTP" --ql "$QL" --password "$PASSWORD" \
		--server-pid "$SERVER_PID" --commit "$COMMIT" --quiet >>"$RESULTS"; then
		echo "bench.sh: $label failed (its result line has the errors)" >&2
		FAILED=$((FAILED + 1))
	fi
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		echo "bench.sh: the server died during $label:" >&2
		tail -n 30 "$SERVER_DATA/server.log" >&2 || true
		SERVER_PID=
	fi
	stop_server
}

# Long-poll fanouts publish at a fixed rate: at full speed every session's
# buffer overflows and the server ends it, which measures nothing useful.
START=$(date +%s)
case $MODE in
short)
	run_case idle-ws-2000 idle --subs 2000
	run_case fanout-ws-1000 fanout --subs 1000 --duration 10s
	run_case fanout-lp-1000 fanout --transport lp --subs 1000 --rate 50 --duration 10s
	run_case publish-32 publish --publishers 32 --pipes 32 --duration 10s
	run_case manypipes-1000 manypipes --pipes 1000 --duration 10s
	run_case history-8 history --pipes 8 --publishers 8 --duration 10s
	run_case churn-64 churn --concurrency 64 --duration 10s
	run_case soak-short soak --subs 500 --rate 500 --duration 30s --sample-interval 5s
	;;
full)
	for run in $(seq 1 "${RUNS:-3}"); do
		echo "==== run $run of ${RUNS:-3}" >&2
		run_case idle-ws-19000 idle --subs 19000 --per-worker 9500 --settle 10s
		run_case fanout-ws-5000 fanout --subs 5000 --duration 20s
		run_case fanout-ws-5000-half fanout --subs 5000 --rate 50 --duration 20s
		run_case fanout-ws-1000 fanout --subs 1000 --duration 20s
		run_case fanout-lp-10000 fanout --transport lp --subs 10000 --rate 12 --duration 20s --drain 30s
		run_case manypipes-10000 manypipes --pipes 10000 --duration 20s
		run_case manypipes-10000-batch100 manypipes --pipes 10000 --batch 100 --duration 20s
		run_case publish-32 publish --publishers 32 --pipes 32 --duration 20s
		run_case history-32 history --pipes 32 --publishers 32 --duration 20s
		run_case churn-64 churn --concurrency 64 --duration 20s
	done
	;;
soak)
	# Half the fan-out target (5,000 subscribers x 50 msg/s = 250,000
	# deliveries/s); drift is measured from the first sample after a
	# warm-up of SOAK_WARMUP (default one minute).
	run_case soak soak --subs 5000 --rate 50 --warmup "${SOAK_WARMUP:-60s}" --duration "${2:-10m}" --sample-interval 10s
	;;
esac

echo
echo "cometql benchmarks ($MODE), commit $COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r), $(($(date +%s) - START)) s"
echo
"$BENCH" table --median "$RESULTS"
echo
echo "Result lines: $RESULTS"
if [ "$FAILED" -gt 0 ]; then
	echo "bench.sh: $FAILED case(s) failed" >&2
	exit 1
fi

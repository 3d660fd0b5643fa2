#!/usr/bin/env bash
# Soak test (make soak; not in CI): mixed load against one bin/cometql for a
# long time, then the server's memory, goroutines and file descriptors at
# the start and at the end.
#
#   scripts/soak.sh [DURATION]      default 30m (any Go duration: 90s, 10m, 1h)
#
# The load, all at once through bin/cometql-bench (see its README):
#   - WebSocket fanout: SOAK_WS_SUBS subscribers (1000) on one pipe, MySQL
#     publishers at SOAK_WS_RATE msg/s (50), sampled by the bench (soak mode);
#   - long-poll fanout: SOAK_LP_SUBS sessions (200) at SOAK_LP_RATE msg/s (10);
#   - history: SOAK_HIST_PIPES logging pipes (4), one subscriber each, at
#     SOAK_HIST_RATE msg/s (20): the SQLite writer and history trimming;
#   - churn: SOAK_CHURN loops (2) of WebSocket connect + subscribe + close.
# The rates are what this server sustains with the bench on the same 2-core
# machine with CPU to spare: a soak looks for leaks and drift, not for the
# highest throughput (scripts/bench.sh measures that).
#
# Samples of the server (RSS, goroutines, fds, threads) every
# SOAK_SAMPLE_EVERY seconds (30) go to $WORK/samples.tsv. The report compares
#   idle-start  before any client connected,
#   load-start  the first sample with every client connected,
#   load-end    the last sample before the load stops,
#   idle-end    after every client left (SOAK_SETTLE seconds, 15, later).
# It exits 1 when the server died, a bench run failed, or messages were
# lost.
#
# Environment: COMETQL_BIN (default bin/cometql), BENCH_BIN (default
# bin/cometql-bench), SOAK_WORK (directory for logs and results; default a
# new one under $TMPDIR, kept).
set -euo pipefail

DUR=${1:-30m}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SERVER=${COMETQL_BIN:-$ROOT/bin/cometql}
BENCH=${BENCH_BIN:-$ROOT/bin/cometql-bench}
WS_SUBS=${SOAK_WS_SUBS:-1000}
WS_RATE=${SOAK_WS_RATE:-50}
LP_SUBS=${SOAK_LP_SUBS:-200}
LP_RATE=${SOAK_LP_RATE:-10}
HIST_PIPES=${SOAK_HIST_PIPES:-4}
HIST_RATE=${SOAK_HIST_RATE:-20}
CHURN=${SOAK_CHURN:-2}
EVERY=${SOAK_SAMPLE_EVERY:-30}
SETTLE=${SOAK_SETTLE:-15}

for bin in "$SERVER" "$BENCH"; do
	if [ ! -x "$bin" ]; then
		echo "soak.sh: $bin not found: run make build" >&2
		exit 1
	fi
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=${SOAK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cometql-soak.XXXXXX")}
mkdir -p "$WORK"
DATA="$WORK/data"
LOG="$WORK/server.log"
SAMPLES="$WORK/samples.tsv"
RESULTS="$WORK/results.jsonl"
PASSWORD="soak-$RANDOM$RANDOM"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	COMMIT="$COMMIT-dirty"
fi

SERVER_PID=
SAMPLER_PID=
BENCH_PIDS=()
cleanup() {
	for p in "${BENCH_PIDS[@]}" $SAMPLER_PID; do
		kill "$p" 2>/dev/null || true
	done
	if [ -n "$SERVER_PID" ]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# seconds DURATION: a Go-style duration (30m, 90s, 1h, 1h30m) in seconds.
seconds() {
	local d=$1 total=0 n
	while [[ $d =~ ^([0-9]+)(h|m|s)(.*)$ ]]; do
		n=${BASH_REMATCH[1]}
		case ${BASH_REMATCH[2]} in
		h) total=$((total + n * 3600)) ;;
		m) total=$((total + n * 60)) ;;
		s) total=$((total + n)) ;;
		esac
		d=${BASH_REMATCH[3]}
	done
	if [ -n "$d" ] || [ "$total" -eq 0 ]; then
		echo "soak.sh: bad duration $1 (want e.g. 30m, 90s, 1h)" >&2
		exit 2
	fi
	echo "$total"
}
DUR_S=$(seconds "$DUR")

mkdir -p "$DATA"
: >"$LOG"
"$SERVER" --ql-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$DATA" \
	--password "$PASSWORD" --max-conns-per-ip 1000000 --max-longpoll-sessions 100000 \
	--log-level warn >"$LOG" 2>&1 &
SERVER_PID=$!
QL=
HTTP=
for _ in $(seq 1 300); do
	line=$(grep -m1 'ready: CometQL on ' "$LOG" || true)
	if [ -n "$line" ]; then
		QL=$(sed -E 's/.*CometQL on ([^,]+), HTTP on ([^ ]+).*/\1/' <<<"$line")
		HTTP=$(sed -E 's/.*CometQL on ([^,]+), HTTP on ([^ ]+).*/\2/' <<<"$line")
		break
	fi
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		echo "soak.sh: the server exited before it was ready:" >&2
		cat "$LOG" >&2
		exit 1
	fi
	sleep 0.1
done
if [ -z "$HTTP" ]; then
	echo "soak.sh: the server was not ready after 30 s" >&2
	exit 1
fi

# goroutines: go_goroutines from /metrics.
goroutines() {
	local body
	if command -v curl >/dev/null; then
		body=$(curl -s --max-time 5 "http://$HTTP/metrics" || true)
	else
		body=$(exec 3<>"/dev/tcp/${HTTP%:*}/${HTTP##*:}" &&
			printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$HTTP" >&3 && timeout 5 cat <&3 || true)
	fi
	awk '/^go_goroutines / {print $2; found=1} END {if (!found) print "?"}' <<<"$body"
}

# sample LABEL: one line of samples.tsv.
sample() {
	local rss threads fds
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
	threads=$(awk '/^Threads/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
	fds=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%s)" "$1" "$rss" "$(goroutines)" "$fds" "$threads" >>"$SAMPLES"
}

printf 'time\tlabel\trss_kb\tgoroutines\tfds\tthreads\n' >"$SAMPLES"
sleep 2
sample idle-start

common=(--http "$HTTP" --ql "$QL" --password "$PASSWORD" --server-pid "$SERVER_PID" --commit "$COMMIT" --quiet)
echo "soak.sh: $DUR of mixed load on $HTTP / $QL; logs and results in $WORK" >&2
"$BENCH" soak --label soak-ws --subs "$WS_SUBS" --rate "$WS_RATE" --duration "$DUR" \
	--sample-interval "${EVERY}s" --drain 30s "${common[@]}" >"$WORK/ws.json" 2>"$WORK/ws.log" &
BENCH_PIDS+=($!)
"$BENCH" fanout --label soak-lp --transport lp --subs "$LP_SUBS" --rate "$LP_RATE" --duration "$DUR" \
	--drain 30s "${common[@]}" >"$WORK/lp.json" 2>"$WORK/lp.log" &
BENCH_PIDS+=($!)
"$BENCH" history --label soak-history --pipes "$HIST_PIPES" --publishers "$HIST_PIPES" --rate "$HIST_RATE" \
	--duration "$DUR" --drain 30s "${common[@]}" >"$WORK/history.json" 2>"$WORK/history.log" &
BENCH_PIDS+=($!)
"$BENCH" churn --label soak-churn --concurrency "$CHURN" --duration "$DUR" \
	"${common[@]}" >"$WORK/churn.json" 2>"$WORK/churn.log" &
BENCH_PIDS+=($!)

# Sample while the load runs; the first loaded sample is taken once the
# clients have connected (the benches settle for a few seconds first).
(
	sleep 60
	sample load-start
	while kill -0 "$SERVER_PID" 2>/dev/null; do
		sleep "$EVERY"
		sample load
	done
) &
SAMPLER_PID=$!

FAILED=0
for p in "${BENCH_PIDS[@]}"; do
	wait "$p" || FAILED=$((FAILED + 1))
done
BENCH_PIDS=()
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
sleep "$SETTLE"
ALIVE=1
if kill -0 "$SERVER_PID" 2>/dev/null; then
	sample idle-end
else
	ALIVE=0
	echo "soak.sh: the server died during the soak:" >&2
	tail -n 40 "$LOG" >&2
fi
cat "$WORK"/ws.json "$WORK"/lp.json "$WORK"/history.json "$WORK"/churn.json >"$RESULTS" 2>/dev/null || true

# The last loaded sample: the last "load" line (taken while the benches
# still published), else load-start.
LOAD_END=$(awk -F'\t' '$2 == "load" {l = $0} END {print l}' "$SAMPLES")
row() { # row NAME LINE
	awk -F'\t' -v n="$1" '{printf "| %-10s | %9s | %10s | %4s | %7s |\n", n, $3, $4, $5, $6}' <<<"$2"
}
START_LINE=$(awk -F'\t' '$2 == "idle-start"' "$SAMPLES")
LOAD_START_LINE=$(awk -F'\t' '$2 == "load-start"' "$SAMPLES")
END_LINE=$(awk -F'\t' '$2 == "idle-end"' "$SAMPLES")

# field NAME FILE: the first "NAME":<number> of a result line.
field() { grep -o "\"$1\":[0-9.e+-]*" "$2" 2>/dev/null | head -n 1 | cut -d: -f2; }
lost() { grep -o '"lost":[0-9]*' "$1" 2>/dev/null | head -1 | cut -d: -f2; }
# deliveryP LEVEL FILE: a percentile of the delivery latency, in ms.
deliveryP() { grep -o '"delivery":{[^}]*"latency_ms":{[^}]*}' "$2" 2>/dev/null | grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }

echo
echo "cometql soak, $DUR, commit $COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, kernel $(uname -r)"
echo "load: ws $WS_SUBS subs @ $WS_RATE msg/s; lp $LP_SUBS sessions @ $LP_RATE msg/s; history $HIST_PIPES pipes @ $HIST_RATE msg/s; churn x$CHURN"
echo
echo "| sample     | RSS (KB)  | goroutines | fds  | threads |"
echo "|------------|-----------|------------|------|---------|"
[ -n "$START_LINE" ] && row idle-start "$START_LINE"
[ -n "$LOAD_START_LINE" ] && row load-start "$LOAD_START_LINE"
[ -n "$LOAD_END" ] && row load-end "$LOAD_END"
[ -n "$END_LINE" ] && row idle-end "$END_LINE"
echo
for r in ws lp history churn; do
	f="$WORK/$r.json"
	if [ ! -s "$f" ]; then
		echo "$r: no result line (see $WORK/$r.log)"
		continue
	fi
	case $r in
	churn) echo "$r: $(grep -o '"ops":[0-9]*' "$f" | head -1) $(grep -o '"errors":\[[^]]*\]' "$f" | head -1)" ;;
	*) echo "$r: published $(field published "$f"), received $(field received "$f"), lost $(lost "$f"), duplicated $(field duplicated "$f"), publish errors $(field errors "$f"), disconnects $(field disconnects "$f"), delivery p50 $(deliveryP p50 "$f") ms, p99 $(deliveryP p99 "$f") ms, max $(deliveryP max "$f") ms" ;;
	esac
done
echo
"$BENCH" table "$RESULTS" || true
echo
echo "samples: $SAMPLES; result lines: $RESULTS; server log: $LOG"

for r in ws lp history; do
	l=$(lost "$WORK/$r.json")
	if [ -n "$l" ] && [ "$l" != 0 ]; then
		echo "soak.sh: $r lost $l messages" >&2
		FAILED=$((FAILED + 1))
	fi
done
if [ "$ALIVE" = 0 ] || [ "$FAILED" -gt 0 ]; then
	echo "soak.sh: FAILED ($FAILED bench failures, server alive: $ALIVE)" >&2
	exit 1
fi

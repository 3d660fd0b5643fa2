#!/usr/bin/env bash
# Browser tests: the JavaScript client and the /demo/ page in headless
# Chromium against a real cometql (jsapi/js/test/browser/).
#
# Needs bin/cometql (make build; `make test-browser` builds it first), node
# and npm, and Debian's chromium (or CHROMIUM=/path/to/chromium). Installs
# the npm packages (playwright-core drives the browser, mysql2 publishes over
# CometQL) with `npm ci` when they are missing. Starts its own server on free
# ports with a throwaway data directory and password, runs the tests, stops
# the server.
#
#   scripts/browser-tests.sh [test file name part ...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/cometql
js=$root/jsapi/js
chromium=${CHROMIUM:-/usr/bin/chromium}

[[ -x $bin ]] || { echo "browser-tests: $bin is missing: run make build" >&2; exit 2; }
[[ -x $chromium ]] || { echo "browser-tests: no Chromium at $chromium (apt-get install chromium, or set CHROMIUM)" >&2; exit 2; }
command -v node >/dev/null || { echo "browser-tests: node is not installed" >&2; exit 2; }

if [[ ! -d $js/node_modules/playwright-core || ! -d $js/node_modules/mysql2 ]]; then
  echo "browser-tests: npm ci in jsapi/js"
  (cd "$js" && npm ci --no-audit --no-fund)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cometql-browser.XXXXXX")
pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
"$bin" --ql-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$tmp/data" --password "$password" \
  >"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!

# Wait for "cometql: cometql <ver> ready: CometQL on <addr>, HTTP on <addr>".
ready=
for _ in $(seq 300); do
  ready=$(sed -n 's/.* ready: CometQL on \([^,]*\), HTTP on \([^ ]*\).*/\1 \2/p' "$tmp/stdout")
  [[ -n $ready ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $ready ]]; then
  echo "browser-tests: cometql did not become ready" >&2
  cat "$tmp/stdout" "$tmp/stderr" >&2
  exit 1
fi
read -r ql http <<<"$ready"
echo "browser-tests: cometql ready, CometQL on $ql, HTTP on $http"

start=$(date +%s)
status=0
(
  cd "$js"
  COMETQL_HTTP="http://$http" COMETQL_MYSQL="$ql" COMETQL_PASSWORD="$password" COMETQL_BIN="$bin" \
    CHROMIUM="$chromium" node test/browser/run.mjs "$@"
) || status=$?
echo "browser-tests: $(( $(date +%s) - start )) s"

if [[ $status -ne 0 ]]; then
  echo "browser-tests: FAILED; the server's last log lines:" >&2
  tail -n 40 "$tmp/stderr" >&2
fi
exit "$status"

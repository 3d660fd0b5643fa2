#!/usr/bin/env bash
# A short run of every fuzz target (make test-fuzz). FUZZTIME sets the
# length of each run (default 10s; longer runs: FUZZTIME=10m).
#
# A failing input is saved under the package's testdata/fuzz/<target>/ and
# fails the run (and, from then on, plain `go test` too). A run that fails
# without saving an input is the fuzzing engine itself giving up (a worker
# killed or too slow on a loaded machine): its output is shown and the
# target runs once more; when it is only the engine's own deadline ending
# the run ("context deadline exceeded"), the run counts as done.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
go=${GO:-go}
log=$(mktemp)
inputs() { if [[ -d $1 ]]; then find "$1" -type f | wc -l; else echo 0; fi; }
trap 'rm -f "$log"' EXIT

for pkg in $($go list ./...); do
  dir=$($go list -f '{{.Dir}}' "$pkg")
  for target in $($go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    for attempt in 1 2; do
      echo "fuzz $pkg $target ($fuzztime)"
      before=$(inputs "$dir/testdata/fuzz/$target")
      if $go test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" >"$log" 2>&1; then
        break
      fi
      cat "$log"
      after=$(inputs "$dir/testdata/fuzz/$target")
      if [[ $after -gt $before ]]; then
        echo "fuzz: $target failed (new inputs are in $dir/testdata/fuzz/$target)" >&2
        exit 1
      fi
      if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input' "$log"; then
        # The engine's own deadline caught a worker mid-input at the end of
        # the run: the whole time was fuzzed and nothing failed.
        echo "fuzz: $target ran its $fuzztime; the engine stopped on its own deadline (no failing input)"
        break
      fi
      if [[ $attempt -eq 2 ]]; then
        echo "fuzz: $target failed twice without saving an input" >&2
        exit 1
      fi
      echo "fuzz: $target stopped without a failing input; running it again"
    done
  done
done

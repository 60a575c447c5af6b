#!/usr/bin/env bash
# npm run bench: first the loader's timings (bench/loader.js, no root needed), then boots a
# disposable systemd host (test/e2e/sandbox.sh, its own name), runs bench/inside.sh in it, prints
# the table with the issue's ratios, and takes the host down.
# npm run bench -- --loader: the loader's timings only, without the host.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  '' | --loader) ;;
  *) echo "usage: npm run bench [-- --loader]" >&2; exit 2 ;;
esac
[ -f dist/commands/apply.js ] || npm run build
node bench/loader.js
[ "${1:-}" = --loader ] && exit 0
echo
export SANDBOX_NAME=nsctl-bench
RUNS=${RUNS:-3}
sb() { bash test/e2e/sandbox.sh "$@"; }
trap 'sb down >/dev/null 2>&1 || true' EXIT
sb down >/dev/null 2>&1 || true
sb up >&2
proxy=$(sb ip)
out=$(SANDBOX_ENV="PROXY=$proxy RUNS=$RUNS" sb exec -- bash /opt/nspawnctl/bench/inside.sh)
echo "$out" | awk -F'\t' '{ printf "%-42s %8.2f s   (runs: %s)\n", $1, $2, $3 }'
get() { echo "$out" | awk -F'\t' -v k="$1" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
raw=$(get "raw mmdebstrap"); cold1=$(get "apply 1 machine, cold cache"); warm1=$(get "apply 1 more machine, warm cache")
cold4=$(get "apply 4 machines / 2 bases, cold"); noop=$(get "no-op re-apply of 4 machines")
node0=$(get "node -e 0"); ver=$(get "nspawnctl --version")
echo
printf '%-52s %6s   target\n' "ratio" "value"
printf '%-52s %6s   <= 1.15\n' "(2) apply cold / raw mmdebstrap" "$(ratio "$cold1" "$raw")"
printf '%-52s %6s   <= 0.20 (and < 5 s: %s s)\n' "(3) apply warm / raw mmdebstrap" "$(ratio "$warm1" "$raw")" "$warm1"
printf '%-52s %6s   <= 2.0\n' "(4) 4 machines cold / (2)" "$(ratio "$cold4" "$cold1")"
printf '%-52s %6s   < 1.5 s\n' "(5) no-op re-apply of 4 machines (s)" "$noop"
printf '%-52s %6s   < 2.5\n' "(6) --version / node -e 0" "$(ratio "$ver" "$node0")"

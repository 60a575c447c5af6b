#!/usr/bin/env bash
# npm run bench: first the loader's timings (bench/loader.js, no root needed), then boots a
# disposable systemd host (test/e2e/sandbox.sh, its own name), runs bench/inside.sh (bootstrap,
# apply, readiness, start-up) and bench/scale.sh (5 to 50 machines) in it, prints the table with
# the issue's ratios, writes docs/bench/results.json and docs/bench/scale.svg, and takes the host
# down.
# npm run bench -- --scale: the scale part only (it writes the same two files).
# npm run bench -- --loader: the loader's timings only, without the host.
# RUNS (default 3) runs of each measurement; JOBS (default 2) for apply; SKIP (see inside.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  '' | --loader | --scale) ;;
  *) echo "usage: npm run bench [-- --loader | --scale]" >&2; exit 2 ;;
esac
mode=${1:-all}
[ -f dist/commands/apply.js ] || npm run build
if [ "$mode" != --scale ]; then node bench/loader.js; fi
[ "$mode" = --loader ] && exit 0
echo
export SANDBOX_NAME=nsctl-bench
RUNS=${RUNS:-3}
JOBS=${JOBS:-2}
sb() { bash test/e2e/sandbox.sh "$@"; }

# 50 booted machines need more inotify instances than the kernel's default 128 (each machine's
# systemd takes about 8, all charged to root). /proc/sys is read-only inside the test host, and
# the values are this machine's, so they are raised here before the host boots, and put back on
# exit, unless someone else changed them meanwhile (another test host may rely on its own value).
INOTIFY=(/proc/sys/fs/inotify/max_user_instances:8192 /proc/sys/fs/inotify/max_user_watches:1048576)
declare -A before=() ours=()
raise_limits() {
  local entry file want have
  for entry in "${INOTIFY[@]}"; do
    file=${entry%%:*}; want=${entry##*:}; have=$(cat "$file")
    if ((have < want)); then
      before[$file]=$have; ours[$file]=$want
      echo "$want" >"$file"
      echo "bench: $file $have -> $want (restored on exit)" >&2
    fi
  done
}
restore_limits() {
  local file
  for file in "${!ours[@]}"; do
    if [ "$(cat "$file")" = "${ours[$file]}" ]; then echo "${before[$file]}" >"$file"; echo "bench: $file restored to ${before[$file]}" >&2
    else echo "bench: $file was changed by someone else meanwhile; left at $(cat "$file")" >&2; fi
  done
}
cleanup() {
  sb down >/dev/null 2>&1 || true
  restore_limits
}
trap cleanup EXIT
trap 'exit 130' INT TERM
raise_limits
sb down >/dev/null 2>&1 || true
sb up >&2
proxy=$(sb ip)
env=("PROXY=$proxy" "RUNS=$RUNS" "JOBS=$JOBS")
# SKIP="debootstrap four" leaves those parts of bench/inside.sh out (a shorter run).
[ -n "${SKIP:-}" ] && env+=("SKIP=${SKIP// /,}")
out=""
if [ "$mode" != --scale ]; then
  out=$(SANDBOX_ENV="${env[*]}" sb exec -- bash /opt/nspawnctl/bench/inside.sh)
  echo "$out" | awk -F'\t' '{ printf "%-42s %8.2f s   (runs: %s)\n", $1, $2, $3 }'
fi
skip_raw=0; [ -n "$out" ] && skip_raw=1
scale=$(SANDBOX_ENV="${env[*]} SKIP_RAW=$skip_raw" sb exec -- bash /opt/nspawnctl/bench/scale.sh)
echo "$scale" | awk -F'\t' '{ printf "%-42s %8.2f     (runs: %s)\n", $1, $2, $3 }'
echo
printf '%s\n%s\n' "$out" "$scale" | grep . | RUNS=$RUNS JOBS=$JOBS CORES=$(nproc) node bench/results.js docs/bench/results.json docs/bench/scale.svg

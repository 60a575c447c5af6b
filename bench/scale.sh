#!/usr/bin/env bash
# Runs inside the disposable systemd host (see run.sh --scale): host init, then 5, 10, 25 and 50
# machines of one base (warm cache) on one bridge, each count applied from nothing. Prints one
# "name<TAB>median<TAB>all runs" line per measurement, like inside.sh:
#   raw mmdebstrap                         the reference: the base bootstrapped by hand, same disk
#   scale warm 1                           apply of one machine with the base cached, until running
#   scale N apply                          apply of N machines from nothing (warm cache)
#   scale N noop / scale N plan            re-apply and plan of the converged N (median of RUNS)
#   scale N rss apply / noop / plan        nspawnctl's peak RSS in MB (process.resourceUsage)
#   scale N disk apparent / disk used      MB per machine: du --apparent-size against real blocks
set -euo pipefail
: "${PROXY:?}" "${RUNS:=3}" "${SCALE:=5 10 25 50}" "${JOBS:=2}"
MIRROR=http://$PROXY/deb.debian.org/debian
PKGS=dbus,iproute2,systemd,systemd-sysv
W=/root/bench-scale
CLI=(node --require /opt/nspawnctl/bench/peak-rss.js /opt/nspawnctl/bin/run.js)
mkdir -p "$W"
export PEAK_RSS_FILE=$W/rss
node_cli() { "${CLI[@]}" "$@"; }

now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
report() { printf '%s\t%s\t%s\n' "$1" "$(echo "$2" | median)" "$2"; }
quiet() { "$@" >>"$W/log" 2>&1 || { echo "FAILED: $*" >&2; tail -n 40 "$W/log" >&2; exit 1; }; }
# timed VAR CMD...: runs CMD quietly, appends its seconds to VAR and its peak RSS (MB) to VAR_rss.
timed() {
  local var=$1; shift
  rm -f "$PEAK_RSS_FILE"
  local s; s=$(now)
  quiet "$@"
  printf -v "$var" '%s %s' "${!var}" "$(elapsed "$s")"
  local rss=${var}_rss
  printf -v "$rss" '%s %s' "${!rss:-}" "$(awk '{ printf "%.1f", $1 / 1024 }' "$PEAK_RSS_FILE")"
}

manifest() { # manifest FILE N: N machines s1..sN on one bridge
  local file=$1 n=$2 i
  { echo "defaults:"; echo "  mirror: $MIRROR"
    echo "networks:"; echo "  scalenet: { subnet: 10.78.0.0/24 }"
    if ((n == 0)); then echo "machines: {}"; else echo "machines:"; fi
    for ((i = 1; i <= n; i++)); do
      echo "  s$i:"
      echo "    network: { bridge: scalenet, address: 10.78.0.$((10 + i)) }"
    done
  } >"$file"
}

# Every machine down at once (one poweroff for all), then each destroyed: destroy alone would
# power them off one after the other.
destroy_all() {
  local names; names=$(machinectl list --no-legend --no-pager | awk '$1 ~ /^s[0-9]+$/ { print $1 }')
  if [[ -n $names ]]; then
    # shellcheck disable=SC2086  # one name per word
    machinectl poweroff $names >/dev/null 2>&1 || true
    for _ in $(seq 600); do machinectl list --no-legend --no-pager | grep -q '^s[0-9]' || break; sleep 0.1; done
  fi
  for n in $(ls /var/lib/nspawnctl/machines 2>/dev/null | sed -n 's/^\(s[0-9]*\)\.json$/\1/p'); do quiet node /opt/nspawnctl/bin/run.js destroy "$n" --yes; done
}
running_count() { machinectl list --no-legend --no-pager | awk '$1 ~ /^s[0-9]+$/' | wc -l; }

# The reference line: the same base bootstrapped by hand, with mmdebstrap's defaults, same disk
# (SKIP_RAW=1 when bench/inside.sh measured it already in this run).
if [[ ${SKIP_RAW:-0} != 1 ]]; then
  t=""
  for _ in $(seq "$RUNS"); do
    rm -rf /var/lib/machines/.raw
    s=$(now); quiet mmdebstrap --variant=minbase --include=$PKGS bookworm /var/lib/machines/.raw "$MIRROR"; t="$t $(elapsed "$s")"
  done
  rm -rf /var/lib/machines/.raw
  report "raw mmdebstrap" "$t"
fi

# host init with the manifest: the bridge (and whatever else the host needs for many machines).
manifest "$W/0.yaml" 0
quiet node /opt/nspawnctl/bin/run.js host init "$W/0.yaml"
quiet node /opt/nspawnctl/bin/run.js apply "$W/0.yaml"

# Warm the cache once, then one warm machine, RUNS times.
manifest "$W/1.yaml" 1
quiet node /opt/nspawnctl/bin/run.js apply "$W/1.yaml" --jobs "$JOBS"
destroy_all
warm=""
for _ in $(seq "$RUNS"); do
  timed warm node_cli apply "$W/1.yaml" --jobs "$JOBS"
  destroy_all
done
report "scale warm 1" "$warm"
report "scale warm 1 rss" "$warm_rss"

for n in $SCALE; do
  manifest "$W/$n.yaml" "$n"
  apply="" apply_rss=""
  timed apply node_cli apply "$W/$n.yaml" --jobs "$JOBS"
  got=$(running_count)
  [[ $got == "$n" ]] || { echo "FAILED: $got of $n machines run" >&2; exit 1; }
  noop="" noop_rss="" plan="" plan_rss=""
  for _ in $(seq "$RUNS"); do
    timed noop node_cli apply "$W/$n.yaml"
    timed plan node_cli plan "$W/$n.yaml"
  done
  node /opt/nspawnctl/bin/run.js plan "$W/$n.yaml" --json | grep -q '"changes": false' || { echo "FAILED: $n machines do not plan as converged" >&2; exit 1; }
  report "scale $n apply" "$apply"
  report "scale $n apply per machine" "$(awk -v t="$apply" -v n="$n" 'BEGIN { printf "%.3f", t / n }')"
  report "scale $n noop" "$noop"
  report "scale $n plan" "$plan"
  report "scale $n rss apply" "$apply_rss"
  report "scale $n rss noop" "$noop_rss"
  report "scale $n rss plan" "$plan_rss"
  # Per machine, in MB: what the files add up to, and the blocks they really take.
  report "scale $n disk apparent" "$(du -s --block-size=1 --apparent-size /var/lib/machines/s1 | awk '{ printf "%.1f", $1 / 1048576 }')"
  report "scale $n disk used" "$(du -s --block-size=1 /var/lib/machines/s1 | awk '{ printf "%.1f", $1 / 1048576 }')"
  report "scale $n disk used all" "$(du -s --block-size=1 /var/lib/machines | awk -v n="$n" '{ printf "%.1f", $1 / 1048576 / n }')"
  destroy_all
done

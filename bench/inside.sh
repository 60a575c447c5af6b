#!/usr/bin/env bash
# Runs inside the disposable systemd host (see run.sh): times the raw bootstrappers and
# nspawnctl side by side on the same package set, median of $RUNS runs each, and prints
# one "name<TAB>median seconds<TAB>all runs" line per measurement.
set -euo pipefail
: "${PROXY:?}" "${RUNS:=3}"
# SKIP: parts to leave out of this run, comma-separated (debootstrap, four), for a shorter run.
skip() { [[ ",${SKIP:-}," == *",$1,"* ]]; }
MIRROR=http://$PROXY/deb.debian.org/debian
PKGS=dbus,iproute2,systemd,systemd-sysv
CLI=(node /opt/nspawnctl/bin/run.js)
W=/root/bench
mkdir -p "$W"

now() { date +%s.%N; }
# elapsed START: seconds since START with millisecond precision
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
report() { printf '%s\t%s\t%s\n' "$1" "$(echo "$2" | median)" "$2"; }
quiet() { "$@" >>"$W/log" 2>&1 || { echo "FAILED: $*" >&2; tail -n 30 "$W/log" >&2; exit 1; }; }

manifest() { # manifest FILE MACHINE:NET... (NET = net or none)
  local file=$1; shift
  { echo "defaults:"; echo "  mirror: $MIRROR"
    echo "networks:"; echo "  examplevlan: { subnet: 10.77.0.0/24 }"
    if [[ $# -eq 0 ]]; then echo "machines: {}"; else echo "machines:"; fi
    local i=10
    for spec in "$@"; do
      i=$((i + 1))
      echo "  ${spec%%:*}:"
      if [[ ${spec#*:} == net ]]; then echo "    network: { bridge: examplevlan, address: 10.77.0.$i }"; else echo "    autostart: false"; fi
    done
  } >"$file"
}
destroy_all() { for m in "$@"; do quiet "${CLI[@]}" destroy "$m" --yes; done; }

# 1. raw bootstrappers
t=""; for _ in $(seq "$RUNS"); do rm -rf /var/lib/machines/.raw; s=$(now); quiet mmdebstrap --variant=minbase --include=$PKGS bookworm /var/lib/machines/.raw "$MIRROR"; t="$t $(elapsed "$s")"; done
report "raw mmdebstrap" "$t"; rm -rf /var/lib/machines/.raw
# The two ways to skip dpkg's syncs (src/apply/unsafe-io.ts), by hand, same disk: dpkg's own
# force-unsafe-io, and mmdebstrap's eatmydata hook (only where its dpkg-architecture exists).
t=""; for _ in $(seq "$RUNS"); do rm -rf /var/lib/machines/.raw; s=$(now); quiet mmdebstrap --variant=minbase --include=$PKGS --dpkgopt=force-unsafe-io bookworm /var/lib/machines/.raw "$MIRROR"; t="$t $(elapsed "$s")"; done
report "raw mmdebstrap, force-unsafe-io" "$t"; rm -rf /var/lib/machines/.raw
if command -v dpkg-architecture >/dev/null && [ -d /usr/share/mmdebstrap/hooks/eatmydata ]; then
  t=""; for _ in $(seq "$RUNS"); do rm -rf /var/lib/machines/.raw; s=$(now); quiet mmdebstrap --variant=minbase --include=$PKGS --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata bookworm /var/lib/machines/.raw "$MIRROR"; t="$t $(elapsed "$s")"; done
  report "raw mmdebstrap, eatmydata hook" "$t"; rm -rf /var/lib/machines/.raw
fi
if ! skip debootstrap; then t=""; for _ in $(seq "$RUNS"); do rm -rf /var/lib/machines/.raw; s=$(now); quiet debootstrap --variant=minbase --include=$PKGS bookworm /var/lib/machines/.raw "$MIRROR"; t="$t $(elapsed "$s")"; done
report "raw debootstrap" "$t"; rm -rf /var/lib/machines/.raw; fi

# The bridge exists before the first timed apply, as it would on a prepared host.
manifest "$W/net.yaml"; quiet "${CLI[@]}" apply "$W/net.yaml"

# 2. one new machine, cold cache (until running); 3. one more with the same base, warm cache
manifest "$W/one.yaml" b1:net
manifest "$W/two.yaml" b1:net b2:net
cold=""; warm=""
for _ in $(seq "$RUNS"); do
  quiet "${CLI[@]}" cache prune --all
  s=$(now); quiet "${CLI[@]}" apply "$W/one.yaml"; cold="$cold $(elapsed "$s")"
  s=$(now); quiet "${CLI[@]}" apply "$W/two.yaml"; warm="$warm $(elapsed "$s")"
  destroy_all b1 b2
done
report "apply 1 machine, cold cache" "$cold"
report "apply 1 more machine, warm cache" "$warm"

# Readiness: machinectl start until apply calls the machine ready (bench/readiness.js), against
# the same waits typed by hand; 5 runs each, interleaved, the machine stopped before each.
quiet "${CLI[@]}" apply "$W/one.yaml"
ready=$(node /opt/nspawnctl/bench/readiness.js b1 5)
echo "$ready" >"$W/readiness.json"
field() { echo "$ready" | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { const r = JSON.parse(s)[process.argv[1]]; console.log(`${r.median}\t${r.runs.join(" ")}`); });' "$1"; }
printf 'readiness nspawnctl\t%s\n' "$(field nspawnctl)"
printf 'readiness by hand\t%s\n' "$(field byHand)"
destroy_all b1

# 4. four machines over two bases (networked ones get iproute2 in their base), cold and warm
manifest "$W/four.yaml" c1:net c2:net c3:none c4:none
cold=""; warm=""; noop=""
if ! skip four; then for _ in $(seq "$RUNS"); do
  quiet "${CLI[@]}" cache prune --all
  s=$(now); quiet "${CLI[@]}" apply "$W/four.yaml"; cold="$cold $(elapsed "$s")"
  destroy_all c1 c2 c3 c4
  s=$(now); quiet "${CLI[@]}" apply "$W/four.yaml"; warm="$warm $(elapsed "$s")"
  # 5. no-op re-apply of the four
  s=$(now); quiet "${CLI[@]}" apply "$W/four.yaml"; noop="$noop $(elapsed "$s")"
  destroy_all c1 c2 c3 c4
done
report "apply 4 machines / 2 bases, cold" "$cold"
report "apply 4 machines / 2 bases, warm" "$warm"
report "no-op re-apply of 4 machines" "$noop"
fi

# 6. start-up
quiet "${CLI[@]}" apply "$W/four.yaml"
a=""; b=""; c=""
for _ in $(seq 5); do
  s=$(now); node -e 0; a="$a $(elapsed "$s")"
  s=$(now); "${CLI[@]}" --version >/dev/null; b="$b $(elapsed "$s")"
  s=$(now); "${CLI[@]}" plan "$W/four.yaml" >/dev/null; c="$c $(elapsed "$s")"
done
report "node -e 0" "$a"
report "nspawnctl --version" "$b"
report "nspawnctl plan (4 machines, no changes)" "$c"
destroy_all c1 c2 c3 c4

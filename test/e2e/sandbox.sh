#!/usr/bin/env bash
# sandbox.sh - a disposable systemd test host for nspawnctl's end-to-end tests.
#
# The "sandbox" is a Debian bookworm rootfs booted with `systemd-nspawn -b` in a
# private network namespace. It reaches Debian's archive only through an
# apt-cacher-ng that this script runs on the host end of a veth pair. See
# test/e2e/README.md for the full picture.
#
#   bash test/e2e/sandbox.sh up [--bare] [--no-node] [--machines-fs=SIZE] [--sshd]  boot it (--no-node:
#                                            without our node; --machines-fs: /var/lib/machines on its
#                                            own ext4; --sshd: OpenSSH on its address, root by the key
#                                            in the .pub file that SANDBOX_SSH_PUBKEY names)
#   bash test/e2e/sandbox.sh exec [--] CMD…  run CMD inside (exit code propagates)
#   bash test/e2e/sandbox.sh pid             PID (on this machine) of its PID 1
#   bash test/e2e/sandbox.sh ip              HOSTIP:PORT of the apt proxy
#   bash test/e2e/sandbox.sh addr            the sandbox's own IPv4 address (reachable from here)
#   bash test/e2e/sandbox.sh status          up/down with PIDs
#   bash test/e2e/sandbox.sh down            tear everything down (idempotent)
#   bash test/e2e/sandbox.sh check-clean     exit 1 listing leftovers
#
# Exit codes: 0 ok, 1 failure (or leftovers for check-clean, or "down" for
# status), 2 usage error; `exec` returns the command's own exit code, or 125
# if it could not run it (not root, sandbox not up, bad SANDBOX_ENV).
set -euo pipefail

# ---------------------------------------------------------------- settings --

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)

NAME=${SANDBOX_NAME:-nsctl-sbx}
if [[ ! $NAME =~ ^[a-z][a-z0-9-]{0,29}$ ]]; then
  echo "sandbox: SANDBOX_NAME must match ^[a-z][a-z0-9-]{0,29}\$ (got '$NAME')" >&2
  exit 2
fi

# Bump when the way the rootfs is built changes, so old caches are not reused.
FORMAT_VERSION=4
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PORT=${SANDBOX_ACNG_PORT:-3149}   # not 3142: a stock apt-cacher-ng may sit there
BOOT_TIMEOUT=${SANDBOX_BOOT_TIMEOUT:-120}

# Packages of the two flavours. "full" is a host ready for nspawnctl; "bare"
# lacks what `nspawnctl host init` is expected to install.
PKGS_BASE=(systemd systemd-sysv dbus iproute2 iputils-ping procps ca-certificates)
PKGS_FULL_EXTRA=(systemd-container mmdebstrap debootstrap nftables gpg)
# Added by `up --sshd` to either flavour; such a rootfs is cached as FLAVOUR+sshd.
PKGS_SSHD=(openssh-server)
SSH_PORT=22

CACHE_ROOT=/var/cache/nspawnctl-e2e
RUN_ROOT=/var/tmp/nspawnctl-sandbox
RUN_DIR=$RUN_ROOT/$NAME
STATE_DIR=/run/nspawnctl-sandbox
STATE_FILE=$STATE_DIR/$NAME.env
LOCK_FILE=$STATE_DIR/$NAME.lock
NSPAWN_RUNDIR=/run/systemd/nspawn
# Bookkeeping for the tmpfs we may put on /run/systemd/nspawn: the marker says
# "the sandbox mounted it", users/ has one file per sandbox instance using it.
TMPFS_MARKER=$STATE_DIR/nspawn-tmpfs.mounted
TMPFS_USERS=$STATE_DIR/nspawn-tmpfs.users
TMPFS_SOURCE=nspawnctl-sandbox

# Network: instance "slot" 0 is the default name; other names hash to 1..63.
# Each slot owns 10.199.254.(4*slot)/30: .+1 on this machine, .+2 inside.
if [[ $NAME == nsctl-sbx ]]; then
  SLOT=0
else
  SLOT=$(( 1 + $(printf '%s' "$NAME" | cksum | cut -d' ' -f1) % 63 ))
fi
NETNS=$NAME
VETH_HOST=nsbx$SLOT        # on this machine
VETH_GUEST=sbx0            # inside the namespace (deliberately not "host0",
                           # which networkd's stock 80-container-host0.network
                           # would grab for DHCP)
HOST_IP=10.199.254.$(( 4 * SLOT + 1 ))
GUEST_IP=10.199.254.$(( 4 * SLOT + 2 ))
if [[ $SLOT == 0 ]]; then
  ACNG_CACHE=$CACHE_ROOT/apt-cacher-ng
else
  ACNG_CACHE=$CACHE_ROOT/apt-cacher-ng-$NAME   # acng must not share a cache dir
fi

SANDBOX_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ----------------------------------------------------------------- helpers --

# Print a message prefixed with the script's name.
say() { echo "sandbox[$NAME]: $*" >&2; }

# Print an error and exit 1.
die() { say "ERROR: $*"; exit 1; }

# Refuse to run unless we are root.
need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

# Check that every tool the script uses exists; name the Debian package if not.
# Extra CMD:PACKAGE pairs may be given (what an option of `up` needs).
check_tools() {
  local missing=() pair cmd pkg
  for pair in systemd-nspawn:systemd-container mmdebstrap:mmdebstrap \
              apt-cacher-ng:apt-cacher-ng ip:iproute2 ss:iproute2 \
              nsenter:util-linux unshare:util-linux findmnt:util-linux \
              mountpoint:util-linux setsid:util-linux flock:util-linux \
              sha256sum:coreutils "$@"; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd (apt-get install $pkg)")
  done
  if ((${#missing[@]})); then
    say "missing tools:"; printf '  %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

# Start time (jiffies since boot) of a PID, or nothing if it is gone. Recorded
# next to each PID so a recycled PID is never mistaken for ours.
pid_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }              # drop "pid (comm) ", comm may contain spaces
  # after that, field 1 is state (overall field 3); starttime is field 22
  echo "$stat" | awk '{print $20}'
}

# True if PID is alive and still the process we recorded (same start time).
pid_alive() {
  local pid=$1 start=${2:-}
  [[ -n $pid && -d /proc/$pid ]] || return 1
  [[ -z $start || $(pid_start "$pid") == "$start" ]]
}

# Print PID and all its descendants (deepest first), found through /proc.
descendants() {
  local pid=$1 child
  # shellcheck disable=SC2013  # the file is a space-separated list of PIDs
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    descendants "$child"
  done
  echo "$pid"
}

# Send a signal to a recorded process and all its descendants, by PID.
kill_tree() {
  local sig=$1 pid=$2 p
  for p in $(descendants "$pid"); do kill -s "$sig" "$p" 2>/dev/null || true; done
}

# Wait up to N seconds for a recorded PID to exit; true if it did.
wait_gone() {
  local pid=$1 start=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    pid_alive "$pid" "$start" || return 0
    sleep 0.1
  done
  ! pid_alive "$pid" "$start"
}

# Append KEY=VALUE to the state file (later lines win when it is sourced).
state_set() {
  mkdir -p "$STATE_DIR"
  printf '%s=%q\n' "$1" "$2" >>"$STATE_FILE"
}

# Load the state file into S_* variables (empty if there is none).
state_load() {
  S_FLAVOUR='' S_NODE='' S_SSHD='' S_NSPAWN_PID='' S_NSPAWN_START='' S_LEADER_PID='' S_LEADER_START=''
  S_ACNG_PID='' S_ACNG_START='' S_BUILD_PID='' S_BUILD_START='' S_BUILD_TMP=''
  S_ROOTFS=''
  [[ -f $STATE_FILE ]] || return 0
  local line key value
  while IFS= read -r line; do
    [[ $line =~ ^([A-Z_]+)=(.*)$ ]] || continue
    key=${BASH_REMATCH[1]}; value=${BASH_REMATCH[2]}
    # values were written with printf %q; our values never need unquoting
    # beyond plain words, so strip the quoting bash may have added
    eval "value=$value"
    printf -v "S_$key" '%s' "$value"
  done <"$STATE_FILE"
}

# True if the sandbox's PID 1 is alive.
is_up() {
  state_load
  [[ -n $S_LEADER_PID ]] && pid_alive "$S_LEADER_PID" "$S_LEADER_START"
}

# List mount points at or below a directory (deepest first).
mounts_under() {
  local dir=$1
  findmnt -rn -o TARGET 2>/dev/null | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | sort -r
}

# Run a command inside the sandbox (namespaces of its PID 1) with a clean env.
in_sandbox() {
  nsenter -t "$S_LEADER_PID" -a -r -w -- /usr/bin/env -i \
    PATH="$SANDBOX_PATH" HOME=/root LANG=C.UTF-8 "$@"
}

# --------------------------------------------------------------- the cache --

# Package list of an image (a flavour, or FLAVOUR+sshd), comma separated and sorted.
flavour_packages() {
  local pkgs=("${PKGS_BASE[@]}")
  [[ ${1%+sshd} == full ]] && pkgs+=("${PKGS_FULL_EXTRA[@]}")
  [[ $1 == *+sshd ]] && pkgs+=("${PKGS_SSHD[@]}")
  printf '%s\n' "${pkgs[@]}" | sort -u | paste -sd,
}

# Cache path of an image's rootfs: keyed by format version, suite and packages.
# ("full+sshd-*" is never matched by the stale-cache glob "full-*", and the other way round.)
cache_path() {
  local key
  key=$(printf 'v%s %s %s %s %s\n' "$FORMAT_VERSION" "$SUITE" "$MIRROR" "$1" \
        "$(flavour_packages "$1")" | sha256sum | cut -c1-16)
  echo "$CACHE_ROOT/rootfs/$1-$key"
}

# Build the image's rootfs with mmdebstrap through our apt-cacher-ng, into a
# temporary directory that is renamed into place only when complete.
ensure_rootfs() {
  local flavour=$1 dest tmp pkgs hooks=()
  dest=$(cache_path "$flavour")
  if [[ -d $dest ]]; then
    say "rootfs cache hit: $dest"
    return 0
  fi
  pkgs=$(flavour_packages "$flavour")
  mkdir -p "$CACHE_ROOT/rootfs"
  tmp=$dest.tmp.$$
  rm -rf --one-file-system "$tmp"
  say "building $flavour rootfs (packages: $pkgs) -> $dest"
  local t0=$SECONDS
  # openssh-server's postinst made host keys: every copy would share them. Each run makes its own
  # (prepare_rootfs).
  # shellcheck disable=SC2016  # $1 is expanded by mmdebstrap's hook shell
  [[ $flavour == *+sshd ]] && hooks+=(--customize-hook='rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub')
  # - unshare --mount: mmdebstrap's /proc,/dev,/sys mounts die with it even if
  #   it is killed half-way, so nothing is ever left mounted on this machine.
  # - the proxy aptopt is used for the build only; the customize hook removes
  #   the file mmdebstrap leaves behind (each run writes its own proxy config)
  #   and the copies of this machine's /etc/hostname and /etc/resolv.conf
  #   that mmdebstrap puts in, so the cache does not depend on the builder.
  # - started in the background and waited for, so SIGINT/SIGTERM reach our
  #   trap at once; the PID is recorded so `down` can kill it.
  # shellcheck disable=SC2016  # $1 is expanded by mmdebstrap's hook shell
  unshare --mount --propagation private -- \
    mmdebstrap --mode=root --variant=minbase --include="$pkgs" \
      --aptopt="Acquire::http::Proxy \"http://$HOST_IP:$PORT\";" \
      --customize-hook='rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap" "$1/etc/hostname" "$1/etc/resolv.conf"' \
      "${hooks[@]}" \
      "$SUITE" "$tmp" "$MIRROR" \
      >"$RUN_DIR/mmdebstrap.log" 2>&1 9>&- &
  local build=$!
  state_set BUILD_PID "$build"
  state_set BUILD_START "$(pid_start "$build")"
  state_set BUILD_TMP "$tmp"
  if ! wait "$build"; then
    tail -n 30 "$RUN_DIR/mmdebstrap.log" >&2 || true
    die "mmdebstrap failed (full log: $RUN_DIR/mmdebstrap.log)"
  fi
  state_set BUILD_PID ''
  [[ -n $(mounts_under "$tmp") ]] && die "mounts left under $tmp after mmdebstrap"
  if ! mv -T "$tmp" "$dest" 2>/dev/null; then
    # another instance finished the same build first: keep theirs
    rm -rf --one-file-system "$tmp"
  fi
  state_set BUILD_TMP ''
  say "rootfs built in $((SECONDS - t0)) s"
  # drop caches of this flavour built under another key (older format/list)
  local old
  for old in "$CACHE_ROOT/rootfs/$flavour"-*; do
    [[ -d $old && $old != "$dest" && $old != *.tmp.* ]] || continue
    say "removing stale cache $old"
    rm -rf --one-file-system "$old"
  done
}

# Copy the cached rootfs to the per-run dir and adapt the copy for this run.
prepare_rootfs() {
  local src=$1 root=$RUN_DIR/rootfs
  say "copying rootfs to $root"
  cp -a --reflink=auto "$src" "$root"
  state_set ROOTFS "$root"

  # apt inside goes through our apt-cacher-ng (no route to anywhere else).
  printf 'Acquire::http::Proxy "http://%s:%s";\n' "$HOST_IP" "$PORT" \
    >"$root/etc/apt/apt.conf.d/00sandbox-proxy"
  # One plain source, no security/updates suites (keeps the cache small).
  rm -f "$root"/etc/apt/sources.list.d/*.list "$root"/etc/apt/sources.list.d/*.sources
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
  # Hostname, and a hosts entry so `hostname -f` and sudo-like tools resolve it.
  echo "$NAME" >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$NAME" >"$root/etc/hosts"
  chmod 0644 "$root/etc/hostname" "$root/etc/hosts"
  # mmdebstrap leaves /etc/machine-id empty, which makes systemd treat every
  # boot as a first boot with a transient id. A fixed per-run id gives a normal
  # boot and a stable identity that nested machines (journal linking,
  # machined) can rely on.
  local uuid
  uuid=$(tr -d '-' </proc/sys/kernel/random/uuid)
  echo "$uuid" >"$root/etc/machine-id"
  # There is no DNS inside (apt only talks to the proxy by IP); an empty
  # resolv.conf makes lookups fail fast instead of trying this machine's
  # resolver. nspawn is told --resolv-conf=off so it leaves this alone.
  rm -f "$root/etc/resolv.conf"
  echo '# sandbox: no DNS; apt goes through the proxy in 00sandbox-proxy' >"$root/etc/resolv.conf"
  chmod 0644 "$root/etc/resolv.conf"
  # Mount points for the read-only binds of node and the project.
  mkdir -p "$root/opt/nspawnctl"
  if [[ -L $PROJECT_DIR/node_modules ]]; then mkdir -p "$root$(readlink -f "$PROJECT_DIR/node_modules")"; fi
  # A marker so tests can tell they are inside the sandbox.
  printf 'SANDBOX_NAME=%s\nSANDBOX_PROXY=%s:%s\n' "$NAME" "$HOST_IP" "$PORT" \
    >"$root/etc/nspawnctl-sandbox"
}

# The rootfs copy of an `up --sshd`: host keys of its own (made here, so they can be read before
# boot), sshd listening on the sandbox's address only, root by key only, the given key authorized.
# $1: the public key line.
sshd_prepare() {
  local key=$1 root=$RUN_DIR/rootfs
  rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub
  ssh-keygen -q -t ed25519 -N '' -C "root@$NAME" -f "$root/etc/ssh/ssh_host_ed25519_key"
  mkdir -p "$root/etc/ssh/sshd_config.d"
  # Debian's sshd_config includes sshd_config.d/*.conf first, and the first value of an option wins.
  cat >"$root/etc/ssh/sshd_config.d/00-sandbox.conf" <<EOF
# generated by test/e2e/sandbox.sh for sandbox $NAME
ListenAddress $GUEST_IP:$SSH_PORT
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
EOF
  chmod 0644 "$root/etc/ssh/sshd_config.d/00-sandbox.conf"
  install -d -m 0700 -o root -g root "$root/root/.ssh"
  printf '%s\n' "$key" >"$root/root/.ssh/authorized_keys"
  chmod 0600 "$root/root/.ssh/authorized_keys"
  say "sshd: $GUEST_IP:$SSH_PORT, root by key only ($(ssh-keygen -l -f "$root/root/.ssh/authorized_keys" | cut -d' ' -f2))"
}

# Read and check the public key file of `up --sshd`; print its one key line.
sshd_pubkey() {
  local file=$1 line
  [[ -n $file ]] || die "--sshd needs SANDBOX_SSH_PUBKEY (the path of a .pub file on this machine)"
  [[ -f $file && -r $file ]] || die "SANDBOX_SSH_PUBKEY: no readable file '$file'"
  line=$(grep -v '^[[:space:]]*\(#\|$\)' "$file" || true)
  [[ -n $line && $line != *$'\n'* ]] || die "SANDBOX_SSH_PUBKEY: '$file' must hold exactly one public key"
  [[ $line != *PRIVATE* ]] || die "SANDBOX_SSH_PUBKEY: '$file' is a private key"
  ssh-keygen -l -f "$file" >/dev/null 2>&1 || die "SANDBOX_SSH_PUBKEY: '$file' is not a public key (ssh-keygen -l refuses it)"
  printf '%s\n' "$line"
}

# /var/lib/machines of the sandbox on an ext4 filesystem of its own, in a sparse file of SIZE in
# the run directory (mounted before boot, so the sandbox sees it). Many machines' root
# filesystems are then removed by `down` with one unmount and one file, not file by file.
machines_fs_up() {
  local size=$1 img=$RUN_DIR/machines.img dir=$RUN_DIR/rootfs/var/lib/machines
  say "/var/lib/machines on its own ext4 ($size, sparse: $img)"
  truncate -s "$size" "$img"
  mkfs.ext4 -q -F -m 0 -O ^has_journal "$img"
  mkdir -p "$dir"
  mount -o loop "$img" "$dir"
  # machined would list lost+found as an image.
  rmdir "$dir/lost+found"
  chmod 0700 "$dir"
}

# ------------------------------------------------------------ the network --

# Create the namespace and veth pair with the /30 addresses.
net_up() {
  if [[ -e /run/netns/$NETNS ]] || ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
    die "netns $NETNS or link $VETH_HOST (slot $SLOT) already exists but no sandbox of this name is recorded; run: $0 down, or use a name that hashes to another slot"
  fi
  ip netns add "$NETNS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_GUEST" netns "$NETNS"
  ip addr add "$HOST_IP/30" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  ip -n "$NETNS" addr add "$GUEST_IP/30" dev "$VETH_GUEST"
  ip -n "$NETNS" link set "$VETH_GUEST" up
  ip -n "$NETNS" link set lo up
}

# ----------------------------------------------------------- apt-cacher-ng --

# Write acng.conf and start apt-cacher-ng in the foreground (in background
# here), then wait until it accepts connections on HOST_IP:PORT.
acng_up() {
  local conf=$RUN_DIR/acng
  mkdir -p "$conf" "$RUN_DIR/acng-log" "$ACNG_CACHE"
  # No Remap-* lines: the stock remapping sends deb.debian.org to other
  # mirrors, which are unreachable here. Plain "host/path" URLs and proxy
  # requests are fetched from the host named in them.
  cat >"$conf/acng.conf" <<EOF
# generated by test/e2e/sandbox.sh for sandbox $NAME
CacheDir: $ACNG_CACHE
LogDir: $RUN_DIR/acng-log
SupportDir: /usr/lib/apt-cacher-ng
Port: $PORT
BindAddress: $HOST_IP
SocketPath: $RUN_DIR/acng.socket
PassThroughPattern: .*
ForeGround: 1
ExThreshold: 4
EOF
  if ss -Hltn "src $HOST_IP:$PORT" 2>/dev/null | grep -q .; then
    die "something already listens on $HOST_IP:$PORT (slot $SLOT: another sandbox whose name hashes to the same slot?)"
  fi
  setsid apt-cacher-ng -c "$conf" </dev/null >"$RUN_DIR/acng-log/stdout.log" 2>&1 9>&- &
  local pid=$!
  state_set ACNG_PID "$pid"
  state_set ACNG_START "$(pid_start "$pid")"
  local i
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || { cat "$RUN_DIR/acng-log/stdout.log" >&2; die "apt-cacher-ng exited"; }
    if (exec 3<>"/dev/tcp/$HOST_IP/$PORT") 2>/dev/null; then
      say "apt-cacher-ng (pid $pid) listens on $HOST_IP:$PORT"
      return 0
    fi
    sleep 0.1
  done
  die "apt-cacher-ng did not listen on $HOST_IP:$PORT within 10 s"
}

# ------------------------------------------------------------------- boot --

# Mount a tmpfs on /run/systemd/nspawn unless it already is one (nspawn wants
# its propagation dir there on a tmpfs; /run is not a tmpfs on these machines).
# Instances started at the same time take a shared lock (fd 7) around the check and the mount,
# so they never stack two tmpfs mounts on the directory.
nspawn_tmpfs_up() {
  mkdir -p "$NSPAWN_RUNDIR" "$TMPFS_USERS"
  exec 7>"$STATE_DIR/nspawn-tmpfs.lock"
  flock 7
  if [[ $(stat -f -c %T "$NSPAWN_RUNDIR") != tmpfs ]]; then
    mount -t tmpfs -o mode=0755,size=16m "$TMPFS_SOURCE" "$NSPAWN_RUNDIR"
    : >"$TMPFS_MARKER"
  fi
  : >"$TMPFS_USERS/$NAME"
  flock -u 7
  exec 7>&-
}

# Where this machine's node is bound inside: not /usr/bin/node, so that dpkg can install the
# distribution's nodejs there; PATH finds /usr/local/bin first, so `node` is ours when bound.
NODE_BIND=/usr/local/bin/node

# Start systemd-nspawn in the background and record its PID. $1: "yes" binds this machine's node.
boot() {
  local root=$RUN_DIR/rootfs node with_node=$1
  local args=(
    -b -D "$root" -M "$NAME"
    --register=no --keep-unit          # no systemd/machined on this machine
    --capability=all                   # nested nspawn, networkd, bridges
    --network-namespace-path="/run/netns/$NETNS"
    --resolv-conf=off                  # keep our DNS-less resolv.conf
    --link-journal=no
    --timezone=off
    --console=read-only                # console output -> console.log
    --bind-ro="$PROJECT_DIR:/opt/nspawnctl"
  )
  # A git worktree's node_modules may be a symlink to another checkout's: that directory is bound
  # too, at the path the symlink names, so the project's modules resolve inside.
  if [[ -L $PROJECT_DIR/node_modules ]]; then
    local modules
    modules=$(readlink -f "$PROJECT_DIR/node_modules")
    [[ -d $modules ]] && args+=(--bind-ro="$modules:$modules")
  fi
  node=$(command -v node 2>/dev/null || true)
  if [[ $with_node != yes ]]; then
    say "no node of this machine inside (--no-node)"
  elif [[ -n $node ]]; then
    args+=(--bind-ro="$(readlink -f "$node"):$NODE_BIND")
  else
    say "WARNING: no node on this machine; $NODE_BIND will be missing inside"
  fi
  say "booting: systemd-nspawn ${args[*]}"
  setsid systemd-nspawn "${args[@]}" </dev/null >"$RUN_DIR/console.log" 2>&1 9>&- &
  local pid=$!
  state_set NSPAWN_PID "$pid"
  state_set NSPAWN_START "$(pid_start "$pid")"
}

# Wait for nspawn's child that is PID 1 of the new PID namespace; record it.
find_leader() {
  local i child ns
  for ((i = 0; i < 300; i++)); do
    pid_alive "$S_NSPAWN_PID" "$S_NSPAWN_START" || return 1
    # shellcheck disable=SC2013
    for child in $(cat /proc/"$S_NSPAWN_PID"/task/*/children 2>/dev/null); do
      ns=$(awk '/^NSpid:/ {print $NF}' "/proc/$child/status" 2>/dev/null || true)
      if [[ $ns == 1 ]]; then
        state_set LEADER_PID "$child"
        state_set LEADER_START "$(pid_start "$child")"
        state_load
        return 0
      fi
    done
    sleep 0.1
  done
  return 1
}

# Print the tail of the console log (used when boot fails).
console_tail() {
  say "last lines of $RUN_DIR/console.log:"
  # strip the colour escapes systemd writes to the console
  tail -n 40 "$RUN_DIR/console.log" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
}

# Poll `systemctl is-system-running` inside until running/degraded or timeout.
wait_booted() {
  local deadline=$((SECONDS + BOOT_TIMEOUT)) state=''
  while ((SECONDS < deadline)); do
    pid_alive "$S_NSPAWN_PID" "$S_NSPAWN_START" || { console_tail; die "systemd-nspawn exited during boot"; }
    state=$(in_sandbox systemctl is-system-running 2>/dev/null || true)
    case $state in
      running) return 0 ;;
      degraded)
        say "WARNING: system is degraded; failed units:"
        in_sandbox systemctl --failed --no-legend >&2 || true
        return 0 ;;
      maintenance|stopping) console_tail; die "system state is '$state'" ;;
    esac
    sleep 0.5
  done
  console_tail
  die "not booted after ${BOOT_TIMEOUT} s (last state: '${state:-none}')"
}

# Wait until ssh.service is active inside and the port on the sandbox's address answers with an
# SSH banner, as seen from this machine (30 s max).
wait_sshd() {
  local deadline=$((SECONDS + 30)) state='' banner=''
  while ((SECONDS < deadline)); do
    state=$(in_sandbox systemctl is-active ssh.service 2>/dev/null || true)
    case $state in
      active)
        # shellcheck disable=SC2016  # expanded by the inner bash
        banner=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 3 line <&3 && printf "%s" "$line"' \
                   bash "$GUEST_IP" "$SSH_PORT" 2>/dev/null || true)
        banner=${banner%$'\r'}
        if [[ $banner == SSH-2.0-* ]]; then
          say "sshd answers on $GUEST_IP:$SSH_PORT ($banner)"
          return 0
        fi ;;
      failed)
        in_sandbox journalctl -u ssh.service --no-pager -n 30 >&2 || true
        die "ssh.service failed inside" ;;
    esac
    sleep 0.2
  done
  in_sandbox journalctl -u ssh.service --no-pager -n 30 >&2 || true
  die "sshd not ready on $GUEST_IP:$SSH_PORT after 30 s (ssh.service '${state:-unknown}', banner '$banner')"
}

# ------------------------------------------------------------ subcommands --

# up [--bare] [--no-node] [--machines-fs=SIZE] [--sshd]: bring the sandbox up (see the header).
cmd_up() {
  local flavour=full with_node=yes machines_fs= sshd=no pubkey='' image
  while (($#)); do
    case $1 in
      --bare) flavour=bare ;;
      --no-node) with_node=no ;;
      --sshd) sshd=yes ;;
      --machines-fs=*)
        machines_fs=${1#--machines-fs=}
        [[ $machines_fs =~ ^[1-9][0-9]*[MG]$ ]] || { echo "usage: --machines-fs=SIZE, such as 16G (got '$machines_fs')" >&2; exit 2; } ;;
      *) echo "usage: $0 up [--bare] [--no-node] [--machines-fs=SIZE (e.g. 16G)] [--sshd]" >&2; exit 2 ;;
    esac
    shift
  done
  need_root
  # The rootfs image: the flavour, or FLAVOUR+sshd (cached apart, with openssh-server).
  image=$flavour
  if [[ $sshd == yes ]]; then
    check_tools ssh-keygen:openssh-client
    pubkey=$(sshd_pubkey "${SANDBOX_SSH_PUBKEY:-}")
    image=$flavour+sshd
  else
    check_tools
  fi
  if is_up; then
    if [[ $S_FLAVOUR != "$flavour" || ${S_NODE:-yes} != "$with_node" || ${S_SSHD:-no} != "$sshd" ]]; then
      die "already up with flavour '$S_FLAVOUR', node '${S_NODE:-yes}', sshd '${S_SSHD:-no}' (wanted '$flavour', node '$with_node', sshd '$sshd'); run '$0 down' first"
    fi
    say "already up (flavour $S_FLAVOUR, PID 1 = $S_LEADER_PID)"
    return 0
  fi
  if [[ -f $STATE_FILE || -e $RUN_DIR || -e /run/netns/$NETNS ]]; then
    say "found leftovers of an earlier run; cleaning up first"
    do_down
  fi

  # From here on any failure or SIGINT/SIGTERM tears down what was made.
  UP_DONE=0
  trap 'on_up_exit' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  local t0=$SECONDS
  mkdir -p "$RUN_DIR" "$STATE_DIR"
  : >"$STATE_FILE"
  state_set FLAVOUR "$flavour"
  state_set NODE "$with_node"
  state_set SSHD "$sshd"
  net_up
  acng_up
  ensure_rootfs "$image"
  prepare_rootfs "$(cache_path "$image")"
  [[ $sshd == no ]] || sshd_prepare "$pubkey"
  [[ -z $machines_fs ]] || machines_fs_up "$machines_fs"
  nspawn_tmpfs_up
  boot "$with_node"
  state_load
  find_leader || { console_tail; die "no PID 1 appeared under systemd-nspawn (pid $S_NSPAWN_PID)"; }
  wait_booted
  if [[ $with_node == yes && -n $(command -v node 2>/dev/null) ]]; then
    in_sandbox "$NODE_BIND" --version >/dev/null 2>&1 \
      || say "WARNING: $NODE_BIND does not run inside (missing libraries?)"
  fi
  [[ $sshd == no ]] || wait_sshd
  UP_DONE=1
  trap - EXIT INT TERM
  say "up in $((SECONDS - t0)) s: flavour $flavour, node $with_node, sshd $sshd, nspawn pid $S_NSPAWN_PID, PID 1 = $S_LEADER_PID, proxy $HOST_IP:$PORT, address $GUEST_IP"
}

# EXIT trap of `up`: tear down unless up completed.
on_up_exit() {
  local rc=$?
  if [[ ${UP_DONE:-0} != 1 ]]; then
    trap '' INT TERM
    say "up failed or was interrupted (exit $rc); tearing down"
    set +e
    do_down
  fi
  exit "$rc"
}

# exec [--] CMD...: run CMD inside with a clean environment plus SANDBOX_ENV.
cmd_exec() {
  [[ ${1:-} == -- ]] && shift
  (($#)) || { echo "usage: $0 exec [--] CMD [ARGS...]" >&2; exit 2; }
  [[ $(id -u) == 0 ]] || { say "ERROR: must run as root"; exit 125; }
  is_up || { say "ERROR: not up"; exit 125; }
  local envs=(PATH="$SANDBOX_PATH" HOME=/root LANG=C.UTF-8) kv
  [[ -n ${TERM:-} ]] && envs+=(TERM="$TERM")
  for kv in ${SANDBOX_ENV:-}; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { say "ERROR: SANDBOX_ENV entry '$kv' is not NAME=VALUE"; exit 125; }
    envs+=("$kv")
  done
  exec nsenter -t "$S_LEADER_PID" -a -r -w -- /usr/bin/env -i "${envs[@]}" "$@"
}

# pid: print the PID of the sandbox's PID 1.
cmd_pid() {
  is_up || die "not up"
  echo "$S_LEADER_PID"
}

# ip: print the proxy address as seen from inside.
cmd_ip() { echo "$HOST_IP:$PORT"; }

# addr: print the sandbox's own address (its end of the veth; this machine reaches it directly).
cmd_addr() { echo "$GUEST_IP"; }

# status: print up/down and the recorded PIDs.
cmd_status() {
  if is_up; then
    echo "up flavour=$S_FLAVOUR node=$S_NODE sshd=${S_SSHD:-no} addr=$GUEST_IP nspawn=$S_NSPAWN_PID pid1=$S_LEADER_PID apt-cacher-ng=$S_ACNG_PID proxy=$HOST_IP:$PORT rootfs=$S_ROOTFS"
  else
    echo "down"
    [[ -f $STATE_FILE ]] && echo "(state file $STATE_FILE exists: run '$0 down' or check-clean)"
    return 1
  fi
}

# down: tear everything down, tolerating parts that are missing.
do_down() {
  set +e
  state_load
  # 1. power off politely, then kill by PID what is left
  if [[ -n $S_NSPAWN_PID ]] && pid_alive "$S_NSPAWN_PID" "$S_NSPAWN_START"; then
    if [[ -n $S_LEADER_PID ]] && pid_alive "$S_LEADER_PID" "$S_LEADER_START"; then
      say "powering off (SIGRTMIN+4 to PID $S_LEADER_PID)"
      kill -s RTMIN+4 "$S_LEADER_PID" 2>/dev/null
    else
      kill -s TERM "$S_NSPAWN_PID" 2>/dev/null
    fi
    if ! wait_gone "$S_NSPAWN_PID" "$S_NSPAWN_START" 30; then
      say "systemd-nspawn $S_NSPAWN_PID still alive after 30 s; killing it and its children"
      pid_alive "$S_NSPAWN_PID" "$S_NSPAWN_START" && kill_tree KILL "$S_NSPAWN_PID"
      wait_gone "$S_NSPAWN_PID" "$S_NSPAWN_START" 5
    fi
  fi
  # 2. an interrupted rootfs build
  if [[ -n $S_BUILD_PID ]] && pid_alive "$S_BUILD_PID" "$S_BUILD_START"; then
    say "stopping mmdebstrap (pid $S_BUILD_PID)"
    kill_tree TERM "$S_BUILD_PID"
    if ! wait_gone "$S_BUILD_PID" "$S_BUILD_START" 10; then
      pid_alive "$S_BUILD_PID" "$S_BUILD_START" && kill_tree KILL "$S_BUILD_PID"
      wait_gone "$S_BUILD_PID" "$S_BUILD_START" 5
    fi
  fi
  if [[ -n $S_BUILD_TMP && $S_BUILD_TMP == "$CACHE_ROOT"/rootfs/*.tmp.* && -e $S_BUILD_TMP ]]; then
    remove_tree "$S_BUILD_TMP"
  fi
  # 3. apt-cacher-ng
  if [[ -n $S_ACNG_PID ]] && pid_alive "$S_ACNG_PID" "$S_ACNG_START"; then
    say "stopping apt-cacher-ng (pid $S_ACNG_PID)"
    kill -s TERM "$S_ACNG_PID" 2>/dev/null
    wait_gone "$S_ACNG_PID" "$S_ACNG_START" 10 || kill -s KILL "$S_ACNG_PID" 2>/dev/null
    wait_gone "$S_ACNG_PID" "$S_ACNG_START" 5
  fi
  # 4. network
  ip link show dev "$VETH_HOST" >/dev/null 2>&1 && ip link del "$VETH_HOST"
  [[ -e /run/netns/$NETNS ]] && ip netns del "$NETNS"
  # 5. the /run/systemd/nspawn tmpfs, if we mounted it and nobody else uses it
  mkdir -p "$STATE_DIR"
  exec 7>"$STATE_DIR/nspawn-tmpfs.lock"
  flock 7
  rm -f "$TMPFS_USERS/$NAME"
  if [[ -f $TMPFS_MARKER ]] && [[ -z $(ls -A "$TMPFS_USERS" 2>/dev/null) ]]; then
    # Every tmpfs of ours on the directory (older versions could stack two).
    while mountpoint -q "$NSPAWN_RUNDIR" && [[ $(findmnt -n -o SOURCE "$NSPAWN_RUNDIR" | tail -n1) == "$TMPFS_SOURCE" ]]; do
      umount "$NSPAWN_RUNDIR" 2>/dev/null || umount -l "$NSPAWN_RUNDIR" || break
    done
    rm -f "$TMPFS_MARKER"
  fi
  flock -u 7
  exec 7>&-
  # 6. the per-run directory
  [[ -e $RUN_DIR ]] && remove_tree "$RUN_DIR"
  rm -f "$STATE_FILE"
  set -e
}

# Unmount anything below DIR (lazily if busy), then delete DIR; refuse if a
# mount cannot be removed.
remove_tree() {
  local dir=$1 m
  case $dir in
    "$RUN_ROOT"/?*|"$CACHE_ROOT"/rootfs/?*.tmp.*) ;;
    *) say "refusing to remove unexpected path '$dir'"; return 1 ;;
  esac
  for m in $(mounts_under "$dir"); do
    say "unmounting $m"
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if [[ -n $(mounts_under "$dir") ]]; then
    say "ERROR: still mounted under $dir, not deleting it"
    return 1
  fi
  rm -rf --one-file-system "$dir"
}

# down: subcommand wrapper.
cmd_down() {
  need_root
  do_down
  say "down"
}

# check-clean: list leftovers; exit 1 if any.
cmd_check_clean() {
  local left=() m
  state_load
  [[ -e /run/netns/$NETNS ]] && left+=("network namespace $NETNS")
  ip link show dev "$VETH_HOST" >/dev/null 2>&1 && left+=("link $VETH_HOST")
  for m in $(mounts_under "$RUN_DIR"); do left+=("mount $m"); done
  [[ -f $TMPFS_USERS/$NAME ]] && left+=("tmpfs user record $TMPFS_USERS/$NAME")
  if [[ -f $TMPFS_MARKER && -z $(ls -A "$TMPFS_USERS" 2>/dev/null) ]]; then
    left+=("tmpfs on $NSPAWN_RUNDIR mounted by the sandbox")
  fi
  if mountpoint -q "$NSPAWN_RUNDIR" 2>/dev/null &&
     [[ $(findmnt -n -o SOURCE "$NSPAWN_RUNDIR" | tail -n1) == "$TMPFS_SOURCE" ]] &&
     [[ -z $(ls -A "$TMPFS_USERS" 2>/dev/null) ]]; then
    left+=("tmpfs $TMPFS_SOURCE on $NSPAWN_RUNDIR")
  fi
  local what pid start
  for what in NSPAWN LEADER ACNG BUILD; do
    pid=S_${what}_PID; start=S_${what}_START
    if [[ -n ${!pid} ]] && pid_alive "${!pid}" "${!start}"; then
      left+=("process ${what,,} pid ${!pid}")
    fi
  done
  [[ -n $S_BUILD_TMP && -e $S_BUILD_TMP ]] && left+=("unfinished build $S_BUILD_TMP")
  [[ -e $RUN_DIR ]] && left+=("directory $RUN_DIR")
  [[ -f $STATE_FILE ]] && left+=("state file $STATE_FILE")
  if ((${#left[@]})); then
    echo "sandbox: NOT clean:"
    printf '  %s\n' "${left[@]}"
    return 1
  fi
  echo "sandbox: clean"
}

# Print usage.
usage() {
  sed -n '9,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# Dispatch; up and down hold a per-name lock so they never overlap.
main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up|down)
      need_root
      mkdir -p "$STATE_DIR"
      exec 9>"$LOCK_FILE"
      flock -n 9 || die "another up/down of $NAME is running"
      if [[ $cmd == up ]]; then cmd_up "$@"; else cmd_down; fi ;;
    exec) cmd_exec "$@" ;;
    pid) cmd_pid ;;
    ip) cmd_ip ;;
    addr) cmd_addr ;;
    status) cmd_status ;;
    check-clean) cmd_check_clean ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"

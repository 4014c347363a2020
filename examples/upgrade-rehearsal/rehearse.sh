#!/usr/bin/env bash
# Rehearse a PostgreSQL upgrade on clonebd, end to end, on one Debian machine.
# Run `rehearse.sh --help` for what it does and the knobs it takes.
set -euo pipefail

export PATH=/usr/sbin:/sbin:$PATH
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

usage() {
	cat <<'EOF'
Usage: rehearse.sh [--keep] [--workdir DIR] [--help]

Rehearses a risky PostgreSQL migration on a clonebd clone of a live database,
then cuts over to the rehearsed clone, on one Debian machine (run as root):

  0. start clonebd, create volume pg-main, attach it as a block device
     (nbdfuse + losetup; a real host uses nbd-client), mkfs.ext4, initdb,
     load pgbench data; time clone creation at two database sizes
  1. clone the live database while pgbench runs against it (crash-consistent
     snapshot); attach the clone as a second mount, start a second PostgreSQL
     on it and show that it recovers from its WAL
  2. run a migration with a deliberately bad step on the clone, snapshot the
     clone between steps, then find the bad step with `clonebd diff` and a
     check of every step snapshot (read-only mount + throwaway clone)
  3. roll the clone back to the snapshot before the bad step, fix the step,
     finish the migration
  4. cutover: stop live, final snapshot, clone it, migrate the clone, promote
     it to pg-main, verify row counts and checksums; show the rollback point
     and roll the cutover back

It installs what it lacks with apt-get (postgresql, libnbd-bin, e2fsprogs,
fuse3) and cleans up every mount, loop device, nbdfuse and server it started.

Options:
  --keep           keep the work directory (clonebd data, logs) at the end
  --workdir DIR    work directory (default: a new /var/tmp/clonebd-rehearsal.*)
  -h, --help       this text

Environment:
  CLONEBD_SERVER, CLONEBD_CLI   the clonebd-server and clonebd binaries
                                (default: cargo build --release in the repo)
  REHEARSAL_SCALES="68 544"     pgbench scales: the database rehearsed (68 is
                                ~1 GiB) and the whole cluster for the second
                                clone timing (544 is ~8 GiB; the difference is
                                loaded into a second database, `archive`)
  REHEARSAL_PGBENCH_SECONDS=30  length of each measured pgbench run
  REHEARSAL_CLIENTS=4           pgbench clients
  REHEARSAL_LIVE_RATE=50        transactions/s that keep running on live while
                                the rehearsal goes on (0: none)
  REHEARSAL_CLONE_SAMPLES=11    clone creations timed at each size
  REHEARSAL_VOLUME_SIZE         volume size, e.g. 32G (default: from the scales)
  REHEARSAL_SERVER_LIFETIME=14400  seconds after which clonebd-server stops
  REHEARSAL_WORKDIR, REHEARSAL_KEEP=1   as --workdir, --keep
  PGBIN                         PostgreSQL binaries (default: the newest
                                /usr/lib/postgresql/*/bin)
EOF
}

KEEP=${REHEARSAL_KEEP:-0}
WORK=${REHEARSAL_WORKDIR:-}
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--keep) KEEP=1 ;;
	--workdir)
		[ $# -ge 2 ] || {
			echo "rehearse.sh: --workdir needs a directory" >&2
			exit 2
		}
		WORK=$2
		shift
		;;
	*)
		echo "rehearse.sh: unknown argument: $1" >&2
		usage >&2
		exit 2
		;;
	esac
	shift
done

read -r SCALE_SMALL SCALE_BIG _ <<<"${REHEARSAL_SCALES:-68 544}"
PGBENCH_SECONDS=${REHEARSAL_PGBENCH_SECONDS:-30}
CLIENTS=${REHEARSAL_CLIENTS:-4}
LIVE_RATE=${REHEARSAL_LIVE_RATE:-50}
SAMPLES=${REHEARSAL_CLONE_SAMPLES:-11}
SERVER_LIFETIME=${REHEARSAL_SERVER_LIFETIME:-14400}
for v in SCALE_SMALL SCALE_BIG PGBENCH_SECONDS CLIENTS LIVE_RATE SAMPLES SERVER_LIFETIME; do
	[[ ${!v:-} =~ ^[0-9]+$ ]] || {
		echo "rehearse.sh: $v must be a number (got '${!v:-}')" >&2
		exit 2
	}
done
((SCALE_BIG > SCALE_SMALL && SCALE_SMALL > 0)) || {
	echo "rehearse.sh: REHEARSAL_SCALES needs two scales, the second larger" >&2
	exit 2
}
((PGBENCH_SECONDS >= 4)) || PGBENCH_SECONDS=4
((SAMPLES >= 1)) || SAMPLES=1
# Thin volume: the size is a ceiling, not an allocation. Room for the whole
# cluster, the rewrite the bad migration step makes, and WAL.
VOLUME_SIZE=${REHEARSAL_VOLUME_SIZE:-$(((SCALE_BIG * 20 + SCALE_SMALL * 40) / 1024 + 8))G}

VOL=pg-main                     # the live volume
REH=pg-rehearsal                # the rehearsal clone
NEXT=pg-main-next               # the clone that becomes live at cutover
DB=bench                        # the pgbench database the migration changes
PORT_LIVE=5433 PORT_REH=5434 PORT_CHECK=5435
STEPS=("$HERE"/migration/0*.sql)
LINE='=============================================================================='

# ---------------------------------------------------------------------------
# output helpers

banner() { printf '\n%s\n== %s\n%s\n' "$LINE" "$*" "$LINE"; }
log() { printf '   %s\n' "$*"; }
die() {
	printf '\nrehearse.sh: FAILED: %s\n' "$*" >&2
	exit 1
}
now_ms() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
human() { # bytes -> "12.3 MiB"
	awk -v b="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1;
		while (b >= 1024 && i < 5) { b /= 1024; i++ }
		fmt = (i == 1 ? "%d %s" : "%.1f %s"); printf fmt, b, u[i] }'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
json() { /usr/bin/python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# ---------------------------------------------------------------------------
# preflight: root, tools (apt-get), binaries

[ "$(id -u)" = 0 ] || die "run as root (it mounts file systems and sets up loop devices)"

find_pgbin() {
	if [ -n "${PGBIN:-}" ]; then
		[ -x "$PGBIN/initdb" ] && echo "$PGBIN"
		return 0
	fi
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && [ -x "$d/pgbench" ] && {
			echo "$d"
			return 0
		}
	done
	return 0
}
have() { command -v "$1" >/dev/null 2>&1; }

banner "Preflight: tools and binaries"
pkgs=()
[ -n "$(find_pgbin)" ] || pkgs+=(postgresql postgresql-contrib)
have nbdfuse || pkgs+=(libnbd-bin)
{ have mkfs.ext4 && have dumpe2fs && have filefrag; } || pkgs+=(e2fsprogs)
have fusermount3 || pkgs+=(fuse3)
[ -x /usr/bin/python3 ] || pkgs+=(python3)
{ have losetup && have fsfreeze && have runuser && have setsid; } || pkgs+=(util-linux mount)
if ((${#pkgs[@]})); then
	have apt-get || die "missing ${pkgs[*]} and no apt-get to install them"
	log "installing: ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
PGBIN=$(find_pgbin)
[ -n "$PGBIN" ] || die "no PostgreSQL binaries (initdb, pgbench) found"
id postgres >/dev/null 2>&1 || die "no 'postgres' user (the postgresql package creates it)"
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || die "/dev/fuse is missing: nbdfuse needs FUSE"
losetup -f >/dev/null 2>&1 || modprobe loop 2>/dev/null || true
losetup -f >/dev/null 2>&1 || die "no free loop device (losetup -f failed)"

if [ -z "${CLONEBD_SERVER:-}" ] || [ -z "${CLONEBD_CLI:-}" ]; then
	have cargo || die "set CLONEBD_SERVER and CLONEBD_CLI, or install cargo to build them"
	log "building clonebd (cargo build --release)"
	(cd "$REPO" && cargo build --release --quiet -p clonebd-server -p clonebd-client)
	target=${CARGO_TARGET_DIR:-$REPO/target}
	CLONEBD_SERVER=${CLONEBD_SERVER:-$target/release/clonebd-server}
	CLONEBD_CLI=${CLONEBD_CLI:-$target/release/clonebd}
fi
[ -x "$CLONEBD_SERVER" ] || die "CLONEBD_SERVER=$CLONEBD_SERVER is not executable"
[ -x "$CLONEBD_CLI" ] || die "CLONEBD_CLI=$CLONEBD_CLI is not executable"
log "PostgreSQL: $("$PGBIN/postgres" --version)"
log "clonebd-server: $CLONEBD_SERVER"
log "clonebd CLI:    $CLONEBD_CLI"
log "scales: $SCALE_SMALL (rehearsed database) and $SCALE_BIG (whole cluster); volume $VOLUME_SIZE"

if [ -z "$WORK" ]; then
	WORK=$(mktemp -d /var/tmp/clonebd-rehearsal.XXXXXX)
else
	mkdir -p "$WORK"
fi
WORK=$(cd "$WORK" && pwd)
chmod 755 "$WORK" # postgres must reach the mounts below it
DATA=$WORK/clonebd-data
RUN=$WORK/run   # PostgreSQL sockets (no TCP at all), nbdfuse pid files
LOGS=$WORK/logs # every log; PostgreSQL's under logs/pg
mkdir -p "$DATA" "$RUN" "$LOGS/pg" "$WORK/mnt" "$WORK/fuse"
chown postgres: "$RUN" "$LOGS/pg"
cd "$WORK" # pg_ctl, run as postgres, needs a working directory it can read
log "work directory: $WORK"

# ---------------------------------------------------------------------------
# cleanup: stop postgres, umount, losetup -d, nbdfuse, clonebd (in that order)

declare -A ATT_PID=() ATT_FUSE=() ATT_LOOP=() ATT_MNT=() PG_DIR=()
SERVER_PID="" LOAD_PID="" FROZEN="" STATUS=running

pid_alive() {
	local s
	s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $s != Z* ]]
}

wait_gone() { # pid seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		pid_alive "$1" || break
		sleep 0.1
	done
	! pid_alive "$1"
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	[ -n "$FROZEN" ] && fsfreeze -u "$FROZEN" 2>/dev/null
	if [ -n "$LOAD_PID" ] && pid_alive "$LOAD_PID"; then
		kill "$LOAD_PID" 2>/dev/null
		wait_gone "$LOAD_PID" 10
	fi
	local n
	for n in "${!PG_DIR[@]}"; do
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "${PG_DIR[$n]}" -m fast -w -t 60 stop >/dev/null 2>&1 ||
			runuser -u postgres -- "$PGBIN/pg_ctl" -D "${PG_DIR[$n]}" -m immediate -w -t 30 stop >/dev/null 2>&1
	done
	for n in "${!ATT_MNT[@]}"; do
		mountpoint -q "${ATT_MNT[$n]}" && { timeout 60 umount "${ATT_MNT[$n]}" || umount -l "${ATT_MNT[$n]}"; }
	done
	for n in "${!ATT_LOOP[@]}"; do
		losetup -d "${ATT_LOOP[$n]}" 2>/dev/null
	done
	for n in "${!ATT_FUSE[@]}"; do
		local i
		for i in 1 2 3 4 5 6 7 8 9 10; do
			mountpoint -q "${ATT_FUSE[$n]}" || break
			umount "${ATT_FUSE[$n]}" 2>/dev/null || fusermount3 -u "${ATT_FUSE[$n]}" 2>/dev/null || sleep 0.5
		done
		if ! wait_gone "${ATT_PID[$n]}" 10; then
			kill "${ATT_PID[$n]}" 2>/dev/null
			wait_gone "${ATT_PID[$n]}" 5 || kill -9 "${ATT_PID[$n]}" 2>/dev/null
		fi
		mountpoint -q "${ATT_FUSE[$n]}" && umount -l "${ATT_FUSE[$n]}"
	done
	if [ -n "$SERVER_PID" ] && pid_alive "$SERVER_PID"; then
		kill -TERM "$SERVER_PID"
		wait_gone "$SERVER_PID" 60 || kill -9 "$SERVER_PID"
	fi
	if [ "$rc" != 0 ] || [ "$STATUS" != passed ]; then
		echo
		echo "---- last lines of the logs in $LOGS ----"
		local f
		for f in "$LOGS"/clonebd-server.log "$LOGS"/pg/*.log "$LOGS"/nbdfuse-*.log; do
			[ -s "$f" ] || continue
			echo "--- $f"
			tail -n 15 "$f"
		done
		[ "$rc" != 0 ] || rc=1
	fi
	if [ "$KEEP" = 1 ]; then
		echo "kept $WORK"
	elif [ "$STATUS" = passed ]; then
		rm -rf "$WORK"
	else
		rm -rf "$DATA" # the GiBs; the logs stay for a post-mortem
		echo "logs kept in $LOGS"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# clonebd

cbd() { CLONEBD_TOKEN=$(<"$DATA/admin.token") timeout 300 "$CLONEBD_CLI" --admin "$ADMIN_URL" "$@"; }
cbd_show() { # echo the command as a DBA would type it, then run it
	printf '   $ clonebd %s\n' "$*"
	cbd "$@" | sed 's/^/     /'
	return "${PIPESTATUS[0]}"
}

# Rollback as a DBA does it: clonebd refuses while newer snapshots exist and
# lists them (the step snapshots, and any hourly one the schedule took); delete
# those, roll back. Sets ROLLBACK_LAST_MS to the successful call's time.
rollback_clearing() { # VOLUME@SNAP
	local target=$1 vol=${1%@*} out s t0
	printf '   $ clonebd rollback %s\n' "$target"
	t0=$(now_ms)
	if out=$(cbd rollback "$target" 2>&1); then
		ROLLBACK_LAST_MS=$(($(now_ms) - t0))
		log "  $out"
		return 0
	fi
	log "  $out"
	case $out in
	*"newer than the rollback target:"*) ;;
	*) die "clonebd rollback $target failed: $out" ;;
	esac
	for s in $(sed 's/.*newer than the rollback target: *//' <<<"$out" | tr ',' ' '); do
		cbd_show snapshot delete "$vol@$s"
	done
	printf '   $ clonebd rollback %s\n' "$target"
	t0=$(now_ms)
	out=$(cbd rollback "$target" 2>&1) || die "clonebd rollback $target failed: $out"
	ROLLBACK_LAST_MS=$(($(now_ms) - t0))
	log "  $out"
}

start_server() {
	setsid timeout --signal=TERM --kill-after=30 "$SERVER_LIFETIME" \
		"$CLONEBD_SERVER" --data "$DATA" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
		>"$LOGS/clonebd-server.out" 2>"$LOGS/clonebd-server.log" &
	SERVER_PID=$!
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q '^clonebd-server ready:' "$LOGS/clonebd-server.out" 2>/dev/null && break
		pid_alive "$SERVER_PID" || die "clonebd-server exited before it was ready"
		sleep 0.1
	done
	local ready
	ready=$(grep '^clonebd-server ready:' "$LOGS/clonebd-server.out") || die "clonebd-server not ready after 60 s"
	NBD_ADDR=$(sed -n 's/.* nbd=\([^ ]*\).*/\1/p' <<<"$ready")
	ADMIN_URL=http://$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$ready")
	log "$ready"
}

# ---------------------------------------------------------------------------
# attach an export as a block device: nbdfuse (the export as a file) + losetup.
# A real host runs `nbd-client HOST 10809 /dev/nbd0 -N EXPORT` instead.

attach() { # name export rw|ro
	local name=$1 export=$2 mode=$3
	local fdir=$WORK/fuse/$name pidf=$RUN/nbdfuse-$name.pid ro=()
	[ "$mode" = ro ] && ro=(-r)
	mkdir -p "$fdir"
	rm -f "$pidf"
	setsid nbdfuse "${ro[@]}" -P "$pidf" "$fdir/" "nbd://$NBD_ADDR/$export" \
		>>"$LOGS/nbdfuse-$name.log" 2>&1 &
	ATT_PID[$name]=$! ATT_FUSE[$name]=$fdir
	local i
	for ((i = 0; i < 300; i++)); do
		[ -s "$pidf" ] && [ -e "$fdir/nbd" ] && break
		pid_alive "${ATT_PID[$name]}" || die "nbdfuse could not attach nbd://$NBD_ADDR/$export"
		sleep 0.1
	done
	[ -e "$fdir/nbd" ] || die "nbdfuse did not attach $export within 30 s"
	ATT_LOOP[$name]=$(losetup --direct-io=on "${ro[@]}" -f --show "$fdir/nbd")
}

mount_att() { # name [mount options]
	local name=$1 opts=${2:-defaults}
	local mnt=$WORK/mnt/$name
	mkdir -p "$mnt"
	mount -t ext4 -o "$opts" "${ATT_LOOP[$name]}" "$mnt"
	ATT_MNT[$name]=$mnt
}

detach() { # name: umount, losetup -d, end nbdfuse
	local name=$1 i
	if [ -n "${ATT_MNT[$name]:-}" ]; then
		umount "${ATT_MNT[$name]}"
		unset "ATT_MNT[$name]"
	fi
	if [ -n "${ATT_LOOP[$name]:-}" ]; then
		losetup -d "${ATT_LOOP[$name]}"
		unset "ATT_LOOP[$name]"
	fi
	# the loop device lets go of the file asynchronously: retry
	for ((i = 0; i < 100; i++)); do
		mountpoint -q "${ATT_FUSE[$name]}" || break
		umount "${ATT_FUSE[$name]}" 2>/dev/null || sleep 0.1
	done
	mountpoint -q "${ATT_FUSE[$name]}" && die "could not unmount ${ATT_FUSE[$name]}"
	wait_gone "${ATT_PID[$name]}" 30 || die "nbdfuse for $name did not exit"
	wait "${ATT_PID[$name]}" 2>/dev/null || true
	unset "ATT_FUSE[$name]" "ATT_PID[$name]"
}

# ---------------------------------------------------------------------------
# PostgreSQL: only Unix sockets in $RUN (listen_addresses = ''), one port each

export PGOPTIONS="-c work_mem=256MB"
pg_start() { # name datadir port
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$2" -l "$LOGS/pg/$1.log" -w -t 900 \
		-o "-p $3" start >/dev/null || die "PostgreSQL '$1' did not start (see $LOGS/pg/$1.log)"
	PG_DIR[$1]=$2
}
pg_stop() { # name
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "${PG_DIR[$1]}" -m fast -w -t 600 stop >/dev/null
	unset "PG_DIR[$1]"
}
sql() { # port query (database $DB)
	"$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$RUN" -p "$1" -U postgres -d "$DB" -c "$2"
}
# an array, not a function: a background `pgbench &` must be pgbench itself,
# so that its PID in $! is the one to stop
PGBENCH=("$PGBIN/pgbench" -h "$RUN" -U postgres)
tps_of() { sed -n 's/^tps = \([0-9]*\)[.0-9]* .*/\1/p' "$1" | tail -n 1; }

# Crash-consistent start on a clone: postmaster.pid holds the PID of the
# PostgreSQL that wrote the data, still running on this machine, and a
# postmaster refuses to start while that PID is alive. On another host it is
# usually ignored (unless some process there has that PID). Removing it is
# right on a clone, and never on a data directory a server may be using.
pg_start_clone() { # name datadir port
	rm -f "$2/postmaster.pid"
	pg_start "$@"
}

# Quiesce for a snapshot that will be mounted read-only: CHECKPOINT writes the
# dirty pages, fsfreeze flushes ext4 and checkpoints its journal, so the image
# is clean (`mount -o ro,noload` reads it as is). clonebd's snapshot commits
# every acknowledged write first, like a FLUSH, so freezing is not needed for
# crash consistency, only for a clean read-only mount.
snapshot_frozen() { # port mount volume snapname
	sql "$1" "CHECKPOINT" >/dev/null
	sync -f "$2"
	FROZEN=$2
	fsfreeze -f "$2"
	local rc=0
	cbd snapshot create "$3" --name "$4" >/dev/null || rc=$?
	fsfreeze -u "$2"
	FROZEN=""
	[ "$rc" = 0 ] || die "clonebd snapshot create $3 --name $4 failed"
}

# The non-migrated part of the data, as one line: row counts and checksums.
state_of() { # port
	sql "$1" "SELECT concat_ws(' ',
	  'accounts=' || (SELECT count(*) FROM pgbench_accounts),
	  'history=' || (SELECT count(*) FROM pgbench_history),
	  'tellers=' || (SELECT count(*) FROM pgbench_tellers),
	  'branches=' || (SELECT count(*) FROM pgbench_branches),
	  'balances_md5=' || (SELECT md5(string_agg(h, '' ORDER BY bid)) FROM (
	     SELECT bid, md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) AS h
	     FROM pgbench_accounts GROUP BY bid) s),
	  'history_md5=' || (SELECT md5(coalesce(string_agg(concat_ws(':', tid, bid, aid, delta, mtime), ','
	     ORDER BY mtime, tid, bid, aid, delta), '')) FROM pgbench_history),
	  'tellers_md5=' || (SELECT md5(string_agg(tid || ':' || tbalance, ',' ORDER BY tid)) FROM pgbench_tellers),
	  'branches_md5=' || (SELECT md5(string_agg(bid || ':' || bbalance, ',' ORDER BY bid)) FROM pgbench_branches))"
}
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# The invariants every migration step must keep: no account flagged overdrawn
# without a negative balance, and balances unchanged. Prints `FLAGGED BALANCES_MD5`.
step_check() { # port
	local has
	has=$(sql "$1" "SELECT count(*) FROM information_schema.columns
	  WHERE table_name = 'pgbench_accounts' AND column_name = 'status'")
	local flagged=0
	[ "$has" = 1 ] && flagged=$(sql "$1" "SELECT count(*) FROM pgbench_accounts
	  WHERE status = 'overdrawn' AND abalance >= 0")
	echo "$flagged $(field "$(state_of "$1")" balances_md5)"
}

# What the finished migration must look like. Prints a verdict line.
validate() { # port baseline_balances_md5
	local v
	v=$(sql "$1" "SELECT concat_ws(' ',
	  (SELECT count(*) FROM schema_migrations),
	  (SELECT count(*) FROM pgbench_accounts WHERE status = 'overdrawn' AND abalance >= 0),
	  (SELECT count(*) FROM pgbench_accounts WHERE status <> 'overdrawn' AND abalance < 0),
	  (SELECT count(*) FROM pgbench_accounts WHERE status = 'overdrawn'))")
	local steps wrong missed flagged md5
	read -r steps wrong missed flagged <<<"$v"
	md5=$(field "$(state_of "$1")" balances_md5)
	if [ "$steps" = "${#STEPS[@]}" ] && [ "$wrong" = 0 ] && [ "$missed" = 0 ] && [ "$md5" = "$2" ]; then
		echo "VALIDATION PASSED: ${#STEPS[@]} steps applied, $flagged overdrawn accounts flagged, none wrongly, balances unchanged"
	else
		local bal=unchanged
		[ "$md5" = "$2" ] || bal=CHANGED
		echo "VALIDATION FAILED: $steps steps applied, $wrong accounts wrongly flagged overdrawn, $missed overdrawn accounts missed, balances $bal"
	fi
}

run_step() { # port file
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$1" -U postgres -d "$DB" -f "$2" >/dev/null
}

# ===========================================================================
banner "0. Live: a clonebd volume with ext4 and PostgreSQL on it"
start_server
cbd_show volume create "$VOL" --size "$VOLUME_SIZE"
attach live "$VOL" rw
log "attached nbd://$NBD_ADDR/$VOL as ${ATT_LOOP[live]} (nbdfuse + losetup --direct-io=on)"
# nodiscard and lazy init: a fresh clonebd volume reads as zeros, so nothing
# needs writing up front (and noinit_itable stops the background zeroing).
mkfs.ext4 -q -F -m 0 -i 65536 -L "$VOL" -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 "${ATT_LOOP[live]}"
mount_att live noinit_itable
PGDATA_REL=pgdata
LIVE_DATA=${ATT_MNT[live]}/$PGDATA_REL
install -d -o postgres -g postgres -m 700 "$LIVE_DATA"
runuser -u postgres -- "$PGBIN/initdb" -D "$LIVE_DATA" -U postgres -A trust -E UTF8 --locale=C \
	--no-instructions >"$LOGS/initdb.log" 2>&1 || die "initdb failed (see $LOGS/initdb.log)"
cat >>"$LIVE_DATA/postgresql.conf" <<EOF

# clonebd rehearsal: Unix sockets only, in a private directory
listen_addresses = ''
unix_socket_directories = '$RUN'
max_wal_size = 2GB
# durability as in production: the crash-consistency story depends on it
fsync = on
full_page_writes = on
EOF
pg_start live "$LIVE_DATA" "$PORT_LIVE"
log "PostgreSQL 'live' on ${ATT_MNT[live]} (socket $RUN, port $PORT_LIVE)"
"$PGBIN/createdb" -h "$RUN" -p "$PORT_LIVE" -U postgres "$DB"
t0=$(now_ms)
"${PGBENCH[@]}" -p "$PORT_LIVE" -i -q -s "$SCALE_SMALL" -I dtGvp "$DB" >"$LOGS/pgbench-init-$DB.log" 2>&1 ||
	die "pgbench -i failed (see $LOGS/pgbench-init-$DB.log)"
log "loaded pgbench scale $SCALE_SMALL into '$DB' in $(secs $(($(now_ms) - t0))) s"

cluster_bytes() { sql "$PORT_LIVE" "SELECT sum(pg_database_size(datname)) FROM pg_database"; }
written_bytes() { cbd volume show "$VOL" --json | json 'd["written_bytes"]'; }

# Time snapshot + clone through the CLI, as a DBA runs them: N samples, each
# clone and snapshot deleted again. Sets CLONE_MS (median) and CLONE_ALL.
time_clones() { # label
	local i t0 t1 t2 all=() split=()
	# start from a quiet state: PostgreSQL's dirty pages written, ext4 flushed
	sql "$PORT_LIVE" "CHECKPOINT" >/dev/null
	sync -f "${ATT_MNT[live]}"
	cbd snapshot create "$VOL" --name "t-$1-0" >/dev/null # and nothing pending in clonebd
	cbd snapshot delete "$VOL@t-$1-0" >/dev/null
	sleep 1
	for ((i = 1; i <= SAMPLES; i++)); do
		t0=$(now_ms)
		cbd snapshot create "$VOL" --name "t-$1-$i" >/dev/null
		t1=$(now_ms)
		cbd clone create "$VOL@t-$1-$i" "t-$1-$i" >/dev/null
		t2=$(now_ms)
		all+=($((t2 - t0)))
		split+=("$((t1 - t0))+$((t2 - t1))")
		cbd volume delete "t-$1-$i" >/dev/null
		cbd snapshot delete "$VOL@t-$1-$i" >/dev/null
	done
	CLONE_ALL="${split[*]}"
	CLONE_MS=$(echo "${all[*]}" | median)
	CLONE_MIN=$(echo "${all[*]}" | tr ' ' '\n' | sort -n | head -n 1)
}

SIZE1=$(cluster_bytes)
time_clones small
CLONE_SMALL=$CLONE_MS MIN_SMALL=$CLONE_MIN WRITTEN1=$(written_bytes)
log "TIMING clone creation with the database at $(human "$SIZE1") ($(human "$WRITTEN1") written to $VOL):" \
	"median ${CLONE_SMALL} ms, min $CLONE_MIN ms; samples (snapshot+clone): $CLONE_ALL ms"

"$PGBIN/createdb" -h "$RUN" -p "$PORT_LIVE" -U postgres archive
t0=$(now_ms)
"${PGBENCH[@]}" -p "$PORT_LIVE" -i -q -s $((SCALE_BIG - SCALE_SMALL)) -I dtGvp archive >"$LOGS/pgbench-init-archive.log" 2>&1 ||
	die "pgbench -i (archive) failed (see $LOGS/pgbench-init-archive.log)"
log "loaded pgbench scale $((SCALE_BIG - SCALE_SMALL)) into 'archive' in $(secs $(($(now_ms) - t0))) s"
SIZE2=$(cluster_bytes)
time_clones big
CLONE_BIG=$CLONE_MS MIN_BIG=$CLONE_MIN WRITTEN2=$(written_bytes)
log "TIMING clone creation with the database at $(human "$SIZE2") ($(human "$WRITTEN2") written to $VOL):" \
	"median ${CLONE_BIG} ms, min $CLONE_MIN ms; samples (snapshot+clone): $CLONE_ALL ms"
RATIO=$(awk -v a="$CLONE_SMALL" -v b="$CLONE_BIG" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 1) }')
RATIO_MIN=$(awk -v a="$MIN_SMALL" -v b="$MIN_BIG" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 1) }')
RATIO_OK=$(awk -v r="$RATIO" 'BEGIN { print (r <= 1.5 ? "within the 1.5 target" : "ABOVE the 1.5 target") }')
log "TIMING clone creation ratio $(human "$SIZE2") / $(human "$SIZE1"): $RATIO of the medians ($RATIO_OK), $RATIO_MIN of the minimums"

# ===========================================================================
banner "1. Clone live while pgbench runs on it; PostgreSQL recovers on the clone"
"${PGBENCH[@]}" -p "$PORT_LIVE" -n -c "$CLIENTS" -j 2 -T 5 "$DB" >"$LOGS/pgbench-warmup.log" 2>&1 ||
	die "pgbench failed (see $LOGS/pgbench-warmup.log)"
log "pgbench: $CLIENTS clients, $PGBENCH_SECONDS s, no cloning (after a 5 s warm-up)"
"${PGBENCH[@]}" -p "$PORT_LIVE" -n -c "$CLIENTS" -j 2 -T "$PGBENCH_SECONDS" "$DB" >"$LOGS/pgbench-before.log" 2>&1 ||
	die "pgbench failed (see $LOGS/pgbench-before.log)"
TPS_BEFORE=$(tps_of "$LOGS/pgbench-before.log")
log "TIMING pgbench on live before cloning: $TPS_BEFORE tps"

log "pgbench again, and meanwhile 4 snapshots + clones of the running database"
"${PGBENCH[@]}" -p "$PORT_LIVE" -n -c "$CLIENTS" -j 2 -T "$PGBENCH_SECONDS" "$DB" >"$LOGS/pgbench-during.log" 2>&1 &
BENCH_PID=$!
LOAD_PID=$BENCH_PID # for cleanup, until it ends
gap=$(awk -v t="$PGBENCH_SECONDS" 'BEGIN { printf "%.2f", t / 6 }')
load_ms=()
for i in 1 2 3 4; do
	sleep "$gap"
	if ((i < 4)); then snap=load-$i clone=load-$i; else snap=rehearsal-base clone=$REH; fi
	t0=$(now_ms)
	cbd snapshot create "$VOL" --name "$snap" >/dev/null
	cbd clone create "$VOL@$snap" "$clone" >/dev/null
	load_ms+=($(($(now_ms) - t0)))
done
wait "$BENCH_PID" || die "pgbench failed (see $LOGS/pgbench-during.log)"
LOAD_PID=""
TPS_DURING=$(tps_of "$LOGS/pgbench-during.log")
CLONE_LOAD=$(echo "${load_ms[*]}" | median)
for i in 1 2 3; do
	cbd volume delete "load-$i" >/dev/null
	cbd snapshot delete "$VOL@load-$i" >/dev/null
done
log "TIMING snapshot + clone of the running database: ${load_ms[*]} ms (median $CLONE_LOAD ms)"
log "TIMING pgbench on live during cloning: $TPS_DURING tps (before: $TPS_BEFORE tps)"
log "the rehearsal clone: $VOL@rehearsal-base -> $REH"

# The "second host": the clone attached and mounted apart from live.
attach rehearsal "$REH" rw
if dumpe2fs -h "${ATT_LOOP[rehearsal]}" 2>/dev/null | grep -q needs_recovery; then
	log "ext4 on the clone: needs_recovery set (captured mid-flight); a read-write mount replays its journal"
else
	log "ext4 on the clone: clean"
fi
mount_att rehearsal
REH_DATA=${ATT_MNT[rehearsal]}/$PGDATA_REL
state=$("$PGBIN/pg_controldata" -D "$REH_DATA" | sed -n 's/^Database cluster state: *//p')
log "pg_controldata on the clone: cluster state '$state' (not shut down: crash recovery ahead)"
pg_start_clone rehearsal "$REH_DATA" "$PORT_REH"
grep -q 'automatic recovery in progress' "$LOGS/pg/rehearsal.log" ||
	die "PostgreSQL on the clone did not run crash recovery (see $LOGS/pg/rehearsal.log)"
redo=$(grep -oE 'redo (starts|done) at [0-9A-F]+/[0-9A-F]+' "$LOGS/pg/rehearsal.log" | paste -sd ',' | sed 's/,/, /')
log "CLONE RECOVERED: PostgreSQL replayed its WAL on the clone (${redo:-no WAL to redo}) and accepts connections on port $PORT_REH"
read -r a b t h n <<<"$(sql "$PORT_REH" "SELECT concat_ws(' ',
  (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),
  (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
  (SELECT count(*) FROM pgbench_history))")"
[ "$a" = "$b" ] && [ "$a" = "$t" ] && [ "$a" = "$h" ] ||
	die "clone inconsistent: sum(abalance)=$a sum(bbalance)=$b sum(tbalance)=$t sum(delta)=$h"
log "CLONE CONSISTENT: sum(abalance) = sum(bbalance) = sum(tbalance) = sum(history.delta) = $a over $n committed transactions"
log "live meanwhile: $(sql "$PORT_LIVE" "SELECT count(*) FROM pgbench_history") transactions in its history"

if ((LIVE_RATE > 0)); then
	"${PGBENCH[@]}" -p "$PORT_LIVE" -n -c 2 -j 1 -R "$LIVE_RATE" -T 36000 "$DB" >"$LOGS/pgbench-live.log" 2>&1 &
	LOAD_PID=$!
	log "live keeps serving: pgbench at $LIVE_RATE tps until the cutover"
fi

# ===========================================================================
banner "2. Rehearse the migration on the clone, with a snapshot after each step"
BASE_MD5=$(field "$(state_of "$PORT_REH")" balances_md5)
snapshot_frozen "$PORT_REH" "${ATT_MNT[rehearsal]}" "$REH" step-0
log "$REH@step-0: before the migration"
for ((i = 1; i <= ${#STEPS[@]}; i++)); do
	f=${STEPS[$((i - 1))]}
	t0=$(now_ms)
	run_step "$PORT_REH" "$f" || die "step $i ($(basename "$f")) failed"
	snapshot_frozen "$PORT_REH" "${ATT_MNT[rehearsal]}" "$REH" "step-$i"
	log "step $i $(basename "$f"): $(secs $(($(now_ms) - t0))) s, snapshot $REH@step-$i"
done
verdict=$(validate "$PORT_REH" "$BASE_MD5")
log "$verdict"
case $verdict in
VALIDATION\ FAILED*) ;;
*) die "the deliberately bad step went unnoticed" ;;
esac

banner "2b. Find the step that broke it: clonebd diff and a check of each step snapshot"
log "for each step: the bytes it changed (clonebd diff), the files they belong to (the"
log "snapshot mounted read-only: mount -o ro,noload + filefrag), and the invariants"
log "(a throwaway clone of the snapshot with its own PostgreSQL: no account flagged"
log "overdrawn without a negative balance, balances unchanged)"
BAD=""
for ((i = 1; i <= ${#STEPS[@]}; i++)); do
	step=$(basename "${STEPS[$((i - 1))]}")
	cbd diff "$REH@step-$((i - 1))" "$REH@step-$i" --json >"$WORK/diff-$i.json"
	changed=$(json 'd["total_bytes"]' <"$WORK/diff-$i.json")
	nranges=$(json 'len(d["ranges"])' <"$WORK/diff-$i.json")
	log ""
	log "\$ clonebd diff $REH@step-$((i - 1)) $REH@step-$i   # $step"
	log "  $(human "$changed") changed in $nranges ranges"

	# the snapshot, read-only: which files hold the changed bytes
	attach snap "$REH@step-$i" ro
	mount_att snap ro,noload
	/usr/bin/python3 "$HERE/lib/diffmap.py" "$WORK/diff-$i.json" "${ATT_MNT[snap]}" "$PGDATA_REL" 5 >"$WORK/diffmap-$i.txt"
	detach snap

	# a throwaway clone of the snapshot: PostgreSQL on it, the invariants
	cbd clone create "$REH@step-$i" "check-$i" >/dev/null
	attach check "check-$i" rw
	mount_att check
	pg_start_clone check "${ATT_MNT[check]}/$PGDATA_REL" "$PORT_CHECK"
	read -r flagged md5 <<<"$(step_check "$PORT_CHECK")"
	dboid=$(sql "$PORT_CHECK" "SELECT oid FROM pg_database WHERE datname = current_database()")
	while IFS=$'\t' read -r bytes key; do
		label=$key
		if [[ $key =~ ^base/([0-9]+)/([0-9]+)$ ]]; then
			if [ "${BASH_REMATCH[1]}" = "$dboid" ]; then
				rel=$(sql "$PORT_CHECK" "SELECT pg_filenode_relation(0, ${BASH_REMATCH[2]})::regclass")
				label="${rel:-relation ${BASH_REMATCH[2]}} ($key)"
			else
				label="another database ($key)"
			fi
		elif [ "$key" = pg_wal ]; then
			label="pg_wal (write-ahead log)"
		fi
		log "    $(printf '%10s' "$(human "$bytes")")  $label"
	done <"$WORK/diffmap-$i.txt"
	pg_stop check
	detach check
	cbd volume delete "check-$i" >/dev/null

	balances=unchanged
	[ "$md5" = "$BASE_MD5" ] || balances=CHANGED
	if [ "$flagged" = 0 ] && [ "$balances" = unchanged ]; then
		log "  check: ok (no account wrongly flagged, balances unchanged)"
	else
		log "  check: BROKEN ($flagged accounts wrongly flagged overdrawn, balances $balances)"
		if [ -z "$BAD" ]; then
			BAD=$i BAD_DESC="$flagged accounts wrongly flagged overdrawn, balances $balances, $(human "$changed") changed"
		fi
	fi
done
[ -n "$BAD" ] || die "no step snapshot shows the bad change"
BAD_FILE=$(basename "${STEPS[$((BAD - 1))]}")
echo
log "BAD CHANGE LANDED IN STEP $BAD ($BAD_FILE): between $REH@step-$((BAD - 1)) and $REH@step-$BAD: $BAD_DESC"

# ===========================================================================
banner "3. Roll the clone back to step-$((BAD - 1)), fix step $BAD, finish the migration"
pg_stop rehearsal
detach rehearsal
log "PostgreSQL stopped and the clone detached; rollback needs the newer snapshots gone:"
rollback_clearing "$REH@step-$((BAD - 1))"
ROLLBACK_CLONE_MS=$ROLLBACK_LAST_MS
log "ROLLED BACK $REH TO $REH@step-$((BAD - 1)) in $ROLLBACK_CLONE_MS ms"
attach rehearsal "$REH" rw
mount_att rehearsal
pg_start_clone rehearsal "$REH_DATA" "$PORT_REH"
applied=$(sql "$PORT_REH" "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations")
[ "$applied" = "$(seq -s, 1 $((BAD - 1)))" ] || die "after the rollback schema_migrations holds '$applied'"
log "after the rollback: schema_migrations holds steps $applied"
FIXED=("${STEPS[@]}")
fix=$HERE/migration/fixed/$BAD_FILE
[ -f "$fix" ] || die "no fixed version of $BAD_FILE in migration/fixed/"
FIXED[$((BAD - 1))]=$fix
for ((i = BAD; i <= ${#FIXED[@]}; i++)); do
	f=${FIXED[$((i - 1))]}
	run_step "$PORT_REH" "$f" || die "step $i ($f) failed"
	snapshot_frozen "$PORT_REH" "${ATT_MNT[rehearsal]}" "$REH" "step-$i"
	changed=$(cbd diff "$REH@step-$((i - 1))" "$REH@step-$i" --json | json 'd["total_bytes"]')
	log "step $i ${f#"$HERE"/migration/}: snapshot $REH@step-$i, $(human "$changed") changed"
done
verdict=$(validate "$PORT_REH" "$BASE_MD5")
log "$verdict"
case $verdict in VALIDATION\ PASSED*) ;; *) die "the fixed migration does not validate" ;; esac
pg_stop rehearsal
detach rehearsal
log "the rehearsed migration: $(for f in "${FIXED[@]}"; do printf '%s ' "${f#"$HERE"/migration/}"; done)"

# ===========================================================================
banner "4. Cutover: stop live, final snapshot, clone, migrate, promote"
if [ -n "$LOAD_PID" ]; then
	kill "$LOAD_PID" 2>/dev/null || true
	wait "$LOAD_PID" 2>/dev/null || true
	LOAD_PID=""
	# a COMMIT the client sent just before it died still completes: wait
	# for its backend to finish before reading the last state
	for ((i = 0; i < 600; i++)); do
		[ "$(sql "$PORT_LIVE" "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		  AND backend_type = 'client backend' AND pid <> pg_backend_pid()")" = 0 ] && break
		sleep 0.1
	done
	log "live load stopped"
fi
LIVE_STATE=$(state_of "$PORT_LIVE")
log "live, last state: $(cut -d' ' -f1-4 <<<"$LIVE_STATE")"
T_STOP=$(now_ms)
pg_stop live
detach live
log "live PostgreSQL stopped, $VOL unmounted and detached (the downtime starts)"
cbd_show snapshot create "$VOL" --name cutover
cbd_show clone create "$VOL@cutover" "$NEXT"
cbd_show snapshot create "$NEXT" --name pre-migration
attach next "$NEXT" rw
mount_att next
pg_start next "${ATT_MNT[next]}/$PGDATA_REL" "$PORT_LIVE"
t0=$(now_ms)
for f in "${FIXED[@]}"; do
	run_step "$PORT_LIVE" "$f" || die "cutover step $f failed"
done
MIGRATE_MS=$(($(now_ms) - t0))
log "rehearsed migration applied to $NEXT in $(secs "$MIGRATE_MS") s"
verdict=$(validate "$PORT_LIVE" "$(field "$LIVE_STATE" balances_md5)")
log "$verdict"
case $verdict in
VALIDATION\ PASSED*) ;;
*) die "the migration did not validate at cutover: live had '$LIVE_STATE', $NEXT has '$(state_of "$PORT_LIVE")'" ;;
esac
pg_stop next
detach next
t0=$(now_ms)
printf '   $ clonebd promote %s\n' "$NEXT"
promote_out=$(cbd promote "$NEXT")
PROMOTE_MS=$(($(now_ms) - t0))
log "  $promote_out"
ROLLBACK_VOL=$(sed -n 's/.* kept as \([^ ]*\).*/\1/p' <<<"$promote_out")
if [ -z "$ROLLBACK_VOL" ]; then
	ROLLBACK_VOL=$(cbd volume list --json | json "' '.join(v['name'] for v in d if v['name'].startswith('$VOL-pre-promote'))")
fi
[ -n "$ROLLBACK_VOL" ] || die "cannot tell the rollback point's name from: $promote_out"
attach live "$VOL" rw
mount_att live
pg_start live "$LIVE_DATA" "$PORT_LIVE"
DOWNTIME_MS=$(($(now_ms) - T_STOP))
log "TIMING promote: $PROMOTE_MS ms; downtime from live stop to upgraded live serving: $(secs "$DOWNTIME_MS") s (migration $(secs "$MIGRATE_MS") s)"
NEW_STATE=$(state_of "$PORT_LIVE")
applied=$(sql "$PORT_LIVE" "SELECT count(*) FROM schema_migrations")
[ "$applied" = "${#STEPS[@]}" ] || die "the promoted $VOL has $applied migration steps, not ${#STEPS[@]}"
if [ "$(cut -d' ' -f1-4 <<<"$NEW_STATE")" = "$(cut -d' ' -f1-4 <<<"$LIVE_STATE")" ]; then
	log "ROWS MATCH: $(cut -d' ' -f1-4 <<<"$NEW_STATE") (every row live had at its stop)"
else
	die "row counts differ: live had '$LIVE_STATE', the promoted $VOL has '$NEW_STATE'"
fi
[ "$NEW_STATE" = "$LIVE_STATE" ] || die "checksums differ: live had '$LIVE_STATE', the promoted $VOL has '$NEW_STATE'"
log "CHECKSUMS MATCH: balances $(field "$NEW_STATE" balances_md5), history $(field "$NEW_STATE" history_md5)"
log "$VOL now serves the upgraded database (schema_migrations: $applied steps)"

banner "4b. The rollback point, and rolling the cutover back"
cbd_show volume list
log "ROLLBACK POINT: $ROLLBACK_VOL (the old $VOL, untouched; its snapshot $ROLLBACK_VOL@cutover is the live state at the stop)"
attach rbpoint "$ROLLBACK_VOL@cutover" ro
mount_att rbpoint ro,noload
state=$("$PGBIN/pg_controldata" -D "${ATT_MNT[rbpoint]}/$PGDATA_REL" | sed -n 's/^Database cluster state: *//p')
log "$ROLLBACK_VOL@cutover mounted read-only: cluster state '$state'"
detach rbpoint
log "the upgrade misbehaves in production: roll back to the pre-migration snapshot"
T_RB=$(now_ms)
pg_stop live
detach live
rollback_clearing "$VOL@pre-migration"
ROLLBACK_MS=$ROLLBACK_LAST_MS
attach live "$VOL" rw
mount_att live
pg_start live "$LIVE_DATA" "$PORT_LIVE"
ROLLBACK_TOTAL_MS=$(($(now_ms) - T_RB))
has=$(sql "$PORT_LIVE" "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'")
[ "$has" = 0 ] || die "after the rollback $VOL still has the migration"
RB_STATE=$(state_of "$PORT_LIVE")
[ "$RB_STATE" = "$LIVE_STATE" ] || die "after the rollback: '$RB_STATE', live had '$LIVE_STATE'"
log "ROLLBACK OK: $VOL is the pre-upgrade database again, rows and checksums as at the stop ($(cut -d' ' -f1-2 <<<"$RB_STATE"))"
log "TIMING rollback: clonebd rollback $ROLLBACK_MS ms; stop to serving again $(secs "$ROLLBACK_TOTAL_MS") s"
pg_stop live
detach live

# ===========================================================================
banner "Summary"
cat <<EOF
   database sizes          : $(human "$SIZE1") (bench, scale $SCALE_SMALL) and $(human "$SIZE2") (+ archive, scale $((SCALE_BIG - SCALE_SMALL)))
   clone creation          : ${CLONE_SMALL} ms at $(human "$SIZE1"), ${CLONE_BIG} ms at $(human "$SIZE2"): ratio $RATIO ($RATIO_OK)
                             (median of $SAMPLES, snapshot + clone through the CLI, process start included;
                             minimums $MIN_SMALL and $MIN_BIG ms: ratio $RATIO_MIN)
   clone under pgbench load: median $CLONE_LOAD ms (${load_ms[*]} ms)
   pgbench TPS on live     : $TPS_BEFORE before cloning, $TPS_DURING during cloning ($CLIENTS clients, $PGBENCH_SECONDS s each)
   bad step found          : step $BAD ($BAD_FILE); clone rolled back in $ROLLBACK_CLONE_MS ms
   cutover                 : promote $PROMOTE_MS ms; downtime $(secs "$DOWNTIME_MS") s (migration $(secs "$MIGRATE_MS") s)
   rollback of the cutover : clonebd rollback $ROLLBACK_MS ms; $(secs "$ROLLBACK_TOTAL_MS") s stop to serving
   rollback point kept     : $ROLLBACK_VOL
EOF
STATUS=passed
echo
echo "REHEARSAL PASSED"

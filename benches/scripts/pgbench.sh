#!/usr/bin/env bash
# pgbench end to end, as a DBA sees it: PostgreSQL on ext4 on an NBD export
# attached as a block device (nbdfuse + losetup --direct-io=on; a real host
# would use nbd-client), for four exports, same machine, same run:
#
#   clonebd-live   a clonebd thin volume; mkfs, initdb, pgbench -i, a
#                  snapshot `pg@init`, measured: every first write into one
#                  of its chunks copies the chunk (as in the first minutes
#                  after an hourly snapshot)
#   clonebd-nosnap a volume holding the same data with no snapshot of its
#                  own (a clone of pg@init, flattened: it owns every chunk),
#                  measured: a live volume between snapshots, and the
#                  like-for-like with a raw file
#   clonebd-clone  a clone of pg@init, measured
#   qemu-raw       qemu-nbd -f raw on a sparse raw file; mkfs, initdb,
#                  pgbench -i, measured
#   qemu-qcow2     qemu-nbd on a fresh qcow2 overlay whose backing file is a
#                  copy of that raw file taken right after pgbench -i, measured
#
# Every measured run starts from the post-init state (the live volume rolled
# back to its snapshot, a new flattened clone, a new clone, the raw file
# copied back, a new overlay),
# after a `sync`, from a fresh mount (cold ext4 cache) and a fresh postmaster,
# then runs `pgbench -c CLIENTS -j JOBS -T SECONDS` (TPC-B-like). ROUNDS
# rounds, the order reversed every other round (the machine drifts: whoever
# runs first would otherwise always run first); the table has the median TPS
# and each round's.
# qemu-nbd runs as `-t --cache=writeback --aio=threads`. Prints a TPS table
# (format in benches/README.md); progress goes to stderr.
#
# The attach/detach/cleanup approach follows examples/upgrade-rehearsal/
# rehearse.sh (which has no sourceable library).
#
# Environment (all optional):
#   SCALE=20 SECONDS_RUN=30 CLIENTS=4 JOBS=2   pgbench -s / -T / -c / -j
#   ROUNDS=2         measured rounds (each export once per round)
#   CHUNK_SIZE=64K   chunk size of the clonebd volume (the server's default;
#                    16K copies less per first write after a snapshot but
#                    measured slower: BENCHMARKS.md, pgbench section)
#   VOLSIZE=4G       size of every export (thin / sparse)
#   TARGETS="clonebd-live clonebd-nosnap clonebd-clone qemu-raw qemu-qcow2"
#                    (a subset works, but clonebd-nosnap and clonebd-clone need
#                    clonebd-live, and qemu-qcow2 needs qemu-raw)
#   WORKDIR=/var/tmp/clonebd-pgbench.XXXXXX  (deleted at the end unless KEEP=1)
#   CLONEBD_SERVER CLONEBD_CLI   binaries (default: cargo build --release here)
#   PGBIN=/usr/lib/postgresql/15/bin
# Needs root (mount, losetup). Installs postgresql, libnbd-bin, qemu-utils,
# fuse3, e2fsprogs with apt-get if missing.
set -euo pipefail
export PATH=/usr/sbin:/sbin:$PATH

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
. "$root/benches/scripts/lib.sh"
SCALE=${SCALE:-20}
SECONDS_RUN=${SECONDS_RUN:-30}
CLIENTS=${CLIENTS:-4}
JOBS=${JOBS:-2}
VOLSIZE=${VOLSIZE:-4G}
ROUNDS=${ROUNDS:-2}
CHUNK_SIZE=${CHUNK_SIZE:-64K}
ALL_TARGETS="clonebd-live clonebd-nosnap clonebd-clone qemu-raw qemu-qcow2"
TARGETS=${TARGETS:-$ALL_TARGETS}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
KEEP=${KEEP:-0}

say() { printf '%s\n' "$*" >&2; }
die() {
	say "pgbench.sh: FAILED: $*"
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

[[ $(id -u) == 0 ]] || die "run as root (mount, losetup)"
for t in clonebd-nosnap clonebd-clone; do
	has_target $t && ! has_target clonebd-live && die "$t needs clonebd-live in TARGETS"
done
has_target qemu-qcow2 && ! has_target qemu-raw && die "qemu-qcow2 needs qemu-raw in TARGETS"
size_bytes=$(numfmt --from=iec "${VOLSIZE%B}") || die "bad VOLSIZE=$VOLSIZE"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "bad ROUNDS=$ROUNDS"

pkgs=()
[[ -x $PGBIN/initdb && -x $PGBIN/pgbench ]] || pkgs+=(postgresql-15 postgresql-contrib)
have nbdfuse || pkgs+=(libnbd-bin)
have qemu-nbd || pkgs+=(qemu-utils)
have fusermount3 || pkgs+=(fuse3)
have mkfs.ext4 || pkgs+=(e2fsprogs)
if ((${#pkgs[@]})); then
	say "installing: ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
[[ -x $PGBIN/initdb ]] || die "no PostgreSQL 15 in $PGBIN"
id postgres >/dev/null 2>&1 || die "no 'postgres' user"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"

if [[ -z ${CLONEBD_SERVER:-} || -z ${CLONEBD_CLI:-} ]]; then
	say "building release binaries"
	cargo build --release -q --manifest-path "$root/Cargo.toml" -p clonebd-server -p clonebd-client
	tdir=${CARGO_TARGET_DIR:-$root/target}/release
	CLONEBD_SERVER=${CLONEBD_SERVER:-$tdir/clonebd-server}
	CLONEBD_CLI=${CLONEBD_CLI:-$tdir/clonebd}
fi
CLONEBD_SERVER=$(realpath "$CLONEBD_SERVER") CLONEBD_CLI=$(realpath "$CLONEBD_CLI")

if [[ -n ${WORKDIR:-} ]]; then
	mkdir -p "$WORKDIR"
else
	WORKDIR=$(mktemp -d /var/tmp/clonebd-pgbench.XXXXXX)
fi
work=$(cd "$WORKDIR" && pwd)
chmod 755 "$work" # postgres must reach the mounts below it
RUN=$work/run LOGS=$work/logs
mkdir -p "$RUN" "$LOGS/pg" "$work/mnt" "$work/fuse" "$work/images"
chown postgres: "$RUN" "$LOGS/pg"
cd "$work" # pg_ctl, run as postgres, needs a readable working directory

# --- cleanup: postgres, umount, losetup -d, nbdfuse, NBD servers (by PID)
PG_DATA="" MNT="" LOOP="" FUSE_DIR="" FUSE_PID="" NBD_PID="" SERVER_PID=""
pid_alive() {
	local s
	s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $s != Z* ]]
}
wait_gone() { # pid seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		pid_alive "$1" || return 0
		sleep 0.1
	done
	! pid_alive "$1"
}
stop_pid() { # pid
	[[ -n $1 ]] && pid_alive "$1" || return 0
	kill -TERM "$1" 2>/dev/null
	wait_gone "$1" 30 || kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null || true
}
pg_stop() {
	[[ -n $PG_DATA ]] || return 0
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 120 stop >/dev/null 2>&1 ||
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1
	PG_DATA=""
}
detach() { # stop postgres, umount, losetup -d, end nbdfuse
	local i
	pg_stop
	if [[ -n $MNT ]]; then
		mountpoint -q "$MNT" && { timeout 120 umount "$MNT" || umount -l "$MNT"; }
		MNT=""
	fi
	if [[ -n $LOOP ]]; then
		losetup -d "$LOOP" 2>/dev/null
		LOOP=""
	fi
	if [[ -n $FUSE_DIR ]]; then
		# the loop device lets go of the file asynchronously: retry
		for ((i = 0; i < 100; i++)); do
			mountpoint -q "$FUSE_DIR" || break
			umount "$FUSE_DIR" 2>/dev/null || fusermount3 -u "$FUSE_DIR" 2>/dev/null || sleep 0.1
		done
		mountpoint -q "$FUSE_DIR" && umount -l "$FUSE_DIR"
		FUSE_DIR=""
	fi
	if [[ -n $FUSE_PID ]]; then
		wait_gone "$FUSE_PID" 10 || stop_pid "$FUSE_PID"
		wait "$FUSE_PID" 2>/dev/null || true
		FUSE_PID=""
	fi
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	detach
	stop_pid "$NBD_PID"
	stop_pid "$SERVER_PID"
	if ((rc != 0)); then
		say "--- last lines of the logs in $LOGS"
		for f in "$LOGS"/*.log "$LOGS"/*.err "$LOGS"/pg/*.log; do
			[[ -s $f ]] || continue
			say "--- $f"
			tail -n 10 "$f" >&2
		done
	fi
	if [[ $KEEP == 1 ]]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- NBD servers
start_clonebd() {
	start_clonebd_server "$work/clonebd-data" "$LOGS/clonebd.out" "$LOGS/clonebd.err"
}
cbd() { timeout 300 "$CLONEBD_CLI" "$@" >/dev/null; }

start_qemu() { # format image
	local port i
	port=$(free_port)
	setsid qemu-nbd -f "$1" -x vol -b 127.0.0.1 -p "$port" -t --cache=writeback --aio=threads "$2" \
		>"$LOGS/qemu-nbd.log" 2>&1 &
	NBD_PID=$!
	QEMU_URI=nbd://127.0.0.1:$port/vol
	for ((i = 0; i < 300; i++)); do
		nbdinfo --size "$QEMU_URI" >/dev/null 2>&1 && return 0
		pid_alive "$NBD_PID" || die "qemu-nbd exited"
		sleep 0.1
	done
	die "qemu-nbd not ready"
}
stop_qemu() {
	stop_pid "$NBD_PID"
	NBD_PID=""
}

# --- block device: nbdfuse (the export as a file) + losetup, as rehearse.sh
attach() { # name uri
	local fdir=$work/fuse/$1 pidf=$RUN/nbdfuse-$1.pid i
	mkdir -p "$fdir"
	rm -f "$pidf"
	setsid nbdfuse -P "$pidf" "$fdir/" "$2" >>"$LOGS/nbdfuse-$1.log" 2>&1 &
	FUSE_PID=$! FUSE_DIR=$fdir
	for ((i = 0; i < 300; i++)); do
		[[ -s $pidf && -e $fdir/nbd ]] && break
		pid_alive "$FUSE_PID" || die "nbdfuse could not attach $2"
		sleep 0.1
	done
	[[ -e $fdir/nbd ]] || die "nbdfuse did not attach $2 within 30 s"
	LOOP=$(losetup --direct-io=on -f --show "$fdir/nbd")
	MNT=$work/mnt/$1
	mkdir -p "$MNT"
}
mount_loop() { mount -t ext4 -o noinit_itable "$LOOP" "$MNT"; }

# --- PostgreSQL: Unix socket in $RUN only, one port
PGPORT=5439
pg_start() { # datadir
	rm -f "$1/postmaster.pid"
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$1" -l "$LOGS/pg/postgres.log" -w -t 600 \
		-o "-p $PGPORT" start >/dev/null || die "PostgreSQL did not start (see $LOGS/pg/postgres.log)"
	PG_DATA=$1
}
PGBENCH=("$PGBIN/pgbench" -h "$RUN" -p "$PGPORT" -U postgres)

# mkfs, initdb, createdb, pgbench -i; leaves everything stopped and detached
init_db() { # name uri
	attach "$1" "$2"
	mkfs.ext4 -q -F -m 0 -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 "$LOOP"
	mount_loop
	local data=$MNT/pgdata
	install -d -o postgres -g postgres -m 700 "$data"
	runuser -u postgres -- "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
		--no-instructions >"$LOGS/initdb-$1.log" 2>&1 || die "initdb failed"
	cat >>"$data/postgresql.conf" <<-EOF

		listen_addresses = ''
		unix_socket_directories = '$RUN'
		max_wal_size = 2GB
		fsync = on
		full_page_writes = on
	EOF
	pg_start "$data"
	"$PGBIN/createdb" -h "$RUN" -p "$PGPORT" -U postgres bench
	local t0=$SECONDS
	"${PGBENCH[@]}" -i -q -s "$SCALE" bench >"$LOGS/pgbench-init-$1.log" 2>&1 || die "pgbench -i failed"
	say "  $1: pgbench -i -s $SCALE in $((SECONDS - t0)) s"
	"$PGBIN/psql" -X -q -h "$RUN" -p "$PGPORT" -U postgres -d bench -c CHECKPOINT >/dev/null
	detach
}

declare -A TPS=() LAT=() CPU=()
measure() { # name uri server-pid
	sync
	attach "$1" "$2"
	mount_loop
	pg_start "$MNT/pgdata"
	say "  $1: pgbench -c $CLIENTS -j $JOBS -T $SECONDS_RUN"
	local cpu0
	cpu0=$(cpu_ticks "$3")
	"${PGBENCH[@]}" -c "$CLIENTS" -j "$JOBS" -T "$SECONDS_RUN" bench >"$LOGS/pgbench-$1.log" 2>&1 ||
		die "pgbench on $1 failed"
	# the NBD server's CPU per transaction: on a machine that PostgreSQL
	# saturates, what the server takes is what the database does not get
	local tps lat txns cpu
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$LOGS/pgbench-$1.log")
	cpu=$(awk -v t="$(($(cpu_ticks "$3") - cpu0))" -v hz="$(getconf CLK_TCK)" -v n="${txns:-0}" \
		'BEGIN { printf "%.3f", (n > 0 ? t / hz * 1000 / n : 0) }')
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$LOGS/pgbench-$1.log" | tail -n 1)
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$LOGS/pgbench-$1.log" | tail -n 1)
	say "  $1: $tps TPS, server $cpu CPU-ms per transaction"
	TPS[$1]+="$tps " LAT[$1]+="$lat " CPU[$1]+="$cpu "
	detach
}

# --- setup: each export initialised once; rounds start from that state
if has_target clonebd-live; then
	start_clonebd
	say "clonebd: $(grep '^clonebd-server ready:' "$LOGS/clonebd.out")"
	cbd volume create pg --size "$size_bytes" --chunk-size "$CHUNK_SIZE"
	init_db clonebd-init "nbd://$CLONEBD_NBD/pg"
	cbd snapshot create pg --name init
fi
if has_target qemu-raw; then
	raw=$work/images/raw.img base=$work/images/base.img overlay=$work/images/overlay.qcow2
	truncate -s "$size_bytes" "$raw"
	start_qemu raw "$raw"
	say "qemu-nbd: $(qemu-nbd --version | head -n 1)"
	init_db qemu-init "$QEMU_URI"
	stop_qemu
	cp --sparse=always "$raw" "$base"
fi

# one measured run of one export, from the post-init state
run_target() { # name round
	case $1 in
	clonebd-live)
		(($2 == 1)) || cbd rollback pg@init
		measure clonebd-live "nbd://$CLONEBD_NBD/pg" "$SERVER_PID"
		;;
	clonebd-nosnap)
		(($2 == 1)) || cbd volume delete pg-nosnap
		cbd clone create pg@init pg-nosnap
		cbd flatten pg-nosnap
		measure clonebd-nosnap "nbd://$CLONEBD_NBD/pg-nosnap" "$SERVER_PID"
		;;
	clonebd-clone)
		(($2 == 1)) || cbd volume delete pg-clone
		cbd clone create pg@init pg-clone
		measure clonebd-clone "nbd://$CLONEBD_NBD/pg-clone" "$SERVER_PID"
		;;
	qemu-raw)
		cp --sparse=always "$base" "$raw"
		start_qemu raw "$raw"
		measure qemu-raw "$QEMU_URI" "$NBD_PID"
		stop_qemu
		;;
	qemu-qcow2)
		rm -f "$overlay"
		qemu-img create -q -f qcow2 -b "$base" -F raw "$overlay"
		start_qemu qcow2 "$overlay"
		measure qemu-qcow2 "$QEMU_URI" "$NBD_PID"
		stop_qemu
		;;
	esac
}

order=()
for t in $ALL_TARGETS; do
	has_target "$t" && order+=("$t")
done
for ((round = 1; round <= ROUNDS; round++)); do
	say "round $round of $ROUNDS"
	if ((round % 2 == 1)); then
		for ((i = 0; i < ${#order[@]}; i++)); do run_target "${order[i]}" "$round"; done
	else
		for ((i = ${#order[@]} - 1; i >= 0; i--)); do run_target "${order[i]}" "$round"; done
	fi
done
if [[ -n ${SERVER_PID:-} ]]; then
	CLONEBD_HWM=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SERVER_PID/status")
	stop_pid "$SERVER_PID"
	SERVER_PID=""
fi

# --- report
echo "pgbench end to end: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on ext4 on nbdfuse + losetup --direct-io=on"
echo "pgbench -s $SCALE, -c $CLIENTS -j $JOBS -T $SECONDS_RUN; exports $VOLSIZE; clonebd chunk size $CHUNK_SIZE; $ROUNDS rounds"
echo
echo "| export | TPS (median) | each round | latency avg ms (median) | vs qemu-raw | vs qemu-qcow2 | server CPU-ms per transaction (median) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
ratio() { [[ -n ${2:-} ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }' || echo n/a; }
median() { # values [printf format]
	tr ' ' '\n' <<<"$1" | grep . | sort -g |
		awk -v f="${2:-%.1f}" '{ v[NR] = $1 } END { printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A MED=()
for t in "${order[@]}"; do
	[[ -n ${TPS[$t]:-} ]] && MED[$t]=$(median "${TPS[$t]}")
done
for t in "${order[@]}"; do
	[[ -n ${MED[$t]:-} ]] || continue
	each=$(for v in ${TPS[$t]}; do printf '%.1f ' "$v"; done)
	echo "| $t | ${MED[$t]} | ${each% } | $(median "${LAT[$t]}" %.3f) | $(ratio "${MED[$t]}" "${MED[qemu-raw]:-}") | $(ratio "${MED[$t]}" "${MED[qemu-qcow2]:-}") | $(median "${CPU[$t]}" %.3f) |"
done
[[ -n ${CLONEBD_HWM:-} ]] && echo && echo "clonebd-server peak RSS (VmHWM): $((CLONEBD_HWM / 1024)) MiB"
exit 0

#!/usr/bin/env bash
# 20 clones of one snapshot, each under its own random read/write load at
# once, against the same load on ONE volume (issue 5's clone-scaling target).
#
#   1. start the release clonebd-server on ephemeral ports (fresh data dir)
#   2. create volume `origin`, fill it with pseudo-random data (nbdcopy),
#      snapshot it (`origin@golden`), create CLONES clones of the snapshot
#   3. clones phase: one clonebd-load process per clone, all at once
#   4. single phase: the same number of processes on `origin`, each on its
#      own 1/CLONES of it (--offset/--length)
#   5. print per-clone IOPS and p99, the aggregate of each phase, the ratio
#      clones/single (target >= 0.9) and the server's peak RSS (VmHWM,
#      target < 1 GiB)
#
# Every load: --pattern randrw --rwmix-read RWMIX --bs BS --qd QD --duration D.
#
# Environment (all optional):
#   SIZE=2G  DURATION=30  CLONES=20  BS=4k  QD=8  RWMIX=70
#   WORKDIR=/var/tmp/clonebd-clones20.XXXXXX (deleted at the end unless KEEP=1)
#   CLONEBD_SERVER CLONEBD_CLI CLONEBD_LOAD   binaries (default: cargo build
#                                             --release in this repository)
#   JSON=FILE   also write the results as JSON to FILE
# Output: a human-readable report on stdout (format in benches/README.md);
# progress on stderr.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
. "$root/benches/scripts/lib.sh"
SIZE=${SIZE:-2G}
DURATION=${DURATION:-30}
CLONES=${CLONES:-20}
BS=${BS:-4k}
QD=${QD:-8}
RWMIX=${RWMIX:-70}
KEEP=${KEEP:-0}

say() { printf '%s\n' "$*" >&2; }
die() {
	say "clones20.sh: $*"
	exit 1
}
size_bytes=$(numfmt --from=iec "${SIZE%B}") || die "bad SIZE=$SIZE"
((CLONES >= 1)) || die "CLONES must be >= 1"

if [[ -z ${CLONEBD_SERVER:-} || -z ${CLONEBD_CLI:-} || -z ${CLONEBD_LOAD:-} ]]; then
	say "building release binaries"
	cargo build --release -q --manifest-path "$root/Cargo.toml" \
		-p clonebd-server -p clonebd-client -p clonebd-benches --bin clonebd-server --bin clonebd --bin clonebd-load
	tdir=${CARGO_TARGET_DIR:-$root/target}/release
	CLONEBD_SERVER=${CLONEBD_SERVER:-$tdir/clonebd-server}
	CLONEBD_CLI=${CLONEBD_CLI:-$tdir/clonebd}
	CLONEBD_LOAD=${CLONEBD_LOAD:-$tdir/clonebd-load}
fi
for b in "$CLONEBD_SERVER" "$CLONEBD_CLI" "$CLONEBD_LOAD"; do
	[[ -x $b ]] || die "$b is not executable"
done
for t in nbdcopy jq numfmt; do
	command -v "$t" >/dev/null || die "needs $t (apt-get install libnbd-bin jq coreutils)"
done

if [[ -n ${WORKDIR:-} ]]; then
	mkdir -p "$WORKDIR"
else
	WORKDIR=$(mktemp -d /var/tmp/clonebd-clones20.XXXXXX)
fi
work=$WORKDIR

server_pid=""
load_pids=()
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	set +e
	for p in "${load_pids[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${load_pids[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid"
		for _ in $(seq 1 100); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid"
		wait "$server_pid" 2>/dev/null
	fi
	if ((rc != 0)) && [[ -s $work/server.err ]]; then
		say "--- last lines of $work/server.err"
		tail -n 20 "$work/server.err" >&2
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

# --- server (as in target.sh: ephemeral ports, ready line, admin token)
mkdir -p "$work/data" "$work/out"
start_clonebd_server "$work/data" "$work/server.out" "$work/server.err"
server_pid=$SERVER_PID
ready=$CLONEBD_READY
# VmHWM below is read from this PID: it must be the server itself
[[ $(<"/proc/$server_pid/comm") == clonebd-server ]] || die "PID $server_pid is not clonebd-server"
nbd=$CLONEBD_NBD
cbd() { "$CLONEBD_CLI" "$@" >/dev/null; }
hwm_kib() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$server_pid/status"; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$server_pid/status"; }
say "$ready"

# --- origin volume, filled, snapshotted, cloned
cbd volume create origin --size "$size_bytes"
say "filling origin with $SIZE of pseudo-random data"
fill=$work/fill.raw
head -c "$size_bytes" /dev/urandom >"$fill"
t0=$SECONDS
nbdcopy --flush "$fill" "nbd://$nbd/origin"
fill_s=$((SECONDS - t0))
rm -f "$fill"
cbd snapshot create origin --name golden
names=()
for ((i = 1; i <= CLONES; i++)); do
	n=$(printf 'c%02d' "$i")
	cbd clone create origin@golden "$n"
	names+=("$n")
done
hwm_setup=$(hwm_kib)
say "filled in ${fill_s} s; snapshot origin@golden and $CLONES clones created"

# One clonebd-load per index of the arrays exp/off/len, all at once.
run_phase() { # phase
	local phase=$1 i rc=0
	load_pids=()
	for ((i = 0; i < CLONES; i++)); do
		"$CLONEBD_LOAD" --addr "$nbd" --export "${exp[i]}" --offset "${off[i]}" --length "${len[i]}" \
			--pattern randrw --rwmix-read "$RWMIX" --bs "$BS" --qd "$QD" --duration "$DURATION" --json \
			>"$work/out/$phase-$i.json" 2>"$work/out/$phase-$i.err" &
		load_pids+=($!)
	done
	for i in "${!load_pids[@]}"; do
		wait "${load_pids[i]}" || {
			rc=$?
			say "load $phase #$i (${exp[i]}) failed:"
			cat "$work/out/$phase-$i.err" >&2
		}
	done
	load_pids=()
	((rc == 0)) || die "a load process failed"
}

# clones phase: each clone whole
exp=() off=() len=()
for ((i = 0; i < CLONES; i++)); do
	exp+=("${names[i]}") off+=(0) len+=(0)
done
say "clones phase: $CLONES x clonebd-load on $CLONES clones, ${DURATION}s"
run_phase clones
hwm_clones=$(hwm_kib)

# single phase: the origin, one slice per process (aligned to 1 MiB)
slice=$(((size_bytes / CLONES) / 1048576 * 1048576))
((slice > 0)) || die "SIZE too small for $CLONES slices of >= 1 MiB"
exp=() off=() len=()
for ((i = 0; i < CLONES; i++)); do
	exp+=(origin) off+=($((i * slice))) len+=("$slice")
done
say "single phase: $CLONES x clonebd-load on slices of origin, ${DURATION}s"
run_phase single
hwm_end=$(hwm_kib)
rss_end=$(rss_kib)

# --- report
for phase in clones single; do
	for ((i = 0; i < CLONES; i++)); do
		jq -c --arg phase "$phase" --arg export "$([[ $phase == clones ]] && echo "${names[i]}" || echo "origin[$i]")" \
			'{phase: $phase, export: $export, iops, mb_per_s, p50_us, p99_us, p999_us, max_us, verify_errors}' \
			"$work/out/$phase-$i.json"
	done
done >"$work/results.jsonl"

jq -rs --arg size "$SIZE" --arg d "$DURATION" --arg bs "$BS" --arg qd "$QD" --arg mix "$RWMIX" \
	--argjson n "$CLONES" --argjson hs "$hwm_setup" --argjson hc "$hwm_clones" --argjson he "$hwm_end" \
	--argjson re "$rss_end" '
  def r0: . * 1 | round;
  def r1: . * 10 | round / 10;
  def r3: . * 1000 | round / 1000;
  (map(select(.phase == "clones"))) as $c |
  (map(select(.phase == "single"))) as $s |
  ($c | map(.iops) | add) as $ci | ($s | map(.iops) | add) as $si |
  "clones20: \($n) clones of one snapshot vs \($n) loads on one volume",
  "load per process: randrw rwmix-read=\($mix) bs=\($bs) qd=\($qd) duration=\($d)s; volume \($size)",
  "",
  "per clone:",
  "| clone | IOPS | MB/s | p50 us | p99 us | p99.9 us | max us |",
  "|---|---:|---:|---:|---:|---:|---:|",
  ($c[] | "| \(.export) | \(.iops | r0) | \(.mb_per_s | r1) | \(.p50_us | r0) | \(.p99_us | r0) | \(.p999_us | r0) | \(.max_us | r0) |"),
  "",
  "| phase | processes | aggregate IOPS | min IOPS | max IOPS | worst p99 us | median p99 us |",
  "|---|---:|---:|---:|---:|---:|---:|",
  ([["clones", $c], ["single", $s]][] as [$name, $p] |
    ($p | map(.p99_us) | sort) as $p99 |
    "| \($name) | \($p | length) | \($p | map(.iops) | add | r0) | \($p | map(.iops) | min | r0) | \($p | map(.iops) | max | r0) | \($p99[-1] | r0) | \($p99[(($p99 | length) / 2 | floor)] | r0) |"),
  "",
  "ratio clones/single: \(if $si > 0 then ($ci / $si | r3) else "n/a" end) (target >= 0.9)",
  "server peak RSS (VmHWM): after setup \($hs / 1024 | r0) MiB, after clones phase \($hc / 1024 | r0) MiB, end \($he / 1024 | r0) MiB (target < 1024 MiB); RSS at end \($re / 1024 | r0) MiB",
  "verify errors: \(map(.verify_errors) | add)"
' "$work/results.jsonl"

if [[ -n ${JSON:-} ]]; then
	jq -s --argjson hwm "$hwm_end" '{processes: ., server_vmhwm_kib: $hwm}' "$work/results.jsonl" >"$JSON"
fi

#!/usr/bin/env bash
# Quick A/B runs: the fio workloads of ../shared/bench/peers.sh, with the same
# options, against ONE freshly started clonebd-server (no peers), for
# comparing two builds (run them alternately) or profiling one (PERF=1).
#
#   benches/scripts/fio-one.sh seqread randwrite-qd32        # live volume
#   MODE=clone benches/scripts/fio-one.sh clone-firstwrite   # clone of a snapshot
#   PERF=1 benches/scripts/fio-one.sh seqread                # perf record -g of the server
#   PERF=1 PERF_ALL=1 ...                                    # of the whole machine (fio too)
#
# Workloads: seqread seqwrite randread-qd1 randread-qd32 randwrite-qd1
#   randwrite-qd32 mc4-randread mc4-randwrite mc4-seqread clone-firstwrite, and
#   flush32 (4 KiB random writes, QD8, a FLUSH after every 32 writes), and
#   wal (8 KiB sequential writes, QD1, a FLUSH after each: a database's log).
# Environment: SIZE=2G RUNTIME=5 BASE=FILE (prefill image; default: SIZE of
#   /dev/urandom made once in WORKDIR) MODE=live|clone PERF=0|1
#   CLONEBD_SERVER CLONEBD_CLI (default: cargo build --release here)
# Prints one line per workload (and one more with the FLUSH latency tail for
# wal and flush32): IOPS, MB/s, p50/p99 completion latency in µs,
# and the CPUs fio and the server kept busy (1.00 = one core; over fio's
# elapsed time, ramp included; with numjobs > 1 fio reports its CPU per job).
# perf data goes to WORKDIR/WORKLOAD.perf (WORKDIR kept when PERF=1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
. "$root/benches/scripts/lib.sh"
SIZE=${SIZE:-2G}
RUNTIME=${RUNTIME:-5}
MODE=${MODE:-live}
PERF=${PERF:-0}
die() {
	echo "fio-one.sh: $*" >&2
	exit 1
}
(($#)) || die "usage: fio-one.sh WORKLOAD..."
if [[ -z ${CLONEBD_SERVER:-} || -z ${CLONEBD_CLI:-} ]]; then
	cargo build --release -p clonebd-server -p clonebd-client --manifest-path "$root/Cargo.toml" >&2
	CLONEBD_SERVER=$root/target/release/clonebd-server CLONEBD_CLI=$root/target/release/clonebd
fi
export CLONEBD_SERVER
work=$(mktemp -d "${TMPDIR:-/var/tmp}/clonebd-fio-one.XXXXXX")
SERVER_PID=""
cleanup() {
	[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	if [[ $PERF == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

start_clonebd_server "$work/data" "$work/server.out" "$work/server.err"
bytes=$(numfmt --from=iec "$SIZE")
base=${BASE:-$work/base.raw}
[[ -f $base ]] || head -c "$bytes" /dev/urandom >"$base"
cli() { "$CLONEBD_CLI" "$@" >/dev/null; }
if [[ $MODE == clone ]]; then
	cli volume create base --size "$SIZE"
	nbdcopy --flush "$base" "nbd://$CLONEBD_NBD/base"
	cli snapshot create base --name golden
	cli clone create base@golden vol
else
	cli volume create vol --size "$SIZE"
	nbdcopy --flush "$base" "nbd://$CLONEBD_NBD/vol"
fi
# the prefill leaves the page cache dirty; writing it back would throttle the
# first workload's writes (seqwrite right after it: 1.1-1.2 instead of 2.5+ GB/s)
sync

for w in "$@"; do
	timing=(--time_based --runtime="$RUNTIME" --ramp_time=1)
	case $w in
	seqread) a="--rw=read --bs=1M --iodepth=8" ;;
	seqwrite) a="--rw=write --bs=1M --iodepth=8" ;;
	randread-qd1) a="--rw=randread --bs=4k --iodepth=1" ;;
	randread-qd32) a="--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-qd1) a="--rw=randwrite --bs=4k --iodepth=1" ;;
	randwrite-qd32) a="--rw=randwrite --bs=4k --iodepth=32" ;;
	mc4-randread) a="--rw=randread --bs=4k --iodepth=8 --numjobs=4" ;;
	mc4-randwrite) a="--rw=randwrite --bs=4k --iodepth=8 --numjobs=4" ;;
	mc4-seqread) a="--rw=read --bs=1M --iodepth=8 --numjobs=4 --offset_increment=$((bytes / 4))" ;;
	flush32) a="--rw=randwrite --bs=4k --iodepth=8 --fsync=32" ;;
	wal) a="--rw=write --bs=8k --iodepth=1 --fsync=1" ;;
	clone-firstwrite)
		a="--rw=write:60k --bs=4k --iodepth=1 --number_ios=$((bytes / 65536))"
		timing=(--runtime="$RUNTIME")
		;;
	*) die "unknown workload $w" ;;
	esac
	perf_pid=""
	if [[ $PERF == 1 ]]; then
		target=(-p "$SERVER_PID")
		[[ ${PERF_ALL:-0} == 1 ]] && target=(-a)
		perf record -e cpu-clock -g "${target[@]}" -o "$work/$w.perf" -- sleep "$RUNTIME" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	cpu0=$(cpu_ticks "$SERVER_PID")
	# shellcheck disable=SC2086
	fio --name="$w" --ioengine=nbd --uri="nbd://$CLONEBD_NBD/vol" "${timing[@]}" --norandommap \
		--lat_percentiles=1 --group_reporting --output-format=json $a >"$work/$w.json" 2>"$work/$w.err" ||
		die "fio $w failed: $(tail -n 3 "$work/$w.err")"
	[[ -z $perf_pid ]] || wait "$perf_pid"
	cpu1=$(cpu_ticks "$SERVER_PID")
	python3 - "$w" "$work/$w.json" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
text = open(sys.argv[2]).read()
job = json.loads(text[text.index('{'):])["jobs"][0]
# fio's own CPU and the server's, in CPUs busy over the run (1.0 = one core)
secs = job["elapsed"] or 1
server = int(sys.argv[3]) / int(sys.argv[4]) / secs
for k in ("read", "write"):
    x = job[k]
    if x["io_bytes"]:
        p = x["clat_ns"]["percentile"]
        print(f'{sys.argv[1]:16} {k:5} {x["iops"]:10.0f} IOPS {x["bw_bytes"] / 1e6:8.0f} MB/s'
              f'  p50 {p["50.000000"] / 1000:8.1f} us  p99 {p["99.000000"] / 1000:8.1f} us'
              f'  cpu fio {(job["usr_cpu"] + job["sys_cpu"]) / 100:4.2f} server {server:4.2f}')
# workloads with FLUSHes (wal, flush32): their latency tail, where a commit shows
sync = job.get("sync", {}).get("lat_ns", {})
if sync.get("N"):
    p = sync.get("percentile", {})
    ms = lambda v: f'{v / 1e6:7.2f} ms'
    print(f'{sys.argv[1]:16} flush {sync["N"]:10d} FLUSHes  mean {ms(sync["mean"])}'
          f'  p99 {ms(p.get("99.000000", 0))}  p99.9 {ms(p.get("99.900000", 0))}'
          f'  p99.99 {ms(p.get("99.990000", 0))}  max {ms(sync["max"])}')
PY
done

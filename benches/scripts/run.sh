#!/usr/bin/env bash
# Runs ../shared/bench/peers.sh with clonebd as the target, on a live volume,
# on a clone, and on never-written ranges (holes), and prints issue 5's
# targets from that one run (targets.py). Compare ratios within one run only:
# the machine is shared and noisy.
#   benches/scripts/run.sh                        # the three peers runs (~25 min)
#   RUNTIME=3 benches/scripts/run.sh              # quicker, noisier
#   RECORD=1 RUNTIME=5 RAMP=1 REPEAT=3 benches/scripts/run.sh
#       the run of record: also clones20.sh and pgbench.sh (~40 min more),
#       then the whole run (date, machine, commit, this command, the tables
#       and every target's ratio) replaces the "latest run" section of
#       BENCHMARKS.md, between targets.py's markers
# Knobs: PEERS CLONE_PEERS HOLE_PEERS (peers.sh's PEERS per run), SKIP_HOLES=1,
#   OUTDIR_BASE (default /var/tmp/clonebd-bench/<time>), BENCHMARKS (the file
#   RECORD=1 writes), and peers.sh's own (RUNTIME RAMP REPEAT ...).
# Output: OUT/{live,clone,holes}/ (peers.sh's results.tsv and table.md),
#   OUT/clones20.txt, OUT/pgbench.txt, OUT/targets.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${BENCH_DIR_SHARED:-$root/../shared/bench}
record=${RECORD:-0}
command="${RECORD:+RECORD=$RECORD }RUNTIME=${RUNTIME:-7} RAMP=${RAMP:-1} REPEAT=${REPEAT:-1} benches/scripts/run.sh"
cargo build --release -p clonebd-server -p clonebd-client -p clonebd-benches --manifest-path "$root/Cargo.toml" >&2
export CLONEBD_SERVER=$root/target/release/clonebd-server
export CLONEBD_CLI=$root/target/release/clonebd
export CLONEBD_LOAD=$root/target/release/clonebd-load
out=${OUTDIR_BASE:-/var/tmp/clonebd-bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
started=$(date -u '+%Y-%m-%d %H:%M')

peers() { # MODE NAME OUTDIR PEERS [WORKLOADS]
	MODE=$1 TARGET_NAME=$2 TARGET_PREFILL=0 \
		TARGET_CMD="$root/benches/scripts/target.sh {PORT}" TARGET_URI='nbd://127.0.0.1:{PORT}/vol' \
		OUTDIR=$3 PEERS=$4 WORKLOADS="${5:-${WORKLOADS:-}}" "$bench/peers.sh"
}

echo "== live volume vs peers" >&2
peers live clonebd "$out/live" "${PEERS:-nbdkit-memory nbdkit-file qemu-nbd-raw qemu-nbd-qcow2 nbd-server}" |
	tee "$out/live.txt"
echo "== clone vs the qcow2 overlay" >&2
peers clone clonebd-clone "$out/clone" "${CLONE_PEERS:-nbdkit-memory qemu-nbd-qcow2}" | tee "$out/clone.txt"
args=(--live "$out/live/results.tsv" --clone "$out/clone/results.tsv")
if [[ ${SKIP_HOLES:-0} != 1 ]]; then
	echo "== never-written ranges vs qemu-nbd" >&2
	peers live clonebd "$out/holes" "${HOLE_PEERS:-qemu-nbd-raw qemu-nbd-qcow2}" "hole-seqread hole-randread-qd32" |
		tee "$out/holes.txt"
	args+=(--holes "$out/holes/results.tsv")
fi
if [[ $record == 1 ]]; then
	echo "== 20 clones" >&2
	"$root/benches/scripts/clones20.sh" | tee "$out/clones20.txt"
	echo "== pgbench" >&2
	"$root/benches/scripts/pgbench.sh" | tee "$out/pgbench.txt"
	args+=(--clones20 "$out/clones20.txt" --pgbench "$out/pgbench.txt")
fi
ended=$(date -u '+%H:%M')

commit=$(git -C "$root" rev-parse --short HEAD)
git -C "$root" diff --quiet HEAD -- . ':!BENCHMARKS.md' || commit="$commit with uncommitted changes"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
virt=$(systemd-detect-virt 2>/dev/null || echo unknown)  # a Firecracker VM here says "docker"
cat >"$out/header.md" <<EOF
### Latest run (${started}–${ended} UTC, commit \`${commit}\`)

Machine: $(nproc) vCPU ${cpu}, ${mem} RAM, Linux $(uname -r), systemd-detect-virt: ${virt}; data on
$(findmnt -no FSTYPE -T "${TMPDIR:-/var/tmp}") under \`${TMPDIR:-/var/tmp}\`. Medians of the passes, (±x%) half the spread; MB/s for sequential
workloads, IOPS otherwise. Command:

\`\`\`sh
${command}
\`\`\`
EOF
[[ $record == 1 ]] && args+=(--write-into "${BENCHMARKS:-$root/BENCHMARKS.md}" --header "$out/header.md")
python3 "$root/benches/scripts/targets.py" "${args[@]}" | tee "$out/targets.md"
echo "tables: $out/{live,clone,holes}/table.md; targets: $out/targets.md" >&2

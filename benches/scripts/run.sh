#!/usr/bin/env bash
# Runs ../shared/bench/peers.sh with clonebd as the target, on a live volume
# and on a clone, and prints where the tables went. Compare ratios within one
# run only: the machine is shared and noisy.
#   benches/scripts/run.sh            # both runs, default workloads (~15 min)
#   RUNTIME=3 benches/scripts/run.sh  # quicker, noisier
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${BENCH_DIR_SHARED:-$root/../shared/bench}
cargo build --release -p clonebd-server -p clonebd-client --manifest-path "$root/Cargo.toml" >&2
export CLONEBD_SERVER=$root/target/release/clonebd-server
export CLONEBD_CLI=$root/target/release/clonebd
out=${OUTDIR_BASE:-/var/tmp/clonebd-bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

echo "== live volume vs peers" >&2
MODE=live TARGET_NAME=clonebd TARGET_PREFILL=0 \
  TARGET_CMD="$root/benches/scripts/target.sh {PORT}" TARGET_URI='nbd://127.0.0.1:{PORT}/vol' \
  OUTDIR=$out/live PEERS=${PEERS:-"nbdkit-memory nbdkit-file qemu-nbd-raw qemu-nbd-qcow2 nbd-server"} \
  "$bench/peers.sh" | tee "$out/live.txt"

echo "== clone vs the qcow2 overlay" >&2
MODE=clone TARGET_NAME=clonebd-clone TARGET_PREFILL=0 \
  TARGET_CMD="$root/benches/scripts/target.sh {PORT}" TARGET_URI='nbd://127.0.0.1:{PORT}/vol' \
  OUTDIR=$out/clone PEERS=${CLONE_PEERS:-"nbdkit-memory qemu-nbd-qcow2"} \
  "$bench/peers.sh" | tee "$out/clone.txt"

echo "tables: $out/live/table.md $out/clone/table.md" >&2

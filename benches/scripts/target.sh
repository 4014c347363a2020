#!/usr/bin/env bash
# TARGET_CMD for ../shared/bench/peers.sh: starts clonebd in the foreground
# (from peers.sh's point of view) on 127.0.0.1:PORT with the export `vol`.
#   MODE=live   `vol` is a fresh, empty thin volume of BENCH_SIZE_BYTES
#               (peers.sh prefills it with nbdcopy, TARGET_PREFILL=1)
#   MODE=clone  BENCH_BASE is imported into `base`, snapshotted, and `vol`
#               is a clone of that snapshot (TARGET_PREFILL=0): reads come
#               from the parent, first writes copy up, as on a qcow2 overlay
# Needs CLONEBD_SERVER and CLONEBD_CLI (paths of the release binaries).
set -euo pipefail
port=${1:?usage: target.sh PORT}
mode=${MODE:-live}
dir=${BENCH_DIR:?peers.sh sets BENCH_DIR}
size=${BENCH_SIZE_BYTES:?peers.sh sets BENCH_SIZE_BYTES}
server=${CLONEBD_SERVER:?path of clonebd-server}
cli=${CLONEBD_CLI:?path of clonebd}

log=$dir/server.out
setsid "$server" --data "$dir/data" --listen "127.0.0.1:$port" --admin 127.0.0.1:0 --no-schedule >"$log" 2>"$dir/server.err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' TERM INT EXIT
for _ in $(seq 1 200); do
  grep -q '^clonebd-server ready:' "$log" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$dir/server.err" >&2; exit 1; }
  sleep 0.05
done
admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$log" | head -1)
export CLONEBD_ADMIN=http://$admin CLONEBD_TOKEN
CLONEBD_TOKEN=$(cat "$dir/data/admin.token")
# The ready line is printed after the NBD socket is bound: create the
# export before peers.sh's readiness probe can open it.
if [[ $mode == clone ]]; then
  "$cli" volume create base --size "$size" >/dev/null
  if [[ ${BENCH_PHASE:-data} == data && -n ${BENCH_BASE:-} ]]; then
    nbdcopy --flush "$BENCH_BASE" "nbd://127.0.0.1:$port/base"
  fi
  "$cli" snapshot create base --name golden >/dev/null
  "$cli" clone create base@golden vol >/dev/null
else
  "$cli" volume create vol --size "$size" >/dev/null
fi
wait $pid

#!/usr/bin/env bash
# TARGET_CMD for ../shared/bench/peers.sh: starts clonebd in the foreground
# (from peers.sh's point of view) on 127.0.0.1:PORT with the export `vol`.
#   MODE=live   `vol` is a thin volume of BENCH_SIZE_BYTES holding BENCH_BASE
#               (data phase; empty in the holes phase), imported with
#               `nbdcopy --flush` by a first server instance on another port
#               before this one opens PORT (TARGET_PREFILL=0): peers.sh's own
#               prefill would leave 2 GiB of dirty page cache, written back
#               during the first workloads, where the file peers' image was
#               written and synced long before
#   MODE=clone  BENCH_BASE is imported into `base`, snapshotted, and `vol`
#               is a clone of that snapshot (TARGET_PREFILL=0): reads come
#               from the parent, first writes copy up, as on a qcow2 overlay
# Needs CLONEBD_SERVER and CLONEBD_CLI (paths of the release binaries).
set -euo pipefail
port=${1:?usage: target.sh PORT}
mode=${MODE:-live}
dir=${BENCH_DIR:?peers.sh sets BENCH_DIR}
size=${BENCH_SIZE_BYTES:?peers.sh sets BENCH_SIZE_BYTES}
: "${CLONEBD_SERVER:?path of clonebd-server}"
cli=${CLONEBD_CLI:?path of clonebd}
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() {
	echo "target.sh: $*" >&2
	cat "$dir/server.err" >&2 2>/dev/null
	exit 1
}
import=0
[[ ${BENCH_PHASE:-data} == data && -n ${BENCH_BASE:-} ]] && import=1

SERVER_PID=""
trap '[[ -n $SERVER_PID ]] && kill -TERM $SERVER_PID 2>/dev/null; wait 2>/dev/null' TERM INT EXIT

if [[ $mode == live && $import == 1 ]]; then
  start_clonebd_server "$dir/data" "$dir/import.out" "$dir/import.err"
  "$cli" volume create vol --size "$size" >/dev/null
  nbdcopy --flush "$BENCH_BASE" "nbd://$CLONEBD_NBD/vol"
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
fi
start_clonebd_server "$dir/data" "$dir/server.out" "$dir/server.err" "127.0.0.1:$port"
# The ready line is printed after the NBD socket is bound: create the
# export before peers.sh's readiness probe can open it.
if [[ $mode == clone ]]; then
  "$cli" volume create base --size "$size" >/dev/null
  if [[ $import == 1 ]]; then
    nbdcopy --flush "$BENCH_BASE" "nbd://$CLONEBD_NBD/base"
  fi
  "$cli" snapshot create base --name golden >/dev/null
  "$cli" clone create base@golden vol >/dev/null
elif [[ $import == 0 ]]; then
  "$cli" volume create vol --size "$size" >/dev/null
fi
wait "$SERVER_PID"

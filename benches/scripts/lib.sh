# Sourced by the bench scripts (target.sh, clones20.sh, pgbench.sh,
# fio-one.sh): start clonebd-server on loopback, read a process's CPU time.
#
# cpu_ticks PID
#   utime + stime of process PID, in clock ticks (getconf CLK_TCK per second).
#
# start_clonebd_server DATA OUT ERR [LISTEN]
#   Starts $CLONEBD_SERVER in a session of its own with data directory DATA,
#   NBD on LISTEN (default 127.0.0.1:0, a free port), stdout to OUT and
#   stderr to ERR, waits up to 60 s for its ready line, and
#   sets SERVER_PID, CLONEBD_READY (the ready line), CLONEBD_NBD (host:port);
#   exports CLONEBD_ADMIN and CLONEBD_TOKEN for the clonebd CLI. The caller
#   provides `die MESSAGE` and stops the server (by SERVER_PID) on exit.
#   CLONEBD_SERVER_ARGS (split on spaces) adds flags, e.g. "--commit-interval 5".
start_clonebd_server() {
	local data=$1 out=$2 err=$3 i stat extra
	read -ra extra <<<"${CLONEBD_SERVER_ARGS:-}"
	setsid "$CLONEBD_SERVER" --data "$data" --listen "${4:-127.0.0.1:0}" --admin 127.0.0.1:0 --no-schedule \
		"${extra[@]}" >"$out" 2>"$err" &
	SERVER_PID=$!
	for ((i = 0; i < 600; i++)); do
		grep -q '^clonebd-server ready:' "$out" 2>/dev/null && break
		# a zombie is gone too (its parent has not reaped it yet)
		stat=$(ps -o stat= -p "$SERVER_PID" 2>/dev/null) && [[ $stat != Z* ]] ||
			die "clonebd-server exited before it was ready"
		sleep 0.1
	done
	CLONEBD_READY=$(grep '^clonebd-server ready:' "$out") || die "clonebd-server not ready after 60 s"
	CLONEBD_NBD=$(sed -n 's/.* nbd=\([^ ]*\).*/\1/p' <<<"$CLONEBD_READY")
	CLONEBD_ADMIN=http://$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$CLONEBD_READY")
	CLONEBD_TOKEN=$(<"$data/admin.token")
	export CLONEBD_ADMIN CLONEBD_TOKEN
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Shared by the benchmark scripts (source it after setting $root and $work).
# shellcheck shell=bash

log() { echo "== $*" >&2; }
now() { date +%s.%N; }

# wait_for SECONDS CMD...: retry CMD until it succeeds
wait_for() {
	local t=$1; shift
	local end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS > end)); then echo "timed out waiting for: $*" >&2; return 1; fi
		sleep 0.1
	done
}

# stop_pids PID...: SIGTERM each, give it 10 s to close its database
# cleanly, then insist.
stop_pids() {
	local p
	# An already-exited process is fine: nothing here may fail (set -e in
	# the callers' traps).
	for p in "$@"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
	for p in "$@"; do
		[[ -n $p ]] || continue
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	return 0
}

# bench_source: the source tree to build, printed. The committed tree
# (git archive HEAD into $work/src) unless BUILD_FROM=tree: others edit the
# working tree while we measure, and the report names the commit.
bench_source() {
	if [[ ${BUILD_FROM:-head} == tree ]]; then
		echo "$root"
		return
	fi
	mkdir -p "$work/src"
	git -C "$root" archive HEAD | tar -x -C "$work/src"
	echo "$work/src"
}

# sample_rss PID OUT: every 50 ms, write "peakRssAnonMiB peakRssFileMiB" to
# OUT, until killed (TERM).
sample_rss() {
	local a=0 f=0 x y
	trap 'echo "$((a / 1024)) $((f / 1024))" >"$2"; exit 0' TERM
	while :; do
		read -r x y < <(awk '/^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {print a + 0, f + 0}' "/proc/$1/status" 2>/dev/null || echo 0 0)
		((x > a)) && a=$x
		((y > f)) && f=$y
		echo "$((a / 1024)) $((f / 1024))" >"$2"
		sleep 0.05
	done
}

# free_port: a free port on 127.0.0.1 never handed out before in this run
# (a port chosen for a server that starts later must not go to another
# one); the ports handed out are kept in $work/ports.
free_port() {
	local p
	while :; do
		p=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		grep -qx "$p" "$work/ports" 2>/dev/null || break
	done
	echo "$p" >>"$work/ports"
	echo "$p"
}

#!/usr/bin/env bash
# DICOM import: medmesh beside Orthanc, on loopback, with real processes.
#
#   scripts/bench-dicom.sh
#
# Generates an N-instance CT series (scripts/dicomgen: the shared test file
# valid/ct1_full_explicit_le.dcm, 512x512, with new SOP/series/study UIDs and
# Instance Numbers; a synthetic 512x512 CT instance without the shared data),
# then
#   medmesh: one real `medmesh daemon` (init + network create in a temp repo,
#     API on 127.0.0.1:0); times `medmesh dicom import DIR --json` (parse,
#     group, encrypt, store, index) and samples the daemon's RSS;
#   Orthanc (Debian package, installed with apt-get if missing and run by
#     hand, never the system service): a temp config (storage and index in
#     the work dir, HTTP on 127.0.0.1 at a free port, DICOM server off, no
#     authentication, no plugins); times `POST /instances` of the same files
#     with curl, PAR uploads in parallel, and samples Orthanc's RSS.
# and prints a side-by-side table. Orthanc 1.10 cannot bind its HTTP server
# to one address, so when unshare(1) works (root) Orthanc and its uploads run
# in a private network namespace that has nothing but loopback; otherwise
# RemoteAccessAllowed=false refuses every non-loopback client.
#
# Processes and temp dirs are removed on exit. Environment: N (500), PAR (2),
# RUNS (1: import runs per system, the best is reported; medmesh imports a
# fresh series each run), SRC (the DICOM file to copy), SKIP_ORTHANC=1,
# KEEP=1, BENCH_DIR (parent of the work dir, default $TMPDIR),
# BUILD_FROM=tree (build the working tree, not HEAD).
# Results: a table on stdout and scripts/out/bench-dicom-<time>.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
N=${N:-500}
PAR=${PAR:-2}
RUNS=${RUNS:-1}
SRC=${SRC:-${MEDMESH_DICOM_TESTDATA:-$(cd "$root/.." && pwd)/shared/testdata/dicom}/valid/ct1_full_explicit_le.dcm}

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/medmesh-bench-dicom.XXXXXX")
pids=()
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
cleanup() {
	local rc=$?
	# Orthanc may run in a child namespace: its pid is in a file
	[[ -s $work/orthanc.pid ]] && pids+=("$(cat "$work/orthanc.pid")")
	stop_pids "${pids[@]}"
	if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hwm_mib() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- build
log "building medmesh and dicomgen"
mkdir -p "$work/bin"
src=$(bench_source)
(cd "$src" && go build -o "$work/bin/medmesh" ./cmd/medmesh && go build -o "$work/bin/dicomgen" ./scripts/dicomgen)
mm="$work/bin/medmesh"

# ---------------------------------------------------------------- data
# series-K: a fresh series per medmesh run (an instance already stored is
# skipped, not re-imported); Orthanc gets series-1 each run, into a fresh
# storage directory.
for k in $(seq "$RUNS"); do
	read -r files bytes _ from < <("$work/bin/dicomgen" -src "$SRC" -n "$N" -seed "$k" -out "$work/series-$k")
done
log "series: $files files, $bytes bytes, from $from"
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')

declare -A R
best() { # KEY SECONDS: keep the smallest
	if [[ -z ${R[$1]:-} ]] || awk -v a="$2" -v b="${R[$1]}" 'BEGIN { exit !(a < b) }'; then R[$1]=$2; fi
}

# ---------------------------------------------------------------- medmesh
A="$work/mm"
"$mm" --repo "$A" init --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 >/dev/null
"$mm" --repo "$A" network create --name bench-dicom >/dev/null
"$mm" --repo "$A" daemon >"$work/mm.log" 2>&1 &
pidA=$!
pids+=("$pidA")
wait_for 60 test -s "$A/api"
wait_for 60 "$mm" --repo "$A" id --json
echo 5 >"/proc/$pidA/clear_refs" 2>/dev/null || true # reset VmHWM (Linux >= 4.0)
R[mm_rss_before]=$(hwm_mib "$pidA")
for k in $(seq "$RUNS"); do
	log "medmesh dicom import, run $k"
	sync
	sample_rss "$pidA" "$work/mm-rss-$k.txt" &
	sampler=$!
	t0=$(now)
	"$mm" --repo "$A" dicom import "$work/series-$k" --json >"$work/mm-import-$k.json"
	t1=$(now)
	kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
	got=$(jq '[.studies[].added_count] | add // 0' "$work/mm-import-$k.json")
	[[ $got == "$N" ]] || { echo "medmesh imported $got of $N instances: $(head -c 2000 "$work/mm-import-$k.json")" >&2; exit 1; }
	best mm_s "$(echo "$t1 - $t0" | bc -l)"
	read -r anon file <"$work/mm-rss-$k.txt"
	R[mm_anon]=$(( anon > ${R[mm_anon]:-0} ? anon : ${R[mm_anon]:-0} ))
	R[mm_file]=$(( file > ${R[mm_file]:-0} ? file : ${R[mm_file]:-0} ))
done
R[mm_hwm]=$(hwm_mib "$pidA")
R[mm_store]=$(du -sm "$A" | cut -f1)

# ---------------------------------------------------------------- Orthanc
# orthanc_phase WORK N PAR RUNS: runs Orthanc RUNS times on series-1, each in
# a fresh storage dir; writes "seconds anonMiB fileMiB hwmMiB storeMiB" per
# run to WORK/orthanc-results.txt. Self-contained: it may run in another
# network namespace (unshare), so it is passed to bash by `declare -f`.
orthanc_phase() {
	set -euo pipefail
	local work=$1 n=$2 par=$3 runs=$4 k port opid sampler t0 t1 ok
	ip link set lo up 2>/dev/null || true
	trap '[[ -n ${opid:-} ]] && kill "$opid" 2>/dev/null; true' EXIT
	: >"$work/orthanc-results.txt"
	for k in $(seq "$runs"); do
		port=$(free_port)
		rm -rf "$work/orthanc-db"
		mkdir -p "$work/orthanc-db"
		cat >"$work/orthanc.json" <<-EOF
			{
			  "Name": "medmesh-bench",
			  "StorageDirectory": "$work/orthanc-db",
			  "IndexDirectory": "$work/orthanc-db",
			  "StorageCompression": false,
			  "Plugins": [],
			  "HttpServerEnabled": true,
			  "HttpPort": $port,
			  "RemoteAccessAllowed": false,
			  "AuthenticationEnabled": false,
			  "DicomServerEnabled": false,
			  "DicomPort": $(free_port),
			  "SaveJobs": false,
			  "OverwriteInstances": false
			}
		EOF
		Orthanc "$work/orthanc.json" >"$work/orthanc-$k.log" 2>&1 &
		opid=$!
		echo "$opid" >"$work/orthanc.pid"
		wait_for 60 curl -sf "http://127.0.0.1:$port/system"
		echo 5 >"/proc/$opid/clear_refs" 2>/dev/null || true
		echo "== Orthanc POST /instances, run $k (curl, $par in parallel)" >&2
		sync
		sample_rss "$opid" "$work/o-rss-$k.txt" &
		sampler=$!
		# each curl process uploads a batch of files over one connection
		# (--next), so process start-up does not dominate
		t0=$(now)
		find "$work/series-1" -name '*.dcm' | sort | xargs -P "$par" -n 25 bash -c '
			port=$0; args=()
			for f; do args+=(--next -s -o /dev/null -w "%{http_code}\n" -X POST -H "Expect:" --data-binary "@$f" "http://127.0.0.1:$port/instances"); done
			curl "${args[@]:1}"' "$port" >"$work/o-codes-$k.txt"
		t1=$(now)
		kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
		ok=$(grep -c '^200$' "$work/o-codes-$k.txt" || true)
		[[ $ok == "$n" ]] || { echo "Orthanc stored $ok of $n instances (codes: $(sort "$work/o-codes-$k.txt" | uniq -c | tr '\n' ' '))" >&2; exit 1; }
		stored=$(curl -sf "http://127.0.0.1:$port/statistics" | jq .CountInstances)
		[[ $stored == "$n" ]] || { echo "Orthanc /statistics counts $stored instances, want $n" >&2; exit 1; }
		read -r anon file <"$work/o-rss-$k.txt"
		echo "$(echo "$t1 - $t0" | bc -l) $anon $file $(hwm_mib "$opid") $(du -sm "$work/orthanc-db" | cut -f1)" >>"$work/orthanc-results.txt"
		kill "$opid"
		for _ in $(seq 100); do kill -0 "$opid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$opid" 2>/dev/null || true
		opid=
		rm -f "$work/orthanc.pid"
	done
}

if [[ -z ${SKIP_ORTHANC:-} ]]; then
	if ! command -v Orthanc >/dev/null; then
		log "installing Orthanc (apt-get install orthanc)"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc >/dev/null
	fi
	R[o_version]=$(Orthanc --version 2>/dev/null | head -n 1 | awk '{print $2}')
	phase="$(declare -f orthanc_phase wait_for now sample_rss hwm_mib free_port); orthanc_phase \"\$@\""
	if unshare --net true 2>/dev/null; then
		R[o_net]="private network namespace, loopback only"
		unshare --net bash -c "$phase" orthanc "$work" "$N" "$PAR" "$RUNS"
	else
		R[o_net]="host network, RemoteAccessAllowed=false"
		bash -c "$phase" orthanc "$work" "$N" "$PAR" "$RUNS"
	fi
	while read -r s anon file hwm store; do
		best o_s "$s"
		R[o_anon]=$(( anon > ${R[o_anon]:-0} ? anon : ${R[o_anon]:-0} ))
		R[o_file]=$(( file > ${R[o_file]:-0} ? file : ${R[o_file]:-0} ))
		R[o_hwm]=$(( hwm > ${R[o_hwm]:-0} ? hwm : ${R[o_hwm]:-0} ))
		R[o_store]=$store
	done <"$work/orthanc-results.txt"
fi

# ---------------------------------------------------------------- report
rate() { awk -v a="$1" -v s="$2" 'BEGIN { printf "%.1f", a / s }'; }
g() { echo "${R[$1]:--}"; }
{
	echo "DICOM import: medmesh beside Orthanc $(g o_version) on 127.0.0.1, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD)"
	echo "series: $files instances, $mb MB (1 MB = 10^6 B), from $from; best of $RUNS run(s); Orthanc: $(g o_net), curl -P $PAR"
	echo
	printf "%-38s %6s %8s %8s %12s %8s %8s\n" "system" "files" "MB" "seconds" "instances/s" "MB/s" "ratio"
	mm_rate=$(rate "$files" "${R[mm_s]}")
	printf "%-38s %6s %8s %8.2f %12s %8s %8s\n" "medmesh dicom import (encrypting)" "$files" "$mb" "${R[mm_s]}" "$mm_rate" "$(rate "$mb" "${R[mm_s]}")" "1.00"
	if [[ -n ${R[o_s]:-} ]]; then
		printf "%-38s %6s %8s %8.2f %12s %8s %8s\n" "Orthanc POST /instances (SQLite)" "$files" "$mb" "${R[o_s]}" "$(rate "$files" "${R[o_s]}")" "$(rate "$mb" "${R[o_s]}")" \
			"$(awk -v a="${R[o_s]}" -v b="${R[mm_s]}" 'BEGIN { printf "%.2f", b / a }')"
	fi
	echo "(ratio: that system's instances/s over medmesh's)"
	echo
	echo "peak RSS during import (MiB): medmesh daemon VmHWM $(g mm_hwm) (RssAnon $(g mm_anon), RssFile $(g mm_file): badger's mmapped files), repo on disk $(g mm_store) MiB"
	[[ -z ${R[o_s]:-} ]] || echo "                               Orthanc VmHWM $(g o_hwm) (RssAnon $(g o_anon), RssFile $(g o_file)), storage on disk $(g o_store) MiB"
} | tee /dev/stderr >"$work/report.txt"
mkdir -p "$here/out"
cp "$work/report.txt" "$here/out/bench-dicom-$(date -u +%Y%m%dT%H%M%SZ).txt"

#!/usr/bin/env bash
# C-STORE ingest over DIMSE: node/dimse's SCP beside Orthanc, same files,
# same sender, same run, on loopback.
#
#   scripts/bench-dimse.sh
#
# Generates an N-instance CT series (scripts/dicomgen: the shared test file
# valid/ct1_full_explicit_le.dcm, 512x512, with new UIDs; a synthetic
# 512x512 CT without the shared data), then, RUNS times each, sends it over
# one association with dcmtk's storescu to
#   - scripts/dimsescp (node/dimse's Server) with a handler that discards
#     the data sets (the protocol layer alone),
#   - scripts/dimsescp with a handler that writes each instance as a Part 10
#     file (temp file + rename, no fsync),
#   - Orthanc (Debian package, run by hand with a temporary configuration:
#     storage in the work dir, DICOM and HTTP on free ports, no plugins,
#     never the system service),
# and with node/dimse's Client (dimsescp -send) to the file handler and to
# Orthanc. It prints instances/s and MB/s (best of RUNS) and each server's
# peak RSS. The node-level figure (encryption, blocks, index) is for the
# daemon's benchmark; this one shows the DICOM protocol layer is not the
# bottleneck.
#
# dcmtk (storescu, and Orthanc, which uses its network layer) as Debian
# builds it leaves Nagle's algorithm on unless TCP_NODELAY=1 is in the
# environment; with it on, every instance into Orthanc waits on a delayed
# ACK (~45 ms: 20 instances/s). The benchmark sets TCP_NODELAY=1 for all of
# them, the best case for the reference (Go sockets disable Nagle anyway).
#
# When unshare(1) works (root, or user namespaces), the whole benchmark runs
# in a private network namespace that has nothing but loopback; otherwise
# on the host's loopback, with Orthanc admitting only the benchmark's AE
# titles from 127.0.0.1 and refusing remote HTTP clients.
#
# Environment: N (500), RUNS (3), PDU (131072: the maximum PDU length
# node/dimse accepts; 16384 to match Orthanc's), SRC (the DICOM file to copy), KEEP=1,
# BENCH_DIR (parent of the work dir, default $TMPDIR), BUILD_FROM=tree
# (build the working tree, not HEAD), SKIP_ORTHANC=1.
# Results: a table on stdout and scripts/out/bench-dimse-<time>.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

if [[ -z ${BENCH_DIMSE_NETNS:-} ]] && command -v unshare >/dev/null && unshare --net true 2>/dev/null; then
	exec unshare --net env BENCH_DIMSE_NETNS=private bash "$0" "$@"
fi
if [[ ${BENCH_DIMSE_NETNS:-} == private ]]; then
	ip link set lo up
	net="private network namespace, loopback only"
else
	net="host loopback (no private namespace here)"
fi

export TCP_NODELAY=1
N=${N:-500}
PDU=${PDU:-131072}
RUNS=${RUNS:-3}
SRC=${SRC:-${MEDMESH_DICOM_TESTDATA:-$(cd "$root/.." && pwd)/shared/testdata/dicom}/valid/ct1_full_explicit_le.dcm}

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/medmesh-bench-dimse.XXXXXX")
pids=()
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
cleanup() {
	local rc=$?
	stop_pids "${pids[@]}" || true
	if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in storescu curl jq; do
	command -v "$tool" >/dev/null || { echo "bench-dimse: $tool is required (apt-get install dcmtk curl jq)" >&2; exit 1; }
done
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
hwm_mib() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }
port_open() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- build
log "building dimsescp and dicomgen"
mkdir -p "$work/bin"
src=$(bench_source)
(cd "$src" && go build -o "$work/bin/dimsescp" ./scripts/dimsescp && go build -o "$work/bin/dicomgen" ./scripts/dicomgen)

# ---------------------------------------------------------------- data
read -r files bytes _ from < <("$work/bin/dicomgen" -src "$SRC" -n "$N" -seed 1 -out "$work/series")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
log "series: $files files, $bytes bytes, from $from ($net)"

declare -A R
best() { # KEY SECONDS: keep the smallest
	if [[ -z ${R[$1]:-} ]] || awk -v a="$2" -v b="${R[$1]}" 'BEGIN { exit !(a < b) }'; then R[$1]=$2; fi
}
maxof() { # KEY MIB
	if [[ -z ${R[$1]:-} ]] || (($2 > R[$1])); then R[$1]=$2; fi
}

# send SENDER AEC PORT: sends the series, prints seconds
send() {
	local sender=$1 aec=$2 port=$3 t0 t1
	t0=$(now)
	case $sender in
	storescu) storescu -q -aet STORESCU -aec "$aec" +sd +r "127.0.0.1" "$port" "$work/series" ;;
	dimse) "$work/bin/dimsescp" -send "$work/series" -aet BENCH -to "$aec@127.0.0.1:$port" >/dev/null ;;
	esac
	t1=$(now)
	echo "$t1 - $t0" | bc -l
}

# ---------------------------------------------------------------- node/dimse
dimse_run() { # KEY HANDLER SENDER
	local key=$1 handler=$2 sender=$3 port pid s out
	port=$(free_port)
	out="$work/dimse-$key"
	rm -rf "$out" && mkdir -p "$out"
	"$work/bin/dimsescp" -listen "127.0.0.1:$port" -max-pdu "$PDU" -handler "$handler" -dir "$out" >"$work/dimsescp-$key.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_for 30 port_open "$port"
	sync
	s=$(send "$sender" MEDMESH "$port")
	maxof "${key}_rss" "$(hwm_mib "$pid")"
	stop_pids "$pid"
	got=$(sed -n 's/^dimsescp: stored \([0-9]*\) instances.*/\1/p' "$work/dimsescp-$key.log")
	[[ $got == "$files" ]] || { echo "dimsescp ($key) stored ${got:-?} of $files instances:" >&2; cat "$work/dimsescp-$key.log" >&2; exit 1; }
	if [[ $handler == fs ]]; then
		n=$(find "$out" -name '*.dcm' | wc -l)
		[[ $n == "$files" ]] || { echo "dimsescp ($key) wrote $n of $files files" >&2; exit 1; }
	fi
	best "$key" "$s"
}

# ---------------------------------------------------------------- Orthanc
orthanc_run() { # KEY SENDER
	local key=$1 sender=$2 http dicom pid s stored
	http=$(free_port)
	dicom=$(free_port)
	rm -rf "$work/orthanc-db" && mkdir -p "$work/orthanc-db"
	cat >"$work/orthanc.json" <<-EOF
		{
		  "Name": "medmesh-bench-dimse",
		  "StorageDirectory": "$work/orthanc-db",
		  "IndexDirectory": "$work/orthanc-db",
		  "StorageCompression": false,
		  "Plugins": [],
		  "HttpServerEnabled": true,
		  "HttpPort": $http,
		  "RemoteAccessAllowed": false,
		  "AuthenticationEnabled": false,
		  "DicomServerEnabled": true,
		  "DicomAet": "ORTHANC",
		  "DicomPort": $dicom,
		  "DicomAlwaysAllowEcho": false,
		  "DicomAlwaysAllowStore": false,
		  "DicomCheckModalityHost": true,
		  "DicomModalities": {
		    "storescu": { "AET": "STORESCU", "Host": "127.0.0.1", "Port": 1, "AllowStore": true },
		    "bench": { "AET": "BENCH", "Host": "127.0.0.1", "Port": 1, "AllowStore": true }
		  },
		  "SaveJobs": false,
		  "OverwriteInstances": false
		}
	EOF
	Orthanc "$work/orthanc.json" >"$work/orthanc-$key.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_for 60 curl -sf "http://127.0.0.1:$http/system"
	sync
	s=$(send "$sender" ORTHANC "$dicom")
	stored=$(curl -sf "http://127.0.0.1:$http/statistics" | jq .CountInstances)
	maxof "${key}_rss" "$(hwm_mib "$pid")"
	stop_pids "$pid"
	[[ $stored == "$files" ]] || { echo "Orthanc ($key) stored $stored of $files instances" >&2; exit 1; }
	best "$key" "$s"
}

have_orthanc=
if [[ -z ${SKIP_ORTHANC:-} ]]; then
	if ! command -v Orthanc >/dev/null; then
		log "installing Orthanc (apt-get install orthanc)"
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc >/dev/null || true
	fi
	command -v Orthanc >/dev/null && have_orthanc=1
	[[ -n $have_orthanc ]] && R[o_version]=$(Orthanc --version 2>/dev/null | awk 'NR == 1 {print $2}')
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for k in $(seq "$RUNS"); do
	log "run $k of $RUNS"
	dimse_run discard discard storescu
	dimse_run fs fs storescu
	[[ -n $have_orthanc ]] && orthanc_run orthanc storescu
	dimse_run fs_go fs dimse
	[[ -n $have_orthanc ]] && orthanc_run orthanc_go dimse
done

# ---------------------------------------------------------------- report
rate() { awk -v a="$1" -v s="$2" 'BEGIN { printf "%.1f", a / s }'; }
g() { echo "${R[$1]:--}"; }
row() { # LABEL KEY
	[[ -n ${R[$2]:-} ]] || return 0
	printf "%-60s %8.2f %12s %8s %10s\n" "$1" "${R[$2]}" "$(rate "$files" "${R[$2]}")" "$(rate "$mb" "${R[$2]}")" "$(g "${2}_rss")"
}
{
	echo "C-STORE ingest over DIMSE: node/dimse beside Orthanc $(g o_version), $net, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD)"
	echo "series: $files instances, $mb MB (1 MB = 10^6 B), from $from; one association per run; best of $RUNS runs"
	echo "storage (both servers): $(df --output=fstype "$work" | tail -n 1 | tr -d ' ') under ${BENCH_DIR:-${TMPDIR:-/tmp}}; load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "dcmtk $(storescu --version 2>/dev/null | awk 'NR == 1 {print $3}') with TCP_NODELAY=1; PDU sizes: node/dimse accepts $PDU bytes, Orthanc 16384 (its default)"
	echo
	printf "%-60s %8s %12s %8s %10s\n" "receiver (sender)" "seconds" "instances/s" "MB/s" "peak RSS MiB"
	row "node/dimse SCP, discard handler (storescu)" discard
	row "node/dimse SCP, Part 10 file per instance (storescu)" fs
	row "Orthanc C-STORE SCP, SQLite index (storescu)" orthanc
	row "node/dimse SCP, Part 10 file per instance (node/dimse SCU)" fs_go
	row "Orthanc C-STORE SCP, SQLite index (node/dimse SCU)" orthanc_go
	if [[ -n ${R[orthanc]:-} ]]; then
		echo
		echo "node/dimse (Part 10 files) over Orthanc, same sender: storescu $(awk -v a="${R[orthanc]}" -v b="${R[fs]}" 'BEGIN { printf "%.2f", a / b }')x, node/dimse SCU $(awk -v a="${R[orthanc_go]}" -v b="${R[fs_go]}" 'BEGIN { printf "%.2f", a / b }')x"
	fi
} | tee /dev/stderr >"$work/report.txt"
mkdir -p "$here/out"
cp "$work/report.txt" "$here/out/bench-dimse-$(date -u +%Y%m%dT%H%M%SZ).txt"

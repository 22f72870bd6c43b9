#!/usr/bin/env bash
# The node as a PACS, measured beside Orthanc in the same run (issue #14):
#
#   scripts/bench-pacs.sh
#
# 1. C-STORE ingest: an N-instance CT series (scripts/dicomgen: the shared
#    test file valid/ct1_full_explicit_le.dcm, 512x512, with new UIDs; a
#    synthetic 512x512 CT without the shared data) sent with dcmtk's
#    storescu over one association to
#      - a real `medmesh daemon` (fresh repo each run, dicom.listen on
#        loopback, dicom.store_delay 0s): the clock stops when `medmesh
#        dicom query` counts the N instances, i.e. once the study is
#        encrypted, stored as a record and indexed (the C-STORE responses
#        come earlier, when each instance is in the inbox: both times are
#        reported);
#      - Orthanc (Debian package, temporary configuration: storage and
#        SQLite index in the work dir, no plugins): the clock stops when
#        storescu has its last C-STORE response (Orthanc has then stored
#        and indexed the instance), checked with /statistics.
# 2. C-MOVE of a study held only by another clinic's node: two daemons
#    (radiology, replication.factor 1, imports the series and grants it to
#    the hospital); movescu asks the hospital's node, which fetches every
#    instance from radiology over the network, decrypts it and sends it to
#    a destination SCP (scripts/dimsescp writing Part 10 files, which
#    notes when the first and the last instance arrive). Beside it, the
#    same C-MOVE from Orthanc's local storage to the same destination.
#
# The servers' CPU time (user + system, from /proc, best of the runs) is
# reported per instance: on a shared machine it varies less than the wall
# time. dcmtk and Orthanc run with TCP_NODELAY=1 (see bench-dimse.sh). When
# unshare(1) works the benchmark runs in a private network namespace with
# only loopback.
#
# Environment: N (500), RUNS (3), SRC, KEEP=1, BENCH_DIR, BUILD_FROM=tree,
# SKIP_ORTHANC=1, SKIP_MOVE=1, SKIP_INGEST=1.
# Results: a table on stdout and scripts/out/bench-pacs-<time>.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

if [[ -z ${BENCH_PACS_NETNS:-} ]] && command -v unshare >/dev/null && unshare --net true 2>/dev/null; then
	exec unshare --net env BENCH_PACS_NETNS=private bash "$0" "$@"
fi
if [[ ${BENCH_PACS_NETNS:-} == private ]]; then
	ip link set lo up
	net="private network namespace, loopback only"
else
	net="host loopback (no private namespace here)"
fi

export TCP_NODELAY=1
N=${N:-500}
RUNS=${RUNS:-3}
SRC=${SRC:-${MEDMESH_DICOM_TESTDATA:-$(cd "$root/.." && pwd)/shared/testdata/dicom}/valid/ct1_full_explicit_le.dcm}

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/medmesh-bench-pacs.XXXXXX")
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

for tool in storescu movescu dcmdump curl jq python3 bc; do
	command -v "$tool" >/dev/null || { echo "bench-pacs: $tool is required (apt-get install dcmtk curl jq python3 bc)" >&2; exit 1; }
done
hwm_mib() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }
port_open() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
secs() { echo "$2 - $1" | bc -l; }
# cpu_s PID: the process's user+system CPU seconds so far
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# ---------------------------------------------------------------- build
log "building medmesh, dimsescp and dicomgen"
mkdir -p "$work/bin"
src=$(bench_source)
(cd "$src" && go build -o "$work/bin/medmesh" ./cmd/medmesh && go build -o "$work/bin/dimsescp" ./scripts/dimsescp && go build -o "$work/bin/dicomgen" ./scripts/dicomgen)
mm() { "$work/bin/medmesh" "$@"; }

read -r files bytes _ from < <("$work/bin/dicomgen" -src "$SRC" -n "$N" -seed 7 -out "$work/series")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
study_uid=$(dcmdump +P StudyInstanceUID "$(find "$work/series" -type f | head -1)" | sed -n 's/.*\[\(.*\)\].*/\1/p')
log "series: $files files, $bytes bytes, from $from ($net)"

declare -A R
best() { # KEY SECONDS: keep the smallest
	if [[ -z ${R[$1]:-} ]] || awk -v a="$2" -v b="${R[$1]}" 'BEGIN { exit !(a < b) }'; then R[$1]=$2; fi
}
maxof() { if [[ -z ${R[$1]:-} ]] || (($2 > R[$1])); then R[$1]=$2; fi; }
all() { R[$1]="${R[$1]:-}${R[$1]:+ }$2"; } # KEY VALUE: keep every run's

# start_node NAME [config KEY VALUE]...: a node whose daemon runs; prints its repo
start_node() {
	local name=$1
	local repo="$work/$name"
	shift
	rm -rf "$repo"
	mm --repo "$repo" init --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 >/dev/null
	while (($#)); do mm --repo "$repo" config set "$1" "$2" >/dev/null; shift 2; done
	echo "$repo"
}
run_daemon() { # REPO: starts its daemon, waits for the API
	"$work/bin/medmesh" --repo "$1" daemon >"$1.log" 2>&1 &
	pids+=($!)
	echo $! >"$1.pid"
	wait_for 60 mm --repo "$1" id
}
stop_daemon() { stop_pids "$(cat "$1.pid")"; }

# ---------------------------------------------------------------- ingest into medmesh
medmesh_ingest() {
	local port repo t0 t1 t2 n
	port=$(free_port)
	repo=$(start_node ingest dicom.listen "127.0.0.1:$port" dicom.allowed STORESCU@127.0.0.1 dicom.store_delay 0s replication.factor 1)
	mm --repo "$repo" network create --name bench >/dev/null
	run_daemon "$repo"
	wait_for 60 port_open "$port" || { tail -20 "$repo.log" >&2; exit 1; }
	sync
	local c0
	c0=$(cpu_s "$(cat "$repo.pid")")
	t0=$(now)
	storescu -q -aet STORESCU -aec MEDMESH +sd +r 127.0.0.1 "$port" "$work/series" || { echo "storescu into medmesh failed" >&2; tail -20 "$repo.log" >&2; exit 1; }
	t1=$(now)
	for _ in $(seq 6000); do
		n=$(mm --repo "$repo" dicom query --json | jq '[.[].instance_count] | add // 0')
		[[ $n == "$files" ]] && break
		sleep 0.02
	done
	t2=$(now)
	[[ $n == "$files" ]] || { echo "medmesh stored $n of $files instances" >&2; tail -20 "$repo.log" >&2; exit 1; }
	best m_cpu "$(echo "$(cpu_s "$(cat "$repo.pid")") - $c0" | bc -l)"
	maxof m_rss "$(hwm_mib "$(cat "$repo.pid")")"
	stop_daemon "$repo"
	best m_acked "$(secs "$t0" "$t1")"
	best m_stored "$(secs "$t0" "$t2")"
}

# ---------------------------------------------------------------- Orthanc
orthanc_conf() { # HTTP DICOM DEST_PORT
	rm -rf "$work/orthanc-db" && mkdir -p "$work/orthanc-db"
	cat >"$work/orthanc.json" <<-EOF
		{
		  "Name": "medmesh-bench-pacs", "StorageDirectory": "$work/orthanc-db", "IndexDirectory": "$work/orthanc-db",
		  "StorageCompression": false, "Plugins": [], "HttpServerEnabled": true, "HttpPort": $1,
		  "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "DicomServerEnabled": true,
		  "DicomAet": "ORTHANC", "DicomPort": $2, "DicomAlwaysAllowEcho": false, "DicomAlwaysAllowStore": false,
		  "DicomCheckModalityHost": true,
		  "DicomModalities": {
		    "storescu": { "AET": "STORESCU", "Host": "127.0.0.1", "Port": 1, "AllowStore": true },
		    "movescu": { "AET": "MOVESCU", "Host": "127.0.0.1", "Port": 1, "AllowMove": true, "AllowFind": true },
		    "dest": { "AET": "DEST", "Host": "127.0.0.1", "Port": $3 }
		  },
		  "SaveJobs": false, "OverwriteInstances": false
		}
	EOF
}
orthanc_ingest_move() { # also measures Orthanc's C-MOVE from its storage, when $1 is a destination port
	local http dicom pid t0 t1 stored
	http=$(free_port)
	dicom=$(free_port)
	orthanc_conf "$http" "$dicom" "${1:-1}"
	Orthanc "$work/orthanc.json" >"$work/orthanc.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_for 60 curl -sf "http://127.0.0.1:$http/system"
	wait_for 60 port_open "$dicom"
	sync
	local c0
	c0=$(cpu_s "$pid")
	t0=$(now)
	storescu -q -aet STORESCU -aec ORTHANC +sd +r 127.0.0.1 "$dicom" "$work/series" || { echo "storescu into Orthanc failed" >&2; tail -20 "$work/orthanc.log" >&2; exit 1; }
	t1=$(now)
	stored=$(curl -sf "http://127.0.0.1:$http/statistics" | jq .CountInstances)
	[[ $stored == "$files" ]] || { echo "Orthanc stored $stored of $files instances" >&2; exit 1; }
	best o_cpu "$(echo "$(cpu_s "$pid") - $c0" | bc -l)"
	maxof o_rss "$(hwm_mib "$pid")"
	best o_stored "$(secs "$t0" "$t1")"
	if [[ -n ${1:-} ]]; then
		move_to ORTHANC "$dicom" o
	fi
	stop_pids "$pid"
}

# ---------------------------------------------------------------- C-MOVE
# move_to CALLED PORT KEY: movescu of the study to DEST (dimsescp), which
# notes the first and last arrival.
move_to() {
	local called=$1 port=$2 key=$3 out pid t0 t1 first last got
	out="$work/dest"
	rm -rf "$out" && mkdir -p "$out"
	"$work/bin/dimsescp" -listen "127.0.0.1:$dest_port" -aet DEST -allowed "$called@127.0.0.1,MEDMESH@127.0.0.1,ORTHANC@127.0.0.1" -handler fs -dir "$out" >"$work/dest.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_for 30 port_open "$dest_port"
	wait_for 30 port_open "$port"
	t0=$(date +%s%N)
	movescu -q -aet MOVESCU -aec "$called" -aem DEST -S -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$study_uid" 127.0.0.1 "$port" || { echo "movescu ($key) failed" >&2; cat "$work/dest.log" >&2; exit 1; }
	t1=$(date +%s%N)
	stop_pids "$pid"
	got=$(sed -n 's/^dimsescp: stored \([0-9]*\) instances.*/\1/p' "$work/dest.log")
	[[ $got == "$files" ]] || { echo "C-MOVE ($key) delivered ${got:-?} of $files instances" >&2; cat "$work/dest.log" >&2; exit 1; }
	read -r first last < <(sed -n 's/^dimsescp: first \([0-9]*\) last \([0-9]*\)/\1 \2/p' "$work/dest.log")
	all "${key}_first" "$(echo "($first - $t0) / 1000000000" | bc -l)"
	all "${key}_last" "$(echo "($last - $t0) / 1000000000" | bc -l)"
	all "${key}_done" "$(echo "($t1 - $t0) / 1000000000" | bc -l)"
}

medmesh_move_setup() {
	local rport hport hid token
	rport=$(free_port)
	hport=$(free_port)
	rad=$(start_node radiology replication.factor 1)
	mm --repo "$rad" network create --name bench-move >/dev/null
	run_daemon "$rad"
	hosp=$(start_node hospital dicom.listen "127.0.0.1:$hport" dicom.allowed MOVESCU@127.0.0.1 dicom.destinations "DEST=127.0.0.1:$dest_port")
	hid=$(mm --repo "$hosp" id --json | jq -r .peer)
	token=$(mm --repo "$rad" network invite --peer "$hid" --json | jq -r .token)
	mm --repo "$hosp" network join "$token" >/dev/null
	run_daemon "$hosp"
	hosp_port=$hport
	local id
	id=$(mm --repo "$rad" dicom import "$work/series" --json | jq -r '.studies[0].id')
	for _ in $(seq 300); do
		mm --repo "$rad" grant "$id" --to "$hid" --purpose treatment >/dev/null 2>&1 && break
		sleep 0.1
	done
	# the hospital indexes the granted study (reading its metadata)
	for _ in $(seq 600); do
		[[ $(mm --repo "$hosp" dicom query --study "$study_uid" --json | jq length) == 1 ]] && break
		sleep 0.1
	done
	[[ $(mm --repo "$hosp" dicom query --study "$study_uid" --json | jq length) == 1 ]] || { echo "the hospital never indexed the granted study" >&2; tail -30 "$hosp.log" >&2; exit 1; }
	# held only by radiology: nothing of it is stored on the hospital's node
	held=$(mm --repo "$hosp" ls --json | jq --arg id "$id" '[.[] | select(.id == $id and .held)] | length')
	[[ $held == 0 ]] || { echo "the hospital holds a replica: not a remote study" >&2; exit 1; }
}

have_orthanc=
if [[ -z ${SKIP_ORTHANC:-} ]] && command -v Orthanc >/dev/null; then
	have_orthanc=1
	R[o_version]=$(Orthanc --version 2>/dev/null | awk 'NR == 1 {print $2}')
fi

dest_port=$(free_port)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for k in $(seq "$RUNS"); do
	[[ -n ${SKIP_INGEST:-} ]] && break
	log "ingest run $k of $RUNS"
	medmesh_ingest
	if [[ -n $have_orthanc ]]; then
		if [[ -z ${SKIP_MOVE:-} ]]; then orthanc_ingest_move "$dest_port"; else orthanc_ingest_move; fi
	fi
done
if [[ -z ${SKIP_MOVE:-} ]]; then
	log "C-MOVE: two clinics, the study held by radiology only"
	medmesh_move_setup
	for k in $(seq "$RUNS"); do
		log "move run $k of $RUNS"
		move_to MEDMESH "$hosp_port" m
	done
	stop_daemon "$hosp"
	stop_daemon "$rad"
fi

# ---------------------------------------------------------------- report
rate() { awk -v a="$1" -v s="$2" 'BEGIN { printf "%.1f", a / s }'; }
g() { echo "${R[$1]:--}"; }
median() { tr ' ' '\n' <<<"$1" | sort -g | awk '{a[NR] = $1} END { if (NR) printf "%.2f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
minof() { tr ' ' '\n' <<<"$1" | sort -g | head -1 | xargs printf "%.2f"; }
row() { # LABEL KEY RSSKEY [CPUKEY]
	[[ -n ${R[$2]:-} ]] || return 0
	local cpu=-
	[[ -n ${4:-} && -n ${R[$4]:-} ]] && cpu=$(awk -v c="${R[$4]}" -v n="$files" 'BEGIN { printf "%.2f", c * 1000 / n }')
	printf "%-66s %8.2f %12s %8s %10s %10s\n" "$1" "${R[$2]}" "$(rate "$files" "${R[$2]}")" "$(rate "$mb" "${R[$2]}")" "$(g "$3")" "$cpu"
}
mrow() { # LABEL KEY
	[[ -n ${R[${2}_first]:-} ]] || return 0
	printf "%-66s %10s %10s %10s %10s\n" "$1" "$(minof "${R[${2}_first]}")/$(median "${R[${2}_first]}")" \
		"$(minof "${R[${2}_last]}")/$(median "${R[${2}_last]}")" "$(minof "${R[${2}_done]}")/$(median "${R[${2}_done]}")" \
		"$(rate "$files" "$(median "${R[${2}_last]}")")"
}
{
	echo "The node as a PACS beside Orthanc $(g o_version): $net, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD)"
	echo "series: $files instances, $mb MB (1 MB = 10^6 B), from $from; storescu over one association; best of $RUNS runs"
	echo "storage: $(df --output=fstype "$work" | tail -n 1 | tr -d ' ') under ${BENCH_DIR:-${TMPDIR:-/tmp}}; load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "dcmtk $(storescu --version 2>/dev/null | awk 'NR == 1 {print $3}') with TCP_NODELAY=1"
	echo
	printf "%-66s %8s %12s %8s %10s %10s\n" "C-STORE ingest (storescu)" "seconds" "instances/s" "MB/s" "peak RSS MiB" "CPU ms/inst"
	row "medmesh: encrypted, stored and indexed (dicom query counts all)" m_stored m_rss m_cpu
	row "medmesh: last C-STORE response (instances in the inbox)" m_acked m_rss
	row "Orthanc: last C-STORE response (stored, SQLite index)" o_stored o_rss o_cpu
	if [[ -n ${R[o_stored]:-} ]]; then
		echo
		echo "medmesh (stored and indexed) over Orthanc: $(awk -v a="${R[o_stored]}" -v b="${R[m_stored]}" 'BEGIN { printf "%.2f", a / b }')x"
	fi
	if [[ -n ${R[m_first]:-} ]]; then
		echo
		printf "%-66s %10s %10s %10s %10s\n" "C-MOVE to a Part 10 SCP, seconds (best/median of $RUNS)" "first" "last" "movescu" "inst/s"
		mrow "medmesh, study held only by another clinic's node (fetched, decrypted)" m
		mrow "Orthanc, study in its own storage" o
	fi
} | tee /dev/stderr >"$work/report.txt"
mkdir -p "$here/out"
cp "$work/report.txt" "$here/out/bench-pacs-$(date -u +%Y%m%dT%H%M%SZ).txt"

#!/usr/bin/env bash
# Dataset fetch from one provider vs three, each provider on its own bounded
# link, with real `medmesh daemon` processes.
#
#   scripts/bench-dataset.sh            (root: it creates network namespaces)
#
# Five network namespaces are created: a "switch" holding a bridge, and one
# per node (clinic, holder1, holder2, researcher), each joined to the bridge
# by a veth pair on a private /24 (SUBNET, default 10.213.0.0/24) that exists
# only inside these namespaces: no address, route, link or qdisc is added to
# the root namespace and no traffic leaves the machine. Each provider's
# interface (clinic, holder1, holder2) gets `tc qdisc ... tbf rate RATE` on
# its egress (+ netem delay DELAY if set), so every provider uploads through
# its own bounded link, as holders at different clinics would; the
# researcher's link is not bounded (RES_RATE bounds it). Every daemon runs
# under `ip netns exec NS medmesh daemon` with its API on the namespace's own
# loopback, so every CLI call for a node also runs inside its namespace.
#
# The network is set up as an operator would: init, network create, invite,
# join. The clinic imports synthetic studies (scripts/datasetgen:
# STUDIES patients x INSTANCES instances of SIZE x SIZE, 16-bit MR), records
# research consent for every patient and creates a dataset. Replication
# (factor 3, the default) places every record on the clinic, holder1 and
# holder2; the script waits until every record of the clinic has three
# "held" receipts (`medmesh ls --json` holders). Only then is the researcher
# invited (placement keeps three live holders and adds none, so the
# researcher is never a replica target) and granted the dataset
# (`dataset grant`).
#
# The researcher's repo is saved (daemon stopped) once it can read the
# dataset and before it fetched anything; every measurement starts from that
# copy, so the researcher never holds a block beforehand. Then, RUNS times:
#   three providers: all daemons up; researcher: `medmesh dataset fetch`
#   one provider:    holder1 and holder2 stopped (SIGTERM), the same fetch
#                    from the clinic alone; the holders are started again
# The table shows MB (10^6 B) fetched, the daemon's fetch seconds and MB/s
# (`dataset fetch --json`: fetched_size, seconds), the ratio three/one, and
# how many bytes each provider's interface sent during the fetch.
#
# Environment: RATE (200mbit), DELAY (none, e.g. 10ms; needs the sch_netem
# kernel module, absent on the benchmark machine), RES_RATE (none),
# STUDIES (8), INSTANCES (16), SIZE (512), RUNS (1), PARALLEL (the fetch's
# --parallel; default: the daemon's, 8), SUBNET (10.213.0), KEEP=1 (keep the
# work dir), BENCH_DIR, BUILD_FROM=tree (build the working tree, not HEAD).
# Results: a table on stdout and scripts/out/bench-dataset-<time>.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
RATE=${RATE:-200mbit}
DELAY=${DELAY:-}
RES_RATE=${RES_RATE:-}
STUDIES=${STUDIES:-8}
INSTANCES=${INSTANCES:-16}
SIZE=${SIZE:-512}
RUNS=${RUNS:-1}
PARALLEL=${PARALLEL:-}
SUBNET=${SUBNET:-10.213.0}

[[ $(id -u) == 0 ]] || { echo "bench-dataset.sh: run as root (it creates network namespaces)" >&2; exit 2; }
for t in ip tc jq go; do command -v "$t" >/dev/null || { echo "bench-dataset.sh: $t is missing (apt-get install -y iproute2 jq)" >&2; exit 2; }; done

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/medmesh-bench-dataset.XXXXXX")
tag="mds$$"              # namespace and link names of this run
nodes=(clinic h1 h2 res) # node keys
declare -A NS IP REPO PID
i=1
for n in "${nodes[@]}"; do
	NS[$n]="$tag-$n"
	IP[$n]="$SUBNET.$i"
	REPO[$n]="$work/$n"
	i=$((i + 1))
done
SW="$tag-sw"
made_ns=()

# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for n in "${nodes[@]}"; do stop_pids "${PID[$n]:-}"; done
	# Deleting a namespace deletes its veth ends and their qdiscs.
	for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
log "building medmesh"
mkdir -p "$work/bin"
src=$(bench_source)
(cd "$src" && go build -o "$work/bin/medmesh" ./cmd/medmesh && go build -o "$work/bin/datasetgen" ./scripts/datasetgen)
mm="$work/bin/medmesh"
commit=$(git -C "$root" rev-parse --short HEAD)

# ---------------------------------------------------------------- links
log "namespaces: switch $SW + ${nodes[*]} on $SUBNET.0/24; provider egress: tbf $RATE${DELAY:+ + netem delay $DELAY}"
ip netns add "$SW"
made_ns+=("$SW")
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for n in "${nodes[@]}"; do
	ns=${NS[$n]}
	ip netns add "$ns"
	made_ns+=("$ns")
	ip -n "$ns" link set lo up
	# veth pair: eth0 in the node's namespace, v-<node> on the switch's bridge
	ip -n "$ns" link add eth0 type veth peer name "v-$n" netns "$SW"
	ip -n "$SW" link set "v-$n" master br0
	ip -n "$SW" link set "v-$n" up
	ip -n "$ns" addr add "${IP[$n]}/24" dev eth0
	ip -n "$ns" link set eth0 up
done
shape() { # NODE RATE
	local ns=${NS[$1]}
	if [[ -n $DELAY ]]; then
		ip netns exec "$ns" tc qdisc add dev eth0 root handle 1: netem delay "$DELAY"
		ip netns exec "$ns" tc qdisc add dev eth0 parent 1:1 handle 10: tbf rate "$2" burst 256kb latency 100ms
	else
		ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$2" burst 256kb latency 100ms
	fi
}
for n in clinic h1 h2; do shape "$n" "$RATE"; done
[[ -z $RES_RATE ]] || shape res "$RES_RATE"
txb() { ip netns exec "${NS[$1]}" cat /sys/class/net/eth0/statistics/tx_bytes; }

# ---------------------------------------------------------------- nodes
mmx() { # NODE ARGS...: the CLI inside the node's namespace
	local n=$1; shift
	ip netns exec "${NS[$n]}" "$mm" --repo "${REPO[$n]}" "$@"
}
start() { # NODE
	local n=$1
	rm -f "${REPO[$n]}/api"
	ip netns exec "${NS[$n]}" "$mm" --repo "${REPO[$n]}" daemon >>"$work/$n.log" 2>&1 &
	PID[$n]=$!
	wait_for 60 test -s "${REPO[$n]}/api"
	wait_for 60 mmx "$n" id --json
}
stop() { # NODE
	stop_pids "${PID[$1]:-}"
	PID[$1]=""
}
peers() { mmx "$1" id --json | jq -r .peer_count; }
has_peers() { # NODE N: a member with at least N peers
	mmx "$1" id --json | jq -e --argjson n "$2" '.member and .peer_count >= $n' >/dev/null
}
declare -A ORG=([clinic]="St Mary" [h1]="Northside Clinic" [h2]="Eastgate Hospital" [res]="University Lab")
declare -A PEER
for n in "${nodes[@]}"; do
	mmx "$n" init --listen "/ip4/${IP[$n]}/tcp/4001" --api 127.0.0.1:5001 --org "${ORG[$n]}" >/dev/null
	PEER[$n]=$(mmx "$n" id --json | jq -r .peer)
done
invite() { # NODE: invited by the clinic, joins, starts
	local token
	token=$(mmx clinic network invite --peer "${PEER[$1]}" --org "${ORG[$1]}" | tail -n 1)
	mmx "$1" network join "$token" >/dev/null
	start "$1"
}
log "network: clinic creates, invites holder1 and holder2"
mmx clinic network create --name bench-dataset >/dev/null
start clinic
invite h1
invite h2
for n in h1 h2; do wait_for 120 has_peers "$n" 2; done

# ---------------------------------------------------------------- data
log "clinic: $STUDIES studies x $INSTANCES instances of ${SIZE}x$SIZE, consent, import, dataset"
"$work/bin/datasetgen" -out "$work/src-dicom" -patients "$STUDIES" -instances "$INSTANCES" -size "$SIZE" >"$work/patients.txt"
for p in $(cat "$work/patients.txt"); do
	mmx clinic consent add --patient "$p" --purpose research --json >/dev/null
done
mmx clinic dicom import "$work/src-dicom" --json >"$work/import.json"
recs=$(jq -r '[.studies[].id] | join(",")' "$work/import.json")
[[ $(jq '.studies | length' "$work/import.json") == "$STUDIES" ]] || { echo "import: expected $STUDIES studies" >&2; exit 1; }
mmx clinic dataset create bench --records "$recs" --json >"$work/create.json"
ds=$(jq -r .id "$work/create.json")
ds_bytes=$(jq '[.studies[].size] | add' "$work/create.json")
# every record of the clinic held by three nodes (clinic, holder1, holder2)
replicated() {
	mmx clinic ls --json | jq -e '[.[] | select(.mine)] | length > 0 and all((.holders | length) >= 3)' >/dev/null
}
log "waiting for replication: every record on three holders"
wait_for 600 replicated
for n in h1 h2; do
	mmx "$n" ls --json | jq -e --arg o "${PEER[clinic]}" '[.[] | select(.owner == $o)] | all(.held)' >/dev/null ||
		{ echo "$n does not hold every record" >&2; exit 1; }
done
log "network: clinic invites the researcher; grants it the dataset"
invite res
wait_for 120 has_peers res 3
grant_res() { mmx clinic dataset grant "$ds" --to "${PEER[res]}" --json; }
wait_for 60 grant_res
ds_readable() { mmx res dataset ls --json | jq -e --arg id "$ds" 'any(.[]; .id == $id)' >/dev/null; }
wait_for 120 ds_readable
# (`dataset ls` read the dataset's own small manifest record: that one it holds)
held=$(mmx res ls --json | jq -c '[.[] | select(.held and (.mine | not) and .class != "dataset") | {id, class}]')
[[ $held == "[]" ]] || { echo "the researcher holds study records before any fetch: $held" >&2; exit 1; }
log "saving the researcher's repo (before any fetch)"
stop res
cp -a "${REPO[res]}" "$work/res-snapshot"

# ---------------------------------------------------------------- measure
# fetch_once LABEL PROVIDERS...: a fresh researcher repo, fetch, record
: >"$work/results.txt"
fetch_once() {
	local label=$1; shift
	rm -rf "${REPO[res]}" "$work/out"
	cp -a "$work/res-snapshot" "${REPO[res]}"
	start res
	wait_for 120 has_peers res "$#"
	wait_for 120 ds_readable
	local np tx0=() tx1=() k=0 p
	np=$(peers res)
	for p in clinic h1 h2; do tx0+=("$(txb "$p")"); done
	local t0 t1
	t0=$(date +%s.%N)
	mmx res dataset fetch "$ds" -o "$work/out" ${PARALLEL:+--parallel "$PARALLEL"} --json >"$work/fetch-$label.json"
	t1=$(date +%s.%N)
	for p in clinic h1 h2; do tx1+=("$(txb "$p")"); done
	local sent=""
	for p in clinic h1 h2; do
		sent+=$(awk -v a="${tx0[$k]}" -v b="${tx1[$k]}" 'BEGIN { printf "%.1f/", (b - a) / 1e6 }')
		k=$((k + 1))
	done
	jq -r --arg l "$label" --arg np "$np" --arg wall "$(echo "$t1 - $t0" | bc -l)" --arg sent "${sent%/}" \
		'[$l, $np, (.fetched_size / 1e6), .seconds, .mb_per_s, ($wall | tonumber), $sent] | @tsv' "$work/fetch-$label.json" >>"$work/results.txt"
	jq -e --argjson n "$((STUDIES * INSTANCES))" '.fetched_count == $n' "$work/fetch-$label.json" >/dev/null ||
		{ echo "fetch $label: not every instance fetched" >&2; exit 1; }
	stop res
}
for r in $(seq "$RUNS"); do
	log "run $r: three providers (clinic, holder1, holder2)"
	fetch_once "three-$r" clinic h1 h2
	log "run $r: one provider (holder1 and holder2 stopped)"
	stop h1
	stop h2
	fetch_once "one-$r" clinic
	start h1
	start h2
	wait_for 120 has_peers h1 1
	wait_for 120 has_peers h2 1
done

# ---------------------------------------------------------------- report
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m1=$(awk -F'\t' '$1 ~ /^one-/ { print $5 }' "$work/results.txt" | median)
m3=$(awk -F'\t' '$1 ~ /^three-/ { print $5 }' "$work/results.txt" | median)
{
	echo "dataset fetch, one provider vs three, each provider's egress: tbf $RATE${DELAY:+ + netem $DELAY}${RES_RATE:+; researcher: $RES_RATE}"
	echo "$(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), commit $commit; dataset: $STUDIES studies x $INSTANCES instances ${SIZE}x$SIZE ($(awk -v b="$ds_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB); MB = 10^6 B"
	echo
	printf "%-9s %6s %8s %8s %8s %8s  %s\n" run peers MB seconds "MB/s" wall-s "sent MB clinic/h1/h2"
	awk -F'\t' '{ printf "%-9s %6s %8.1f %8.2f %8.1f %8.2f  %s\n", $1, $2, $3, $4, $5, $6, $7 }' "$work/results.txt"
	echo
	printf "providers  MB/s (median of %s)  link\n" "$RUNS"
	printf "%-9s  %8.1f  %s\n" 1 "$m1" "$RATE" 3 "$m3" "3 x $RATE"
	echo "ratio three/one: $(awk -v a="$m3" -v b="$m1" 'BEGIN { printf "%.2f", a / b }') (target >= 1.5)"
	echo "sent MB: bytes out of each provider's interface during the fetch (blocks + protocol overhead);"
	echo "their sum over the dataset's MB is the duplicate-and-overhead factor"
} >"$work/report.txt"
cat "$work/report.txt"
mkdir -p "$here/out"
cp "$work/report.txt" "$here/out/bench-dataset-$(date -u +%Y%m%dT%H%M%SZ).txt"

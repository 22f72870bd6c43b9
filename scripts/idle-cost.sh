#!/usr/bin/env bash
# Idle cost of real daemons with many records in the network.
#
#   scripts/idle-cost.sh [RECORDS] [NODES] [WINDOW_SECONDS]
#
# Starts NODES (default 3) medmesh daemons on 127.0.0.1 in one network, adds
# RECORDS (default 5000) small records on the first node (replicated as the
# default replication factor places them), waits until every node has the
# same ledger and it has not changed for 15 s (replication done), then
# measures each daemon's CPU time and RSS over WINDOW_SECONDS (default 30) of
# quiet. Prints one line per node: "% of a core" and "RSS MiB".
#
# Issue #11 asks for under 10% of a core per node with 5,000 records, #16 for
# under 5% with 20,000. Run on a quiet machine; figures go in
# docs/BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
records=${1:-5000}
nodes=${2:-3}
window=${3:-30}
work=$(mktemp -d /tmp/medmesh-idle.XXXXXX)
# shellcheck source=lib.sh
source "$root/scripts/lib.sh"
pids=()
cleanup() {
	stop_pids "${pids[@]}"
	[[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

src=$(bench_source)
log "building medmesh and recordgen from $(git -C "$root" rev-parse --short HEAD)"
(cd "$src" && go build -o "$work/bin/medmesh" ./cmd/medmesh && go build -o "$work/bin/recordgen" ./scripts/recordgen)
mm() { "$work/bin/medmesh" --no-progress "$@"; }

for i in $(seq "$nodes"); do
	mm init --repo "$work/n$i" --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 --org "org$i" >/dev/null
done
mm network create --repo "$work/n1" --name idle-cost >/dev/null
start_node() {
	"$work/bin/medmesh" daemon --repo "$work/n$1" >"$work/n$1.log" 2>&1 &
	pids[$1]=$!
	wait_for 30 mm id --repo "$work/n$1" --json
}
start_node 1
for i in $(seq 2 "$nodes"); do
	peer=$(mm id --repo "$work/n$i" --json | sed -n 's/.*"peer\(_id\)\{0,1\}": "\(12D3[^"]*\)".*/\2/p')
	token=$(mm network invite --repo "$work/n1" --peer "$peer" --org "org$i" --json | sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
	mm network join --repo "$work/n$i" "$token" >/dev/null
	start_node "$i"
done

log "adding $records records on node 1"
t0=$(now)
"$work/bin/recordgen" -repo "$work/n1" -n "$records" -size 2048 -parallel 8
log "added in $(echo "$(now) - $t0" | bc) s; waiting for the ledger to settle on every node"

heads() { mm ledger heads --repo "$work/n$1" --json 2>/dev/null | tr -d ' \n'; }
settled=0 last=""
end=$((SECONDS + 1800))
while ((settled < 15)); do
	h=$(heads 1)
	same=1
	for i in $(seq 2 "$nodes"); do [[ $(heads "$i") == "$h" ]] || same=0; done
	if ((same)) && [[ $h == "$last" ]]; then settled=$((settled + 1)); else settled=0; fi
	last=$h
	((SECONDS < end)) || { echo "the network did not settle in 30 minutes" >&2; exit 1; }
	sleep 1
done
log "settled after $(echo "$(now) - $t0" | bc) s; measuring $window s of quiet"

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A c0
for i in $(seq "$nodes"); do c0[$i]=$(cpu "${pids[$i]}"); done
sleep "$window"
echo "records=$records nodes=$nodes window=${window}s commit=$(git -C "$root" rev-parse --short HEAD)"
for i in $(seq "$nodes"); do
	c1=$(cpu "${pids[$i]}")
	rss=$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/${pids[$i]}/status")
	pct=$(echo "scale=2; 100 * ($c1 - ${c0[$i]}) / $ticks / $window" | bc)
	echo "node $i: ${pct}% of a core, RSS ${rss} MiB"
done

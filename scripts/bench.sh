#!/usr/bin/env bash
# medmesh beside Kubo, on loopback, with real daemon processes.
#
#   scripts/bench.sh [SIZE_MB ...]      default: 256 1024
#
# For each size, ROUNDS times (default 3), fresh generated files go through,
# interleaved so that both see the same machine state:
#   medmesh add (one node, encrypting), medmesh get on a second node
#   (owner + grantee, real `medmesh daemon` processes, the CLI flow),
#   Kubo `ipfs add` and a two-node `ipfs cat`, with Kubo's defaults and with
#   --cid-version=1 --raw-leaves --chunker=size-1048576.
# The table shows the median of the rounds, and every round below it: on a
# shared VM one run of either program can be 30% off its median.
# Then: the peak RSS (VmHWM) of the owner's daemon during the largest add, and
# 100 consecutive two-node fetches of a 4 MiB record (medmesh and Kubo),
# p50/p99, with stalls (a fetch slower than 10x the median).
#
# Records are added with --replicas 1: with the default (3) replication
# places the grantee as a holder and it copies the record in the background,
# so the measured get would race a replica fetch or read local blocks.
#
# Everything listens on 127.0.0.1 only: no bootstrap peers, no mDNS, no
# AutoNAT, no relays, no public DHT. Processes and temp dirs are removed on
# exit. Environment: ROUNDS (3), FETCHES (100), FETCH_KB (4096), SKIP_KUBO=1,
# KEEP=1 (keep the work dir), BASELINE=REV (also build medmesh at git
# revision REV and run its add and get in the same interleaved rounds, on a
# pair of nodes of its own: before and after a change, same run), BENCH_DIR (parent of the work dir, default
# $TMPDIR), BUILD_FROM=tree (build the working tree, not HEAD). Results: a
# table on stdout and scripts/out/bench-<time>.txt. Disk: about
# 6 x ROUNDS x the sizes (each file is stored by four daemons).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(256 1024)
ROUNDS=${ROUNDS:-3}
FETCHES=${FETCHES:-100}
FETCH_KB=${FETCH_KB:-4096}

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/medmesh-bench.XXXXXX")
pids=()
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
cleanup() {
	local rc=$?
	stop_pids "${pids[@]}"
	if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mibps BYTES SECONDS
mibps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }

# ---------------------------------------------------------------- build
log "building medmesh"
mkdir -p "$work/bin"
src=$(bench_source)
(cd "$src" && go build -o "$work/bin/medmesh" ./cmd/medmesh)
mm="$work/bin/medmesh"
mm_new=$mm
if [[ -n ${BASELINE:-} ]]; then
	log "building medmesh at $BASELINE (the baseline)"
	mkdir -p "$work/base-src"
	git -C "$root" archive "$BASELINE" | tar -x -C "$work/base-src"
	(cd "$work/base-src" && go build -o "$work/bin/medmesh-base" ./cmd/medmesh)
	base_rev=$(git -C "$root" rev-parse --short "$BASELINE")
fi
if [[ -z ${SKIP_KUBO:-} ]]; then
	log "building/locating Kubo (scripts/kubo.sh)"
	ipfs_bin=$("$here/kubo.sh")
fi

# ---------------------------------------------------------------- data
log "generating files: ${sizes[*]} MiB, $ROUNDS of each"
for s in "${sizes[@]}"; do
	for r in $(seq "$ROUNDS"); do
		# distinct files per round: Kubo would skip blocks it already has
		head -c "$((s << 20))" /dev/urandom >"$work/data-$s-$r.bin"
	done
done
mkdir -p "$work/small"
for i in $(seq "$FETCHES"); do
	head -c "$((FETCH_KB << 10))" /dev/urandom >"$work/small/$i.bin"
done
# Write the generated files out before measuring, so that no round competes
# with the kernel flushing gigabytes of them.
sync

# ---------------------------------------------------------------- medmesh
A="$work/mm-a"
B="$work/mm-b"
mma() { "$mm" --repo "$A" "$@"; }
mmb() { "$mm" --repo "$B" "$@"; }
start_daemon() { # REPO LOG -> pid in $daemon_pid
	"$mm" --repo "$1" daemon >"$2" 2>&1 &
	daemon_pid=$!
	pids+=("$daemon_pid")
	wait_for 60 test -s "$1/api"
	wait_for 60 "$mm" --repo "$1" id --json
}
member_with_peers() { # REPO: daemon says it is a member and has a peer
	"$mm" --repo "$1" id --json | jq -e '.member and ((.peer_count // .peers) > 0)' >/dev/null
}

# two_nodes TAG: A owner and B grantee, members of one network, daemons up;
# their repos in $work/TAG-a and $work/TAG-b, pids and B's ID in V[TAG_*].
declare -A V
two_nodes() {
	local t=$1
	A="$work/$t-a" B="$work/$t-b"
	log "medmesh ($t): two nodes"
	mma init --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 >/dev/null
	mma network create --name "bench-$t" >/dev/null
	start_daemon "$A" "$work/$t-a.log"
	V[${t}_pidA]=$daemon_pid
	mmb init --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 >/dev/null
	V[${t}_idB]=$(mmb id --json | jq -r '.peer // .peer_id')
	token=$(mma network invite --peer "${V[${t}_idB]}" | tail -n 1)
	mmb network join "$token" >/dev/null
	start_daemon "$B" "$work/$t-b.log"
	wait_for 60 member_with_peers "$B"
}
# use TAG: the binary, repos and peers the medmesh steps below act on.
use() {
	local t=$1
	if [[ $t == base ]]; then mm="$work/bin/medmesh-base"; else mm=$mm_new; fi
	A="$work/$t-a" B="$work/$t-b" pidA=${V[${t}_pidA]} idB=${V[${t}_idB]} P=$t
}
if [[ -n ${BASELINE:-} ]]; then
	mm="$work/bin/medmesh-base"
	two_nodes base
fi
mm=$mm_new
two_nodes mm
use mm

# grant_ready ID: grant to B (retried: A may not know B's key yet)
grant_to_b() { wait_for 60 mma grant "$1" --to "$idB" --json; }
# readable_on_b N IDS...: B's ledger shows all IDS readable
readable_on_b() {
	local ids
	ids=$(printf '%s\n' "$@" | jq -R . | jq -s .)
	mmb ls --json | jq -e --argjson want "$ids" '[.[] | select(.readable) | .id] as $r | all($want[]; . as $w | $r | index($w))' >/dev/null
}

declare -A R # results: R[key]=value
peak_rss_kb=0
peak_rss_size=0
# mm_round SIZE ROUND: medmesh add on A, grant, get on B
mm_round() {
	local s=$1 r=$2 f="$work/data-$1-$2.bin" bytes=$(($1 << 20)) t0 t1 id hwm
	log "$P add $s MiB (round $r)"
	echo 5 >"/proc/$pidA/clear_refs" 2>/dev/null || true # reset VmHWM (Linux >= 4.0)
	# VmHWM counts file-backed pages too (badger mmaps its value log):
	# sample anonymous and file-backed RSS separately.
	sample_rss "$pidA" "$work/rss-$P-$s.txt" &
	sampler=$!
	t0=$(now)
	id=$(mma add "$f" --replicas 1 --json | jq -r .id)
	t1=$(now)
	kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
	read -r R[${P}_anon_${s}_$r] R[${P}_file_${s}_$r] <"$work/rss-$P-$s.txt"
	R[${P}_add_${s}_$r]=$(mibps "$bytes" "$(echo "$t1 - $t0" | bc -l)")
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pidA/status")
	R[${P}_rss_${s}_$r]=$((hwm / 1024))
	if ((s > peak_rss_size || (s == peak_rss_size && hwm > peak_rss_kb))); then peak_rss_size=$s; peak_rss_kb=$hwm; fi
	grant_to_b "$id"
	wait_for 60 readable_on_b "$id"
	log "$P get $s MiB on the grantee (round $r)"
	t0=$(now)
	mmb get "$id" -o "$work/out.bin" --json >/dev/null
	t1=$(now)
	R[${P}_get_${s}_$r]=$(mibps "$bytes" "$(echo "$t1 - $t0" | bc -l)")
	cmp -s "$f" "$work/out.bin" || { echo "medmesh get: output differs from input" >&2; exit 1; }
	rm -f "$work/out.bin"
}

# ---------------------------------------------------------------- Kubo
if [[ -z ${SKIP_KUBO:-} ]]; then
	KA="$work/kubo-a"
	KB="$work/kubo-b"
	kinit() {
		IPFS_PATH=$1 "$ipfs_bin" init --profile test -e >/dev/null
		local c=(env IPFS_PATH="$1" "$ipfs_bin" config)
		"${c[@]}" --json Bootstrap '[]'
		"${c[@]}" --json Addresses.Swarm '["/ip4/127.0.0.1/tcp/0"]'
		"${c[@]}" Addresses.API /ip4/127.0.0.1/tcp/0
		"${c[@]}" Addresses.Gateway /ip4/127.0.0.1/tcp/0
		"${c[@]}" --json Addresses.Announce '[]'
		"${c[@]}" --json Addresses.NoAnnounce '[]'
		"${c[@]}" --json Discovery.MDNS.Enabled false
		"${c[@]}" AutoNAT.ServiceMode disabled
		"${c[@]}" --json Swarm.RelayClient.Enabled false
		"${c[@]}" --json Swarm.RelayService.Enabled false
		"${c[@]}" --json Swarm.Transports.Network.Relay false
		"${c[@]}" --json Swarm.DisableNatPortMap true
		"${c[@]}" Routing.Type dht
		"${c[@]}" --json AutoConf.Enabled false 2>/dev/null || true
	}
	kstart() { # REPO LOG
		IPFS_PATH=$1 "$ipfs_bin" daemon >"$2" 2>&1 &
		pids+=("$!")
		wait_for 60 test -s "$1/api"
		wait_for 60 env IPFS_PATH="$1" "$ipfs_bin" swarm peers # online only
	}
	ka() { IPFS_PATH=$KA "$ipfs_bin" "$@"; }
	kb() { IPFS_PATH=$KB "$ipfs_bin" "$@"; }
	log "Kubo: two nodes"
	kinit "$KA"
	kinit "$KB"
	kstart "$KA" "$work/kubo-a.log"
	kstart "$KB" "$work/kubo-b.log"
	addrA=$(ka id | jq -r '.Addresses[] | select(startswith("/ip4/127.0.0.1/tcp/"))' | head -n 1)
	kb swarm connect "$addrA" >/dev/null
	declare -A KOPTS=([def]="" [raw1m]="--cid-version=1 --raw-leaves --chunker=size-1048576")
fi
# k_round SIZE ROUND: Kubo add on A and cat on B, with both configurations
k_round() {
	local s=$1 r=$2 f="$work/data-$1-$2.bin" bytes=$(($1 << 20)) t0 t1 cid cfg
	for cfg in def raw1m; do
		log "Kubo add $s MiB ($cfg, round $r)"
		t0=$(now)
		# shellcheck disable=SC2086
		cid=$(ka add -Q ${KOPTS[$cfg]} "$f")
		t1=$(now)
		R[k_add_${cfg}_${s}_$r]=$(mibps "$bytes" "$(echo "$t1 - $t0" | bc -l)")
		log "Kubo cat $s MiB ($cfg, round $r) on the second node"
		t0=$(now)
		kb cat "$cid" >"$work/out.bin"
		t1=$(now)
		R[k_cat_${cfg}_${s}_$r]=$(mibps "$bytes" "$(echo "$t1 - $t0" | bc -l)")
		cmp -s "$f" "$work/out.bin" || { echo "ipfs cat: output differs" >&2; exit 1; }
		rm -f "$work/out.bin"
	done
}

# ---------------------------------------------------------------- rounds
# Interleaved: the machine's state (page cache, the host's memory) drifts,
# and each program should see the same drift.
for s in "${sizes[@]}"; do
	for r in $(seq "$ROUNDS"); do
		if [[ -n ${BASELINE:-} ]]; then
			use base
			mm_round "$s" "$r"
		fi
		use mm
		mm_round "$s" "$r"
		[[ -n ${SKIP_KUBO:-} ]] || k_round "$s" "$r"
	done
done

# percentile-ish summary of a file of latencies in ms (one per line)
latency_summary() { # FILE -> "p50 p99 max stalls"
	sort -n "$1" | awk '{ a[NR] = $1 } END {
		i = int(0.50 * NR) + 1; if (i > NR) i = NR; p50 = a[i]
		i = int(0.99 * NR) + 1; if (i > NR) i = NR; p99 = a[i]
		s = 0; for (i = 1; i <= NR; i++) if (a[i] > 10 * p50) s++
		printf "%.1f %.1f %.1f %d\n", p50, p99, a[NR], s }'
}

log "medmesh: $FETCHES fetches of $FETCH_KB KiB records by the grantee"
ids=()
for i in $(seq "$FETCHES"); do
	ids+=("$(mma add "$work/small/$i.bin" --replicas 1 --json | jq -r .id)")
done
for id in "${ids[@]}"; do grant_to_b "$id"; done
wait_for 120 readable_on_b "${ids[@]}"
: >"$work/mm-lat.txt"
for id in "${ids[@]}"; do
	t0=$(now)
	mmb get "$id" -o "$work/out.bin" --json >/dev/null
	t1=$(now)
	echo "($t1 - $t0) * 1000" | bc -l >>"$work/mm-lat.txt"
done
rm -f "$work/out.bin"
read -r R[mm_p50] R[mm_p99] R[mm_max] R[mm_stalls] < <(latency_summary "$work/mm-lat.txt")
R[mm_fetcher_stalls]=$(grep -c "fetch stalled" "$work/mm-b.log" || true)

if [[ -z ${SKIP_KUBO:-} ]]; then
	log "Kubo: $FETCHES cats of $FETCH_KB KiB files (defaults) by the second node"
	cids=()
	for i in $(seq "$FETCHES"); do cids+=("$(ka add -Q "$work/small/$i.bin")"); done
	: >"$work/k-lat.txt"
	for cid in "${cids[@]}"; do
		t0=$(now)
		kb cat "$cid" >"$work/out.bin"
		t1=$(now)
		echo "($t1 - $t0) * 1000" | bc -l >>"$work/k-lat.txt"
	done
	rm -f "$work/out.bin"
	read -r R[k_p50] R[k_p99] R[k_max] R[k_stalls] < <(latency_summary "$work/k-lat.txt")
fi

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else print "-" }'; }
maxf() { awk -v a="$1" -v b="$2" 'BEGIN { a += 0; b += 0; print (a > b ? a : b) }'; }
g() { echo "${R[$1]:--}"; }
# rounds KEY: every round's figure of KEY_1..KEY_ROUNDS, "a / b / c"
rounds() {
	local r out=()
	for r in $(seq "$ROUNDS"); do out+=("$(g "$1_$r")"); done
	local IFS=/
	echo "${out[*]}" | sed 's|/| / |g'
}
# med KEY: the median of KEY's rounds ("-" if none ran)
med() {
	local r
	for r in $(seq "$ROUNDS"); do g "$1_$r"; done | grep -v '^-$' | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
{
	echo "medmesh vs Kubo ${KUBO_VERSION:-v0.43.0} on 127.0.0.1, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD)"
	echo "MiB/s (MiB = 2^20 bytes); median of $ROUNDS interleaved rounds (each round below)"
	echo
	printf "%-8s %-10s %10s %14s %14s %12s\n" "size" "op" "medmesh" "kubo-default" "kubo-raw1MiB" "mm/best-kubo"
	for s in "${sizes[@]}"; do
		bk=$(maxf "$(med k_add_def_$s)" "$(med k_add_raw1m_$s)")
		printf "%-8s %-10s %10s %14s %14s %12s\n" "${s}MiB" add "$(med mm_add_$s)" "$(med k_add_def_$s)" "$(med k_add_raw1m_$s)" \
			"$(ratio "$(med mm_add_$s)" "$bk")"
		bk=$(maxf "$(med k_cat_def_$s)" "$(med k_cat_raw1m_$s)")
		printf "%-8s %-10s %10s %14s %14s %12s\n" "${s}MiB" 2node-get "$(med mm_get_$s)" "$(med k_cat_def_$s)" "$(med k_cat_raw1m_$s)" \
			"$(ratio "$(med mm_get_$s)" "$bk")"
	done
	if [[ -n ${BASELINE:-} ]]; then
		echo
		echo "before and after, same rounds: medmesh at $base_rev (baseline) and at $(git -C "$root" rev-parse --short HEAD)"
		printf "%-8s %-10s %10s %10s %8s\n" "size" "op" "baseline" "this" "ratio"
		for s in "${sizes[@]}"; do
			printf "%-8s %-10s %10s %10s %8s\n" "${s}MiB" add "$(med base_add_$s)" "$(med mm_add_$s)" "$(ratio "$(med mm_add_$s)" "$(med base_add_$s)")"
			printf "%-8s %-10s %10s %10s %8s\n" "${s}MiB" 2node-get "$(med base_get_$s)" "$(med mm_get_$s)" "$(ratio "$(med mm_get_$s)" "$(med base_get_$s)")"
		done
		for s in "${sizes[@]}"; do
			echo "  ${s} MiB add:  baseline $(rounds base_add_$s); this $(rounds mm_add_$s)"
			echo "  ${s} MiB get:  baseline $(rounds base_get_$s); this $(rounds mm_get_$s)"
		done
	fi
	echo
	echo "each round (MiB/s):"
	for s in "${sizes[@]}"; do
		echo "  ${s} MiB add:  medmesh $(rounds mm_add_$s); kubo-default $(rounds k_add_def_$s); kubo-raw1MiB $(rounds k_add_raw1m_$s)"
		echo "  ${s} MiB get:  medmesh $(rounds mm_get_$s); kubo-default $(rounds k_cat_def_$s); kubo-raw1MiB $(rounds k_cat_raw1m_$s)"
	done
	echo
	echo "owner daemon peak RSS (VmHWM) during the ${peak_rss_size} MiB adds: $((peak_rss_kb / 1024)) MiB (target < 256 MiB)"
	for s in "${sizes[@]}"; do echo "  add ${s} MiB: VmHWM $(rounds mm_rss_$s) MiB; sampled peaks: RssAnon $(rounds mm_anon_$s) MiB, RssFile $(rounds mm_file_$s) MiB (badger's mmapped value log)"; done
	echo
	echo "$FETCHES consecutive two-node fetches of ${FETCH_KB} KiB (wall time of the CLI call, ms):"
	printf "  %-8s p50 %7s  p99 %7s  max %7s  stalls(>10x p50) %s  fetcher stall log lines %s\n" medmesh "$(g mm_p50)" "$(g mm_p99)" "$(g mm_max)" "$(g mm_stalls)" "$(g mm_fetcher_stalls)"
	[[ -n ${SKIP_KUBO:-} ]] || printf "  %-8s p50 %7s  p99 %7s  max %7s  stalls(>10x p50) %s\n" kubo "$(g k_p50)" "$(g k_p99)" "$(g k_max)" "$(g k_stalls)"
} | tee /dev/stderr >"$work/report.txt"
mkdir -p "$here/out"
cp "$work/report.txt" "$here/out/bench-$(date -u +%Y%m%dT%H%M%SZ).txt"

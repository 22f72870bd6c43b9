#!/usr/bin/env bash
# Issue #16's ledger simulation at scale: 200 clinics in one process
# (libp2p mocknet, real GossipSub, real ledgers and signatures), one seeded
# workload of Zipf-distributed records and reads, grants, revokes, clinics
# joining and leaving, run on each ledger design in turn. Prints one
# Markdown table with a column per design (docs/BENCHMARKS.md).
#
#   scripts/ledgersim.sh [DESIGNS] [ledgersim flags...]
#
# DESIGNS is comma-separated (default "single", today's ledger: every entry
# to every node; "single,scoped" runs issue #16's scopes on the same
# workload and seed once they are in the build). Further flags go to
# scripts/ledgersim (go run ./scripts/ledgersim -h), e.g. -nodes 50 or
# -duration 30s; without them it runs DefaultConfig (200 clinics, 60 s of
# workload). The 200-node run takes a few minutes of both cores: run it
# when the machine is quiet, and keep the load average printed with it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
designs=${1:-single}
shift || true
work=$(mktemp -d /tmp/medmesh-ledgersim.XXXXXX)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
# shellcheck source=lib.sh
source "$root/scripts/lib.sh"

src=$(bench_source)
log "building ledgersim from $(git -C "$root" rev-parse --short HEAD)"
(cd "$src" && go build -o "$work/ledgersim" ./scripts/ledgersim)
log "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$work/ledgersim" -design "$designs" "$@"

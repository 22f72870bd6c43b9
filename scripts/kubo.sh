#!/usr/bin/env bash
# Build Kubo (the reference IPFS implementation) for side-by-side benchmarks.
#
# Kubo is built in a throwaway Go module under scripts/.kubo/ (gitignored),
# never in medmesh's go.mod: its dependency graph would otherwise leak into
# ours. `go install pkg@version` is refused for kubo (replace directives), so
# we use a tools.go module instead. The binary is cached; a rebuild happens
# only when the version changes or KUBO_REBUILD=1.
#
# Usage: scripts/kubo.sh            -> prints the path of the ipfs binary
#        KUBO_VERSION=v0.43.0 scripts/kubo.sh
set -euo pipefail

KUBO_VERSION=${KUBO_VERSION:-v0.43.0}
here=$(cd "$(dirname "$0")" && pwd)
dir="$here/.kubo/$KUBO_VERSION"
bin="$dir/ipfs"

if [[ -x $bin && -z ${KUBO_REBUILD:-} ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$here/.kubo/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# GOFLAGS from the caller (e.g. -mod=vendor) must not leak into this module.
export GOFLAGS=-mod=mod GOWORK=off
{
	go mod init kubobuild
	cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/ipfs/kubo/cmd/ipfs"
GO
	go get "github.com/ipfs/kubo@$KUBO_VERSION"
	go mod tidy
	go build -trimpath -o "$tmp/ipfs" github.com/ipfs/kubo/cmd/ipfs
} >&2
mv "$tmp/ipfs" "$bin"
"$bin" version >&2
echo "$bin"

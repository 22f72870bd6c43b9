#!/usr/bin/env bash
# Build the medmesh binary with its version and commit stamped in
# (`medmesh version`, the medmesh_build_info metric).
#   scripts/build.sh [OUTPUT]      default ./medmesh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-./medmesh}
version=$(git describe --tags --always --dirty 2>/dev/null || echo devel)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then commit="$commit-dirty"; fi
pkg=github.com/medmesh/medmesh/internal/buildinfo
go build -trimpath -ldflags "-X $pkg.version=$version -X $pkg.commit=$commit" -o "$out" ./cmd/medmesh
echo "built $out: $("$out" version --json | tr -d '\n ')"

// Package buildinfo says which medmesh this is: its version, the commit it
// was built from and the Go toolchain, for `medmesh version` and the
// medmesh_build_info metric.
//
// A release build sets the version and commit with the linker:
//
//	go build -ldflags "-X github.com/medmesh/medmesh/internal/buildinfo.version=v0.4.0 \
//	  -X github.com/medmesh/medmesh/internal/buildinfo.commit=$(git rev-parse HEAD)" ./cmd/medmesh
//
// (scripts/build.sh does it). Without them, what the Go toolchain recorded
// is used: the module version of `go install ...@vX`, and the VCS revision
// of a build in a git checkout (unless -buildvcs=false).
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set by -ldflags -X at build time; never written at run time.
var (
	version string
	commit  string
)

// Info describes the running binary.
type Info struct {
	// Version is the release ("v0.4.0"), or "devel" for a build from a
	// checkout without one.
	Version string
	// Commit is the VCS revision ("unknown" if not recorded), with
	// "-dirty" when the tree had uncommitted changes.
	Commit string
	// Go is the toolchain (runtime.Version()).
	Go string
	// Platform is GOOS/GOARCH.
	Platform string
}

// Get returns the binary's build information.
func Get() Info {
	in := Info{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		if in.Commit == "" {
			dirty := false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					in.Commit = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if in.Commit != "" && dirty {
				in.Commit += "-dirty"
			}
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

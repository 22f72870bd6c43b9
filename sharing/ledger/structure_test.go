package ledger

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// The package keeps no mutable state of its own (two ledgers in one
// process share nothing): its package-level variables are error sentinels
// and the immutable CBOR modes, and nothing else.
func TestNoPackageLevelState(t *testing.T) {
	allowed := map[string]bool{"encMode": true, "decMode": true}
	for _, f := range parsePackage(t) {
		for _, d := range f.file.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, sp := range g.Specs {
				for _, n := range sp.(*ast.ValueSpec).Names {
					if !allowed[n.Name] && !strings.HasPrefix(n.Name, "Err") && !strings.HasPrefix(n.Name, "err") {
						t.Errorf("%s: package-level variable %s: keep state in a Core or Ledger, constants in const", f.name, n.Name)
					}
				}
			}
		}
	}
}

// The core does no network I/O: only the transport (net.go, and
// net_scopes.go for the scopes' topics) imports libp2p's host, network and
// pubsub packages.
func TestOnlyTheTransportImportsTheNetwork(t *testing.T) {
	for _, f := range parsePackage(t) {
		if f.name == "net.go" || f.name == "net_scopes.go" || f.name == "net_gossip.go" {
			continue
		}
		for _, imp := range f.file.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if strings.Contains(p, "go-libp2p-pubsub") || strings.HasSuffix(p, "core/host") || strings.HasSuffix(p, "core/network") || strings.HasSuffix(p, "core/protocol") {
				t.Errorf("%s imports %s: the network belongs to the transport (net.go)", f.name, p)
			}
		}
	}
}

type parsedFile struct {
	name string
	file *ast.File
}

func parsePackage(t *testing.T) []parsedFile {
	t.Helper()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []parsedFile
	fs := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fs, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, parsedFile{p, f})
	}
	return out
}

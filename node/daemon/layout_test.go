package daemon

import (
	"bufio"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/medmesh/medmesh/"

// goImports returns, for each package directory of the module (relative to
// its root), the module-internal and standard packages its non-test files
// import.
func goImports(t *testing.T) map[string]map[string]bool {
	t.Helper()
	root := filepath.Join("..", "..")
	out := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		dir = filepath.ToSlash(dir)
		if out[dir] == nil {
			out[dir] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			out[dir][strings.Trim(imp.Path.Value, `"`)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The layering of issue #12, kept: HTTP lives in one layer, the daemon is
// a composition root, the access policy is pure, and the top-level
// packages do not import upwards.
func TestLayering(t *testing.T) {
	httpOK := func(dir string) bool {
		if strings.HasPrefix(dir, "cmd/") || strings.HasPrefix(dir, "scripts/") || strings.HasPrefix(dir, "internal/") && strings.Contains(dir, "test") {
			return true
		}
		switch dir {
		case "node/api", "node/httpapi", "node/dicomweb", "node/fhir", "node/console":
			return true
		}
		return false
	}
	for dir, imps := range goImports(t) {
		if imps["net/http"] && !httpOK(dir) {
			t.Errorf("%s imports net/http: HTTP belongs to node/api, node/httpapi and the web packages beside it", dir)
		}
		for imp := range imps {
			in := strings.TrimPrefix(imp, module)
			switch {
			case strings.HasPrefix(dir, "storage") && strings.HasPrefix(in, "sharing"):
				t.Errorf("%s imports %s: storage never imports sharing", dir, imp)
			case strings.HasPrefix(dir, "sharing") && strings.HasPrefix(in, "node"):
				t.Errorf("%s imports %s: sharing never imports node", dir, imp)
			case dir == "sharing/access" && (strings.HasPrefix(in, "storage") || strings.HasPrefix(in, "node") || strings.Contains(imp, "libp2p/go-libp2p/") && !strings.HasSuffix(imp, "core/peer") || imp == "net/http" || strings.Contains(imp, "badger")):
				t.Errorf("sharing/access imports %s: the access policy is a pure function of ledger state and time", imp)
			}
		}
	}
}

// node/daemon is wiring: start, stop, connect services, fan ledger events
// out. Its non-test code stays well under 1,200 lines.
func TestDaemonIsWiring(t *testing.T) {
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			n++
		}
		f.Close()
	}
	if n >= 1200 {
		t.Errorf("node/daemon has %d lines of non-test Go: move the concern into a service of its own under node/", n)
	}
	t.Logf("node/daemon: %d lines of non-test Go", n)
}

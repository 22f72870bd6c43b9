package fuzzsmoke

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var fuzzFunc = regexp.MustCompile(`^func (Fuzz\w+)\(f \*testing\.F\)`)

// target is one fuzz function and the package directory it lives in.
type target struct{ dir, name string }

// targets finds every fuzz function of the module below root.
func targets(t *testing.T, root string) []target {
	var out []target
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := fuzzFunc.FindStringSubmatch(sc.Text()); m != nil {
				out = append(out, target{dir: filepath.Dir(path), name: m[1]})
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryFuzzTargetRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("fuzzes every target for a few seconds")
	}
	fuzztime := os.Getenv("MEDMESH_FUZZTIME")
	if fuzztime == "" {
		fuzztime = "3s"
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ts := targets(t, root)
	if len(ts) < 10 {
		t.Fatalf("found only %d fuzz targets below %s", len(ts), root)
	}
	for _, tg := range ts {
		rel, _ := filepath.Rel(root, tg.dir)
		t.Run(rel+"/"+tg.name, func(t *testing.T) {
			start := time.Now()
			run := func(fuzztime string) (bytes.Buffer, error) {
				cmd := exec.Command("go", "test", "-run=^$", "-fuzz=^"+tg.name+"$", "-fuzztime="+fuzztime, "-parallel=1", ".")
				cmd.Dir = tg.dir
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				return out, cmd.Run()
			}
			out, err := run(fuzztime)
			// On a loaded machine the engine may not finish gathering its
			// baseline coverage within a few seconds, or finds its worker
			// stalled at the deadline (seen: no executions for 18 s of a
			// 30 s run while the whole suite shared two cores), and stops
			// with "context deadline exceeded", having found nothing: give
			// it longer, twice. A crash ("Failing input") is never retried,
			// and a target that hangs fails all three runs.
			for retry, ft := 0, fuzztime; retry < 2 && err != nil && strings.Contains(out.String(), "context deadline exceeded") && !strings.Contains(out.String(), "Failing input"); retry++ {
				t.Logf("%s: the engine stopped at its deadline in %s without finding anything; again with 30s", tg.name, ft)
				ft = "30s"
				out, err = run(ft)
			}
			if err != nil {
				t.Fatalf("%s in %s: %v\n%s", tg.name, rel, err, out.String())
			}
			// The last "fuzz: elapsed" line says how far it got.
			var last string
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(l, "fuzz: elapsed") {
					last = l
				}
			}
			t.Logf("%s: %s (%v in all)", tg.name, last, time.Since(start).Round(time.Second))
		})
	}
}

package dicom

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdataDir returns the shared DICOM test data directory or skips.
func testdataDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("MEDMESH_DICOM_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "testdata", "dicom")
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.md")); err != nil {
		t.Skipf("DICOM test data not found at %s (set MEDMESH_DICOM_TESTDATA): %v", dir, err)
	}
	return dir
}

type manifestEntry struct {
	File   string // relative path
	Parse  bool   // intent: must parse (true) or be rejected (false)
	Intent string
}

// readManifest parses MANIFEST.md's table: the first column is the file, the
// "intent" column says **parse** or **reject**.
func readManifest(t testing.TB, dir string) []manifestEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "MANIFEST.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []manifestEntry
	intentCol := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cols := strings.Split(line, "|")
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		if intentCol < 0 {
			for i, c := range cols {
				if c == "intent" {
					intentCol = i
				}
			}
			continue
		}
		if !strings.HasPrefix(cols[1], "`") {
			continue
		}
		intent := cols[intentCol]
		e := manifestEntry{File: strings.Trim(cols[1], "`"), Intent: intent}
		switch {
		case strings.HasPrefix(intent, "**parse"):
			e.Parse = true
		case strings.HasPrefix(intent, "**reject"):
		default:
			t.Fatalf("MANIFEST: unknown intent %q for %s", intent, e.File)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		t.Fatal("MANIFEST.md: no table rows")
	}
	return out
}

package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.dcm")
	n, err := Write(p, 0o600, func(w io.Writer) error { _, err := io.WriteString(w, "hello"); return err })
	if err != nil || n != 5 {
		t.Fatalf("write: %d %v", n, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "hello" {
		t.Fatalf("content %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	// A failed fill leaves the old file and no temporary file.
	boom := errors.New("boom")
	if _, err := Write(p, 0o600, func(w io.Writer) error { io.WriteString(w, "partial"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "hello" {
		t.Fatalf("old file changed to %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	if err := WriteBytes(filepath.Join(dir, "k"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

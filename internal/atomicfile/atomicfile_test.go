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

// A large file's writeback is started as it is written, range after range,
// not left for the final sync.
func TestWriteStartsWritebackEarly(t *testing.T) {
	type span struct{ off, n int64 }
	var got []span
	startWriteback = func(f *os.File, off, n int64) {
		got = append(got, span{off, n})
		writebackOS(f, off, n)
	}
	defer func() { startWriteback = writebackOS }()
	const size = 3*writebackStep + 5
	chunk := make([]byte, 1<<20)
	_, err := Write(filepath.Join(t.TempDir(), "big"), 0o600, func(w io.Writer) error {
		for left := int64(size); left > 0; {
			n := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:n]); err != nil {
				return err
			}
			left -= n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("writeback started %d times, want 3: %v", len(got), got)
	}
	for i, s := range got {
		if s.off != int64(i)*writebackStep || s.n != writebackStep {
			t.Fatalf("writeback range %d = %+v, want [%d, +%d)", i, s, int64(i)*writebackStep, writebackStep)
		}
	}
}

// WriteAll places every file, complete, with its mode, and leaves no
// temporary file; a file it cannot place (here a directory in its way)
// fails it, and the files before stay.
func TestWriteAll(t *testing.T) {
	dir := t.TempDir()
	if err := WriteAll(dir, 0o600, []File{{"a", []byte("one")}, {"b", []byte("two")}}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "one", "b": "two"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		st, _ := os.Stat(filepath.Join(dir, name))
		if err != nil || string(b) != want || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %q %v", name, b, err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteAll(dir, 0o600, []File{{"c", []byte("three")}, {"d", []byte("in the way")}}); err == nil {
		t.Fatal("a directory in the way: no error")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "c")); string(b) != "three" {
		t.Fatalf("the file before the failure: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Fatalf("left in the directory: %v", ents)
	}
	if err := WriteAll(dir, 0o600, nil); err != nil {
		t.Fatal(err)
	}
}

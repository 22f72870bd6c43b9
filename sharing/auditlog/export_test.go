package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// A backup carries the log's leaves in order; the restored log must be the
// same tree (same root at every size, same proofs), and an export that is
// damaged, truncated, padded or of another tree must be refused.
func TestExportImport(t *testing.T) {
	ctx := context.Background()
	l, _ := newLog(t)
	for i := range 600 { // more than one import batch
		appendData(t, l, []byte(fmt.Sprintf("entry %d", i)))
	}
	size := l.Size() - 7 // a backup of a prefix: the log grew meanwhile
	var buf bytes.Buffer
	n, err := l.Export(ctx, size, &buf)
	if err != nil {
		t.Fatal(err)
	}
	want, err := l.ExportSize(ctx, size)
	if err != nil || want != n || int64(buf.Len()) != n {
		t.Fatalf("ExportSize %d (%v), Export wrote %d, buffer %d", want, err, n, buf.Len())
	}
	root, _ := l.Root(ctx, size)

	l2, ds2 := newLog(t)
	if err := Import(ctx, ds2, bytes.NewReader(buf.Bytes()), size, root); err != nil {
		t.Fatal(err)
	}
	l2, _ = Open(ctx, ds2)
	if l2.Size() != size {
		t.Fatalf("imported %d leaves, want %d", l2.Size(), size)
	}
	for _, s := range []int64{1, 2, 300, size} {
		a, _ := l.Root(ctx, s)
		b, _ := l2.Root(ctx, s)
		if a != b {
			t.Fatalf("root at %d differs after import", s)
		}
	}
	lf, _ := l.Leaf(ctx, 42)
	if i, ok, _ := l2.Has(ctx, lf.Entry); !ok || i != 42 {
		t.Fatalf("leaf 42 at %d (%v) after import", i, ok)
	}
	// The rest of the log appends after the imported prefix, in the same
	// places: the old tree heads stay consistent.
	for i := size; i < l.Size(); i++ {
		lf, _ := l.Leaf(ctx, i)
		if _, err := l2.Append(ctx, []Leaf{lf}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := l.Root(ctx, l.Size())
	b, _ := l2.Root(ctx, l2.Size())
	if a != b {
		t.Fatal("the log that continued after the import differs")
	}

	bad := map[string][]byte{
		"truncated": buf.Bytes()[:buf.Len()-3],
		"padded":    append(append([]byte{}, buf.Bytes()...), 0),
		"flipped":   func() []byte { b := bytes.Clone(buf.Bytes()); b[len(b)-1] ^= 1; return b }(),
		"empty":     nil,
	}
	for name, raw := range bad {
		_, ds := newLog(t)
		if err := Import(ctx, ds, bytes.NewReader(raw), size, root); !errors.Is(err, ErrImport) {
			t.Errorf("%s: %v, want ErrImport", name, err)
		}
	}
	other, _ := l.Root(ctx, size-1)
	_, ds := newLog(t)
	if err := Import(ctx, ds, bytes.NewReader(buf.Bytes()), size, other); !errors.Is(err, ErrImport) {
		t.Errorf("another root: %v, want ErrImport", err)
	}
	if err := Import(ctx, ds2, bytes.NewReader(buf.Bytes()), size, root); err == nil {
		t.Error("an import into a log that has leaves was accepted")
	}
}

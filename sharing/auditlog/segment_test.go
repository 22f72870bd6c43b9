package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// segmentsOf writes l's segments ending at each of ends (each from the
// previous end, the first from 0), each with a signed head.
func segmentsOf(t testing.TB, l *Log, key crypto.PrivKey, owner peer.ID, ends ...int64) [][]byte {
	t.Helper()
	ctx := context.Background()
	var out [][]byte
	from := int64(0)
	for _, to := range ends {
		root, err := l.Root(ctx, to)
		if err != nil {
			t.Fatal(err)
		}
		head, err := Sign(TreeHead{Owner: owner, Size: to, Root: root, Time: time.Unix(1700000000, 0)}, key)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if n, err := l.WriteSegment(ctx, from, to, head, &buf); err != nil || n != int64(buf.Len()) {
			t.Fatalf("segment [%d, %d): %d bytes written, %d buffered: %v", from, to, n, buf.Len(), err)
		}
		out = append(out, buf.Bytes())
		from = to
	}
	return out
}

// prefixOf is a log holding l's first n leaves, as a restore from a backup
// taken at n leaves leaves it.
func prefixOf(t testing.TB, l *Log, n int64) *Log {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	if _, err := l.Export(ctx, n, &buf); err != nil {
		t.Fatal(err)
	}
	root, _ := l.Root(ctx, n)
	ds := dssyncMap()
	if err := Import(ctx, ds, &buf, n, root); err != nil {
		t.Fatal(err)
	}
	p, err := Open(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A log restored from a backup taken at 50 leaves gets the rest back in
// its order from the segments written at each head signed after it: every
// head the owner signed is consistent with it again, and the heads are
// stored. A segment it already covers is checked and appends nothing.
func TestSegmentsRestoreTheOrder(t *testing.T) {
	ctx := context.Background()
	key, owner := newKey(t)
	l, _ := newLog(t)
	for i := range 600 {
		appendData(t, l, []byte(fmt.Sprintf("entry %d", i)))
	}
	segs := segmentsOf(t, l, key, owner, 40, 350, 600)

	r := prefixOf(t, l, 50)
	for i, s := range segs {
		seg, n, err := r.ImportSegment(ctx, bytes.NewReader(s), owner)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		want := max(0, seg.To-max(seg.From, 50))
		if n != want || r.Size() != max(seg.To, 50) {
			t.Fatalf("segment [%d, %d): appended %d (want %d), log of %d", seg.From, seg.To, n, want, r.Size())
		}
		if _, ok, _ := r.Head(ctx, seg.To); !ok {
			t.Fatalf("the head of size %d is not stored", seg.To)
		}
	}
	for _, size := range []int64{40, 50, 51, 350, 600} {
		a, _ := l.Root(ctx, size)
		b, _ := r.Root(ctx, size)
		if a != b {
			t.Fatalf("root at %d differs after the segments", size)
		}
	}
	if _, n, err := r.ImportSegment(ctx, bytes.NewReader(segs[1]), owner); err != nil || n != 0 || r.Size() != 600 {
		t.Fatalf("a segment imported twice: %d appended, %v", n, err)
	}
}

// What a segment must not do: start past the log's end, disagree with the
// leaves the log has, or not make its root; each is refused and leaves the
// log as it was, and the right segment still imports after them.
func TestSegmentRefused(t *testing.T) {
	ctx := context.Background()
	key, owner := newKey(t)
	_, stranger := newKey(t)
	l, _ := newLog(t)
	for i := range 300 {
		appendData(t, l, []byte(fmt.Sprintf("entry %d", i)))
	}
	segs := segmentsOf(t, l, key, owner, 100, 300)

	r := prefixOf(t, l, 50)
	if _, _, err := r.ImportSegment(ctx, bytes.NewReader(segs[1]), owner); !errors.Is(err, ErrSegmentGap) || r.Size() != 50 {
		t.Fatalf("a segment past the end: %v, log of %d", err, r.Size())
	}
	rootAt := len(segmentMagic) + 2 // from 0 and to 100: one byte each
	// A segment without a head whose root is wrong: its leaves are
	// appended (more than one batch) before the root is checked.
	var headless bytes.Buffer
	if _, err := l.WriteSegment(ctx, 0, 300, nil, &headless); err != nil {
		t.Fatal(err)
	}
	headless.Bytes()[len(segmentMagic)+3] ^= 1 // to 300 takes two bytes
	bad := map[string][]byte{
		"truncated": segs[0][:len(segs[0])-5],
		"padded":    append(bytes.Clone(segs[0]), 0),
		"root":      func() []byte { b := bytes.Clone(segs[0]); b[rootAt] ^= 1; return b }(),
		"headless":  headless.Bytes(),
		"leaf":      func() []byte { b := bytes.Clone(segs[0]); b[len(b)-1] ^= 1; return b }(),
		"magic":     append([]byte("medmesh-audit-segment/2\n"), segs[0][len(segmentMagic):]...),
		"empty":     nil,
	}
	for name, raw := range bad {
		if _, _, err := r.ImportSegment(ctx, bytes.NewReader(raw), owner); !errors.Is(err, ErrImport) || r.Size() != 50 {
			t.Errorf("%s: %v, log of %d; want ErrImport and 50 leaves", name, err, r.Size())
		}
	}
	if _, _, err := r.ImportSegment(ctx, bytes.NewReader(segs[0]), stranger); !errors.Is(err, ErrImport) || r.Size() != 50 {
		t.Errorf("a head another node's key does not verify: %v", err)
	}
	// The root check runs after the leaves are appended ("headless"): the
	// cut back leaves no index behind, so the right segments append them
	// again.
	if _, n, err := r.ImportSegment(ctx, bytes.NewReader(segs[0]), owner); err != nil || n != 50 {
		t.Fatalf("the right segment after the refusals: %d appended, %v", n, err)
	}
	a, _ := l.Root(ctx, 100)
	b, _ := r.Root(ctx, 100)
	if a != b {
		t.Fatal("root at 100 differs")
	}

	// A log that appended what it synced in another order before the
	// segment came: refused, not overwritten.
	d := prefixOf(t, l, 50)
	for i := 59; i >= 50; i-- {
		lf, _ := l.Leaf(ctx, int64(i))
		if _, err := d.Append(ctx, []Leaf{lf}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := d.ImportSegment(ctx, bytes.NewReader(segs[0]), owner); !errors.Is(err, ErrImport) || d.Size() != 60 {
		t.Fatalf("a diverged log: %v, log of %d", err, d.Size())
	}
}

// FuzzImportSegment: no segment, however broken, panics the import; what
// it refuses leaves the log as it was, and what it accepts makes the root
// the segment names.
func FuzzImportSegment(f *testing.F) {
	key, owner := newKey(f)
	ds := dssyncMap()
	l, _ := Open(context.Background(), ds)
	for i := range 20 {
		d := []byte(fmt.Sprintf("entry %d", i))
		if _, err := l.Append(context.Background(), []Leaf{{Data: d, Entry: fakeCID(d), Record: testRecord}}); err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range segmentsOf(f, l, key, owner, 3, 9, 20) {
		f.Add(s)
	}
	f.Add([]byte(segmentMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := prefixOf(t, l, 3)
		seg, _, err := r.ImportSegment(context.Background(), bytes.NewReader(b), owner)
		if err != nil {
			if !errors.Is(err, ErrImport) && !errors.Is(err, ErrSegmentGap) {
				t.Fatalf("an error that is neither a refused import nor a gap: %v", err)
			}
			if r.Size() != 3 {
				t.Fatalf("a refused segment left a log of %d leaves", r.Size())
			}
			return
		}
		if root, _ := r.Root(context.Background(), seg.To); root != seg.Root {
			t.Fatal("an accepted segment does not make its root")
		}
	})
}

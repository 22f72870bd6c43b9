package record

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestLargeStreamBoundedMemory seals a 256 MiB stream generated on the fly
// into badger and reads it back, checking the plaintext hash and that the
// live heap never grows by more than a few dozen chunks' worth.
func TestLargeStreamBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB through badger")
	}
	const size = 256 << 20
	const maxGrowth = 64 << 20 // the data itself is 256 MiB
	s := openStore(t)
	key := newKey(t)
	base := liveHeap()
	var peak uint64
	// Sample 16 times.
	sample := func(n int64) {
		if n%(16<<20) == 7<<20 {
			peak = max(peak, liveHeap())
		}
	}

	in := sha256.New()
	b := NewBuilder(s.Blocks, key, Options{Progress: sample})
	f, err := b.AddFile(t.Context(), "big.bin", io.TeeReader(newGenReader(1, size), in))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Finish(t.Context(), Header{Kind: "file"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != size || len(f.Chunks) != size/DefaultChunkSize || [32]byte(in.Sum(nil)) != f.SHA256 {
		t.Fatalf("file: size %d, %d chunks, hash mismatch %v", f.Size, len(f.Chunks), [32]byte(in.Sum(nil)) != f.SHA256)
	}
	ingestPeak := peak
	t.Logf("ingest: live heap %d MiB at start, peak %d MiB", base>>20, ingestPeak>>20)

	m, err := OpenManifest(t.Context(), s.Blocks, res.ID, key)
	if err != nil {
		t.Fatal(err)
	}
	base2 := liveHeap()
	peak = 0
	out := sha256.New()
	if err := ReadFile(t.Context(), s.Blocks, key, m.Files[0], 0, out, ReadOptions{Progress: sample}); err != nil {
		t.Fatal(err)
	}
	if [32]byte(out.Sum(nil)) != f.SHA256 {
		t.Fatal("read back a different plaintext")
	}
	t.Logf("read: live heap %d MiB at start, peak %d MiB", base2>>20, peak>>20)
	if ingestPeak > base+maxGrowth || peak > base2+maxGrowth {
		t.Fatalf("heap grew too much: ingest %d→%d MiB, read %d→%d MiB", base>>20, ingestPeak>>20, base2>>20, peak>>20)
	}
}

// countingGetter tracks how many chunks are fetched but not yet written.
type countingGetter struct {
	BlockGetter
	started, written atomic.Int64
	maxAhead         atomic.Int64
	delay            time.Duration
}

func (g *countingGetter) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	ahead := g.started.Add(1) - g.written.Load()
	for {
		m := g.maxAhead.Load()
		if ahead <= m || g.maxAhead.CompareAndSwap(m, ahead) {
			break
		}
	}
	time.Sleep(g.delay)
	return g.BlockGetter.Get(ctx, c)
}

type countingWriter struct {
	g *countingGetter
	bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.g.written.Add(1)
	return w.Buffer.Write(p)
}

func TestReadFileConcurrencyBound(t *testing.T) {
	st := newMemStore()
	key := newKey(t)
	data := randBytes(9, 40*MinChunkSize+5)
	res := build(t, st, key, MinChunkSize, file{"a", data})
	for _, conc := range []int{1, 4, 16} {
		g := &countingGetter{BlockGetter: st, delay: time.Millisecond}
		w := &countingWriter{g: g}
		err := ReadFile(t.Context(), g, key, res.Manifest.Files[0], 0, w, ReadOptions{Concurrency: conc})
		if err != nil || !bytes.Equal(w.Bytes(), data) {
			t.Fatalf("concurrency %d: %v", conc, err)
		}
		if got := g.maxAhead.Load(); got > int64(conc) || (conc > 1 && got < 2) {
			t.Fatalf("concurrency %d: %d chunks in flight", conc, got)
		}
	}
}

// blockingGetter blocks until its context ends.
type blockingGetter struct{ calls atomic.Int64 }

func (g *blockingGetter) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	g.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestReadFileCancel(t *testing.T) {
	st := newMemStore()
	key := newKey(t)
	res := build(t, st, key, MinChunkSize, file{"a", randBytes(3, 20*MinChunkSize)})
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	g := &blockingGetter{}
	err := ReadFile(ctx, g, key, res.Manifest.Files[0], 0, io.Discard, ReadOptions{Concurrency: 4})
	if n := g.calls.Load(); !errors.Is(err, context.DeadlineExceeded) || n < 1 || n > 4 {
		t.Fatalf("got %v after %d fetches", err, g.calls.Load())
	}
	noLeak(t, before)
}

// noLeak checks that the goroutine count is back to before.
func noLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left behind", n-before)
	}
}

// failingWriter fails on its second write.
type failingWriter struct {
	mu sync.Mutex
	n  int
}

var errFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n++; w.n == 2 {
		return 0, errFull
	}
	return len(p), nil
}

func TestReadFileWriterError(t *testing.T) {
	st := newMemStore()
	key := newKey(t)
	res := build(t, st, key, MinChunkSize, file{"a", randBytes(4, 10*MinChunkSize)})
	err := ReadFile(t.Context(), st, key, res.Manifest.Files[0], 0, &failingWriter{}, ReadOptions{Concurrency: 3})
	wantErr(t, err, errFull)
}

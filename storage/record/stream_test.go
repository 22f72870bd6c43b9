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

// sliceStream yields blocks in a given order, then err.
type sliceStream struct {
	blks []blocks.Block
	err  error
}

func (s *sliceStream) Next(ctx context.Context) (blocks.Block, error) {
	if len(s.blks) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	b := s.blks[0]
	s.blks = s.blks[1:]
	return b, nil
}

func streamOf(t *testing.T, st *memStore, f File) *sliceStream {
	t.Helper()
	s := &sliceStream{}
	for _, c := range f.Chunks {
		b, err := st.Get(t.Context(), c.CID)
		if err != nil {
			t.Fatal(err)
		}
		s.blks = append(s.blks, b)
	}
	return s
}

// ReadFileStream reads a file from blocks in chunk order; a block out of
// place, a forged block and the stream's error each end the read.
func TestReadFileStream(t *testing.T) {
	st := newMemStore()
	key := newKey(t)
	data := randBytes(5, 20*MinChunkSize+3)
	res := build(t, st, key, MinChunkSize, file{"a", data})
	f := res.Manifest.Files[0]
	for _, trusted := range []bool{false, true} {
		var buf bytes.Buffer
		err := ReadFileStream(t.Context(), streamOf(t, st, f), key, f, 0, &buf, ReadOptions{Concurrency: 4, GetterVerifies: trusted})
		if err != nil || !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("trusted %v: %v", trusted, err)
		}
	}

	swapped := streamOf(t, st, f)
	swapped.blks[3], swapped.blks[4] = swapped.blks[4], swapped.blks[3]
	err := ReadFileStream(t.Context(), swapped, key, f, 0, io.Discard, ReadOptions{Concurrency: 4, GetterVerifies: true})
	wantErr(t, err, ErrBlockMismatch)

	forged := streamOf(t, st, f)
	raw := append([]byte(nil), forged.blks[2].RawData()...)
	raw[7] ^= 1
	forged.blks[2], _ = blocks.NewBlockWithCid(raw, forged.blks[2].Cid())
	err = ReadFileStream(t.Context(), forged, key, f, 0, io.Discard, ReadOptions{Concurrency: 4})
	wantErr(t, err, ErrBlockMismatch)

	errFetch := errors.New("3 of 21 blocks missing")
	short := streamOf(t, st, f)
	short.blks, short.err = short.blks[:5], errFetch
	before := runtime.NumGoroutine()
	err = ReadFileStream(t.Context(), short, key, f, 0, io.Discard, ReadOptions{Concurrency: 4})
	wantErr(t, err, errFetch)
	noLeak(t, before)
}

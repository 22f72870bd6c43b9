package record

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/medmesh/medmesh/storage/blockstore"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// openStore opens a real badger blockstore in a temporary directory.
func openStore(t testing.TB) *blockstore.Store {
	t.Helper()
	s, err := blockstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func newKey(t testing.TB) Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// genReader streams n pseudo-random bytes without holding them.
type genReader struct {
	r *rand.ChaCha8
	n int64
}

func newGenReader(seed byte, n int64) *genReader {
	var s [32]byte
	s[0] = seed
	return &genReader{r: rand.NewChaCha8(s), n: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	n, _ := g.r.Read(p)
	g.n -= int64(n)
	return n, nil
}

// file is a test input: a path and its contents.
type file struct {
	path string
	data []byte
}

func build(t testing.TB, bs BlockPutter, key Key, chunkSize int, files ...file) *Result {
	t.Helper()
	b := NewBuilder(bs, key, Options{ChunkSize: chunkSize})
	for _, f := range files {
		got, err := b.AddFile(t.Context(), f.path, bytes.NewReader(f.data))
		if err != nil {
			t.Fatalf("AddFile %q: %v", f.path, err)
		}
		if got.Size != int64(len(f.data)) {
			t.Fatalf("AddFile %q: size %d, want %d", f.path, got.Size, len(f.data))
		}
	}
	res, err := b.Finish(t.Context(), Header{Kind: "file", Name: "test.bin", MediaType: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readAll(g BlockGetter, key Key, f File, idx int, conc int) ([]byte, error) {
	var buf bytes.Buffer
	err := ReadFile(context.Background(), g, key, f, idx, &buf, ReadOptions{Concurrency: conc})
	return buf.Bytes(), err
}

// memStore is an in-memory BlockPutter and BlockGetter that keeps the bytes
// it is given (so the Builder must not reuse them) and returns them as is
// (so a test can serve wrong bytes under a CID).
type memStore struct {
	mu sync.Mutex
	m  map[cid.Cid][]byte
}

func newMemStore() *memStore { return &memStore{m: map[cid.Cid][]byte{}} }

func (s *memStore) Put(_ context.Context, b blocks.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[b.Cid()] = b.RawData()
	return nil
}

func (s *memStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[c]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return blocks.NewBlockWithCid(d, c)
}

// discard is a BlockPutter that checks each block's CID and drops it.
type discard struct{ n int64 }

func (d *discard) Put(_ context.Context, b blocks.Block) error {
	if err := verifyBlock(b.Cid(), b.RawData()); err != nil {
		return err
	}
	d.n++
	return nil
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

// rawBlock makes a block of the record form (CIDv1 raw sha2-256).
func rawBlock(data []byte) blocks.Block {
	b, _ := blocks.NewBlockWithCid(data, rawCID(sha256.Sum256(data)))
	return b
}

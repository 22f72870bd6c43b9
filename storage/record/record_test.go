package record

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	bstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

func TestRoundTripSizes(t *testing.T) {
	s := openStore(t)
	const cs = MinChunkSize
	cases := []struct {
		name   string
		chunk  int
		size   int
		chunks int
	}{
		{"empty", cs, 0, 1},
		{"one byte", cs, 1, 1},
		{"chunk-1", cs, cs - 1, 1},
		{"exactly one chunk", cs, cs, 1},
		{"chunk+1", cs, cs + 1, 2},
		{"three chunks", cs, 3 * cs, 3},
		{"three chunks+7", cs, 3*cs + 7, 4},
		{"default: exactly one chunk", 0, DefaultChunkSize, 1},
		{"default: chunk+1", 0, DefaultChunkSize + 1, 2},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := newKey(t)
			data := randBytes(uint64(i), tc.size)
			res := build(t, s.Blocks, key, tc.chunk, file{"a", data})
			f := res.Manifest.Files[0]
			if len(f.Chunks) != tc.chunks {
				t.Fatalf("%d chunks, want %d", len(f.Chunks), tc.chunks)
			}
			if f.SHA256 != sha256.Sum256(data) || res.Size != int64(tc.size) {
				t.Fatalf("file hash or size wrong")
			}
			m, err := OpenManifest(t.Context(), s.Blocks, res.ID, key)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, res.Manifest) {
				t.Fatalf("manifest changed in the round trip:\n got %+v\nwant %+v", m, res.Manifest)
			}
			for _, conc := range []int{0, 1, 3} {
				got, err := readAll(s.Blocks, key, m.Files[0], 0, conc)
				if err != nil {
					t.Fatalf("concurrency %d: %v", conc, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("concurrency %d: plaintext differs", conc)
				}
			}
			// Blocks are ciphertext: no block contains a 32-byte run of
			// the plaintext.
			for _, c := range res.Blocks {
				b, err := s.Blocks.Get(t.Context(), c)
				if err != nil {
					t.Fatal(err)
				}
				if len(data) >= 32 && bytes.Contains(b.RawData(), data[:32]) {
					t.Fatalf("block %s holds plaintext", c)
				}
			}
		})
	}
}

func TestMultiFileRecord(t *testing.T) {
	s := openStore(t)
	key := newKey(t)
	files := []file{
		{"empty-1.dcm", nil},
		{"small.dcm", []byte("DICM")},
		{"empty-2.dcm", nil},
		{"big.dcm", randBytes(7, 5*MinChunkSize+100)},
	}
	var progress []int64
	b := NewBuilder(s.Blocks, key, Options{ChunkSize: MinChunkSize, Progress: func(n int64) { progress = append(progress, n) }})
	for _, f := range files {
		if _, err := b.AddFile(t.Context(), f.path, bytes.NewReader(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	created := time.Date(2025, 3, 4, 5, 6, 7, 8, time.FixedZone("CET", 3600))
	h := Header{Kind: "dicom-study", Name: "CT chest", MediaType: "application/dicom", Created: created, Meta: []byte{1, 2, 3}}
	res, err := b.Finish(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddFile(t.Context(), "late", strings.NewReader("x")); !errors.Is(err, ErrBuilderClosed) {
		t.Fatalf("AddFile after Finish: %v", err)
	}
	if _, err := b.Finish(t.Context(), h); !errors.Is(err, ErrBuilderClosed) {
		t.Fatalf("second Finish: %v", err)
	}
	total := int64(4 + 5*MinChunkSize + 100)
	if res.Size != total || progress[len(progress)-1] != total || len(progress) != 1+1+1+6 {
		t.Fatalf("size %d, progress %v", res.Size, progress)
	}

	m, err := OpenManifest(t.Context(), s.Blocks, res.ID, key)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != h.Kind || m.Name != h.Name || m.MediaType != h.MediaType || !m.Created.Equal(created) ||
		m.Version != 1 || m.Prev.Defined() || !bytes.Equal(m.Meta, h.Meta) || len(m.Files) != len(files) {
		t.Fatalf("manifest header: %+v", m)
	}
	if !reflect.DeepEqual(m.Blocks(res.ID), res.Blocks) || m.Size() != total {
		t.Fatal("Result.Blocks differs from Manifest.Blocks")
	}
	// The two empty files sit at different positions: different blocks.
	if m.Files[0].Chunks[0].CID == m.Files[2].Chunks[0].CID {
		t.Fatal("two empty files share a block: nonce reuse")
	}
	for _, c := range res.Blocks {
		if ok, err := s.Blocks.Has(t.Context(), c); err != nil || !ok {
			t.Fatalf("block %s not stored: %v", c, err)
		}
	}
	for i, f := range files {
		if m.Files[i].Path != f.path {
			t.Fatalf("file %d path %q", i, m.Files[i].Path)
		}
		got, err := readAll(s.Blocks, key, m.Files[i], i, 2)
		if err != nil || !bytes.Equal(got, f.data) {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	// A file read at another file's index does not open.
	_, err = readAll(s.Blocks, key, m.Files[0], 2, 2)
	wantErr(t, err, ErrTampered)
}

func TestWrongKey(t *testing.T) {
	s := openStore(t)
	key := newKey(t)
	res := build(t, s.Blocks, key, MinChunkSize, file{"a", randBytes(1, 3000)})
	other := newKey(t)
	_, err := OpenManifest(t.Context(), s.Blocks, res.ID, other)
	wantErr(t, err, ErrWrongKey)
	_, err = readAll(s.Blocks, other, res.Manifest.Files[0], 0, 4)
	wantErr(t, err, ErrTampered)
	// A chunk is not a manifest: opening it as a record fails cleanly.
	_, err = OpenManifest(t.Context(), s.Blocks, res.Blocks[0], key)
	wantErr(t, err, ErrWrongKey)
}

func TestTamperedChunk(t *testing.T) {
	s := openStore(t)
	key := newKey(t)
	data := randBytes(2, 3*MinChunkSize)
	res := build(t, s.Blocks, key, MinChunkSize, file{"a", data})
	f := res.Manifest.Files[0]
	orig, err := s.Blocks.Get(t.Context(), f.Chunks[1].CID)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(orig.RawData())
	bad[10] ^= 0x01

	// Wrong bytes under the original CID: the getter (a network, say)
	// lies. Use a non-validating view of the same badger database.
	raw := bstore.NewBlockstore(s.DS)
	planted, _ := blocks.NewBlockWithCid(bad, f.Chunks[1].CID)
	if err := raw.DeleteBlock(t.Context(), f.Chunks[1].CID); err != nil {
		t.Fatal(err)
	}
	if err := raw.Put(t.Context(), planted); err != nil {
		t.Fatal(err)
	}
	_, err = readAll(raw, key, f, 0, 4)
	wantErr(t, err, ErrBlockMismatch)
	// The validating blockstore catches it too, and ReadFile passes that on.
	_, err = readAll(s.Blocks, key, f, 0, 4)
	wantErr(t, err, bstore.ErrHashMismatch)

	// A modified chunk under its own, matching CID (a forged File): the
	// CID checks out but the chunk does not authenticate.
	forged := rawBlock(bad)
	if err := s.Blocks.Put(t.Context(), forged); err != nil {
		t.Fatal(err)
	}
	g := f
	g.Chunks = append([]Chunk(nil), f.Chunks...)
	g.Chunks[1].CID = forged.Cid()
	_, err = readAll(s.Blocks, key, g, 0, 4)
	wantErr(t, err, ErrTampered)

	// Restore the original block.
	if err := raw.DeleteBlock(t.Context(), f.Chunks[1].CID); err != nil {
		t.Fatal(err)
	}
	if err := raw.Put(t.Context(), orig); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(s.Blocks, key, f, 0, 4); err != nil {
		t.Fatalf("after restore: %v", err)
	}

	// A wrong size in the File is caught before decryption.
	g.Chunks[1] = f.Chunks[1]
	g.Chunks[2].Size--
	g.Size--
	_, err = readAll(s.Blocks, key, g, 0, 4)
	wantErr(t, err, ErrTampered)

	// A correct File with a wrong SHA-256 is caught at the end.
	g = f
	g.SHA256[0] ^= 1
	_, err = readAll(s.Blocks, key, g, 0, 4)
	wantErr(t, err, ErrTampered)
}

func TestSwappedChunks(t *testing.T) {
	s := openStore(t)
	key := newKey(t)
	a, b := randBytes(3, 3*MinChunkSize), randBytes(4, 3*MinChunkSize)
	res := build(t, s.Blocks, key, MinChunkSize, file{"a", a}, file{"b", b})
	fa, fb := res.Manifest.Files[0], res.Manifest.Files[1]

	swapped := fa
	swapped.Chunks = append([]Chunk(nil), fa.Chunks...)
	swapped.Chunks[0], swapped.Chunks[1] = swapped.Chunks[1], swapped.Chunks[0]
	_, err := readAll(s.Blocks, key, swapped, 0, 4)
	wantErr(t, err, ErrTampered)

	// Chunk 1 of file b put in place of chunk 1 of file a.
	moved := fa
	moved.Chunks = append([]Chunk(nil), fa.Chunks...)
	moved.Chunks[1] = fb.Chunks[1]
	_, err = readAll(s.Blocks, key, moved, 0, 4)
	wantErr(t, err, ErrTampered)

	// A non-final chunk moved to the end (a final chunk dropped and replaced).
	reord := fa
	reord.Chunks = []Chunk{fa.Chunks[0], fa.Chunks[2], fa.Chunks[1]}
	_, err = readAll(s.Blocks, key, reord, 0, 1)
	wantErr(t, err, ErrTampered)
}

func TestDroppedLastChunk(t *testing.T) {
	s := openStore(t)
	key := newKey(t)
	data := randBytes(5, 3*MinChunkSize+1)
	res := build(t, s.Blocks, key, MinChunkSize, file{"a", data})
	f := res.Manifest.Files[0]

	// Last chunk dropped, size adjusted: only the last-chunk flag tells.
	cut := f
	cut.Chunks = f.Chunks[:len(f.Chunks)-1]
	cut.Size = 3 * MinChunkSize
	got, err := readAll(s.Blocks, key, cut, 0, 4)
	wantErr(t, err, ErrTruncated)
	if len(got) > 2*MinChunkSize {
		t.Fatalf("%d bytes written past the truncation point", len(got))
	}
	// Last chunk dropped, size left: the sizes disagree.
	cut.Size = f.Size
	_, err = readAll(s.Blocks, key, cut, 0, 4)
	wantErr(t, err, ErrTruncated)
	// No chunks at all.
	cut.Chunks, cut.Size = nil, 0
	_, err = readAll(s.Blocks, key, cut, 0, 4)
	wantErr(t, err, ErrTruncated)

	// The last block missing from the store: the getter's error, named.
	if err := s.Blocks.DeleteBlock(t.Context(), f.Chunks[3].CID); err != nil {
		t.Fatal(err)
	}
	_, err = readAll(s.Blocks, key, f, 0, 4)
	if !ipld.IsNotFound(err) || !strings.Contains(err.Error(), "chunk 3") {
		t.Fatalf("missing block: %v", err)
	}
}

func TestTruncatedManifest(t *testing.T) {
	s := openStore(t)
	key := newKey(t)
	res := build(t, s.Blocks, key, MinChunkSize, file{"a", []byte("hello")})
	mb, err := s.Blocks.Get(t.Context(), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	full := mb.RawData()
	for _, n := range []int{0, 10, 32, 40, manifestHeaderSize + TagSize, len(full) - 1} {
		cut := rawBlock(bytes.Clone(full[:n]))
		if err := s.Blocks.Put(t.Context(), cut); err != nil {
			t.Fatal(err)
		}
		_, err := OpenManifest(t.Context(), s.Blocks, cut.Cid(), key)
		wantErr(t, err, ErrTruncated)
	}
	// Truncated bytes served under the real record ID.
	raw := bstore.NewBlockstore(s.DS)
	planted, _ := blocks.NewBlockWithCid(full[:len(full)-1], res.ID)
	if err := raw.DeleteBlock(t.Context(), res.ID); err != nil {
		t.Fatal(err)
	}
	if err := raw.Put(t.Context(), planted); err != nil {
		t.Fatal(err)
	}
	_, err = OpenManifest(t.Context(), raw, res.ID, key)
	wantErr(t, err, ErrBlockMismatch)
	// Extra bytes, and a flipped bit in the sealed part.
	long := rawBlock(append(bytes.Clone(full), 0))
	s.Blocks.Put(t.Context(), long)
	_, err = OpenManifest(t.Context(), s.Blocks, long.Cid(), key)
	wantErr(t, err, ErrMalformed)
	flipped := bytes.Clone(full)
	flipped[len(flipped)-1] ^= 1
	fb := rawBlock(flipped)
	s.Blocks.Put(t.Context(), fb)
	_, err = OpenManifest(t.Context(), s.Blocks, fb.Cid(), key)
	wantErr(t, err, ErrTampered)
	// Not a record ID at all.
	_, err = OpenManifest(t.Context(), s.Blocks, cid.Undef, key)
	wantErr(t, err, ErrMalformed)
}

func TestVersions(t *testing.T) {
	st := newMemStore()
	key := newKey(t)
	v1 := build(t, st, key, 0, file{"a", []byte("v1")})

	key2 := newKey(t)
	b := NewBuilder(st, key2, Options{})
	if _, err := b.AddFile(t.Context(), "a", strings.NewReader("v2")); err != nil {
		t.Fatal(err)
	}
	// Invalid headers fail without closing the Builder.
	for _, h := range []Header{
		{Kind: ""},
		{Kind: "file", Version: 2},
		{Kind: "file", Version: 1, Prev: v1.ID},
		{Kind: "file", Version: -1},
		{Kind: "file", Name: "\xff"},
		{Kind: "file", Prev: cid.NewCidV1(cid.DagCBOR, v1.ID.Hash())}, // not a record ID
		{Kind: "file", Created: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		_, err := b.Finish(t.Context(), h)
		if err == nil || errors.Is(err, ErrBuilderClosed) {
			t.Fatalf("header %+v: %v", h, err)
		}
	}
	_, err := b.Finish(t.Context(), Header{Kind: "file", Meta: make([]byte, MaxManifestSize)})
	wantErr(t, err, ErrTooLarge)
	v2, err := b.Finish(t.Context(), Header{Kind: "file", Version: 2, Prev: v1.ID})
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManifest(t.Context(), st, v2.ID, key2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 2 || m.Prev != v1.ID || time.Since(m.Created) > time.Minute {
		t.Fatalf("manifest %+v", m)
	}
}

// errReader fails after n bytes.
type errReader struct{ n int }

var errDisk = errors.New("disk on fire")

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errDisk
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

// cutReader returns its data, then err.
type cutReader struct {
	data []byte
	err  error
}

func (r *cutReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestCutInput: an input that ends with an error, even io.ErrUnexpectedEOF
// (what a cut-off HTTP body reports), is not sealed as a complete file.
func TestCutInput(t *testing.T) {
	for _, size := range []int{0, 10, MinChunkSize, MinChunkSize + 3} {
		for _, cause := range []error{io.ErrUnexpectedEOF, errDisk} {
			b := NewBuilder(newMemStore(), newKey(t), Options{ChunkSize: MinChunkSize})
			_, err := b.AddFile(t.Context(), "a", &cutReader{data: make([]byte, size), err: cause})
			if !errors.Is(err, cause) {
				t.Fatalf("size %d, %v: got %v", size, cause, err)
			}
		}
	}
	// A reader that returns data together with io.EOF is fine.
	b := NewBuilder(newMemStore(), newKey(t), Options{ChunkSize: MinChunkSize})
	f, err := b.AddFile(t.Context(), "a", iotest.DataErrReader(bytes.NewReader(make([]byte, MinChunkSize+1))))
	if err != nil || f.Size != MinChunkSize+1 || len(f.Chunks) != 2 {
		t.Fatalf("DataErrReader: %v", err)
	}
	// So is one that returns a byte at a time.
	f, err = b.AddFile(t.Context(), "b", iotest.OneByteReader(bytes.NewReader(make([]byte, 2*MinChunkSize))))
	if err != nil || f.Size != 2*MinChunkSize || len(f.Chunks) != 2 {
		t.Fatalf("OneByteReader: %v", err)
	}
}

func TestBuilderFailures(t *testing.T) {
	key := newKey(t)
	st := newMemStore()
	b := NewBuilder(st, key, Options{ChunkSize: MinChunkSize})
	_, err := b.AddFile(t.Context(), "a", &errReader{n: 5000})
	if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "read at byte 5000") {
		t.Fatalf("reader error: %v", err)
	}
	// The key has sealed chunks 0-3 of file 0: the Builder must not go on.
	_, err = b.AddFile(t.Context(), "a", strings.NewReader("x"))
	wantErr(t, err, ErrBuilderClosed)
	_, err = b.Finish(t.Context(), Header{Kind: "file"})
	wantErr(t, err, ErrBuilderClosed)

	for _, cs := range []int{-1, 1, MinChunkSize - 1, MaxChunkSize + 1} {
		_, err := NewBuilder(st, key, Options{ChunkSize: cs}).AddFile(t.Context(), "a", strings.NewReader("x"))
		wantErr(t, err, ErrBuilderClosed)
	}
	_, err = NewBuilder(nil, key, Options{}).AddFile(t.Context(), "a", strings.NewReader("x"))
	wantErr(t, err, ErrBuilderClosed)
	_, err = NewBuilder(st, key, Options{}).AddFile(t.Context(), "bad\xffpath", strings.NewReader("x"))
	wantErr(t, err, ErrMalformed)
	_, err = NewBuilder(st, key, Options{}).Finish(t.Context(), Header{Kind: "file"})
	wantErr(t, err, ErrMalformed) // no files

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = NewBuilder(st, key, Options{}).AddFile(ctx, "a", strings.NewReader("x"))
	wantErr(t, err, context.Canceled)
}

func TestTooManyChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("seals ~29 MiB")
	}
	d := &discard{}
	b := NewBuilder(d, newKey(t), Options{ChunkSize: MinChunkSize})
	limit := int64(MaxManifestSize / minManifestChunkCost)
	_, err := b.AddFile(t.Context(), "huge", io.LimitReader(zeros{}, (limit+10)*MinChunkSize))
	wantErr(t, err, ErrTooLarge)
	// Chunks still queued when the limit is hit are dropped, not stored
	// (they would be garbage), so a few fewer than limit may be stored;
	// never more.
	if d.n > limit || d.n < limit-32 {
		t.Fatalf("stored %d chunks before giving up, want at most %d and not far fewer", d.n, limit)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestKeyNotPrinted(t *testing.T) {
	k := newKey(t)
	out := fmt.Sprintf("%v %s %x %#v %+v", k, k, k, k, struct{ K Key }{k})
	if strings.Contains(out, fmt.Sprintf("%x", k[:8])) || strings.Contains(out, fmt.Sprint(k[:8])[1:10]) {
		t.Fatalf("key printed: %s", out)
	}
	var zero Key
	if k == zero {
		t.Fatal("NewKey returned the zero key")
	}
}

// failingPutter fails from its nth Put on.
type failingPutter struct {
	memStore
	n int
}

var errStore = errors.New("store unavailable")

func (p *failingPutter) Put(ctx context.Context, b blocks.Block) error {
	if p.n--; p.n < 0 {
		return errStore
	}
	return p.memStore.Put(ctx, b)
}

// copyingFailingPutter is a failingPutter that copies what it stores and
// says so, so the Builder reuses its buffers.
type copyingFailingPutter struct{ *failingPutter }

func (p copyingFailingPutter) PutCopies() bool { return true }

func (p copyingFailingPutter) Put(ctx context.Context, b blocks.Block) error {
	c, _ := blocks.NewBlockWithCid(bytes.Clone(b.RawData()), b.Cid())
	return p.failingPutter.Put(ctx, c)
}

// A store that fails mid-file (a full disk, say) stops the add with that
// error, closes the Builder and leaves no sealing, hashing or storing
// goroutine behind, whether or not the Builder reuses its buffers.
func TestPutterFailure(t *testing.T) {
	for _, copying := range []bool{false, true} {
		before := runtime.NumGoroutine()
		fp := &failingPutter{memStore: *newMemStore(), n: 3}
		var p BlockPutter = fp
		if copying {
			p = copyingFailingPutter{fp}
		}
		b := NewBuilder(p, newKey(t), Options{ChunkSize: MinChunkSize})
		_, err := b.AddFile(t.Context(), "a", io.LimitReader(zeros{}, 10*MinChunkSize))
		if !errors.Is(err, errStore) || !strings.Contains(err.Error(), "store chunk 3") {
			t.Fatalf("copying=%v: got %v", copying, err)
		}
		if fp.n != -1 {
			t.Errorf("copying=%v: %d Puts after the failing one", copying, -1-fp.n)
		}
		_, err = b.AddFile(t.Context(), "b", strings.NewReader("x"))
		wantErr(t, err, ErrBuilderClosed)
		noLeak(t, before)
	}
}

// countingPutter counts Puts and can be slow, to widen any window in which a
// store could happen after AddFile returned.
type countingPutter struct {
	mu    sync.Mutex
	n     int
	delay time.Duration
}

func (p *countingPutter) Put(ctx context.Context, b blocks.Block) error {
	time.Sleep(p.delay)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return nil
}

func (p *countingPutter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Stores run behind sealing; when AddFile returns (here: the input fails
// mid-file), every store it started is finished, so a caller that rolls
// back the blocks it saw stored leaves nothing behind.
func TestNoStoreAfterAddFileReturns(t *testing.T) {
	p := &countingPutter{delay: 2 * time.Millisecond}
	b := NewBuilder(p, newKey(t), Options{ChunkSize: MinChunkSize})
	_, err := b.AddFile(t.Context(), "cut", &errReader{n: 20 * MinChunkSize})
	if !errors.Is(err, errDisk) {
		t.Fatalf("got %v", err)
	}
	n := p.count()
	time.Sleep(50 * time.Millisecond)
	if p.count() != n {
		t.Fatalf("%d blocks were stored after AddFile returned", p.count()-n)
	}
}

// ptrStore records the backing array of every block it is given. With copy
// set it copies the bytes and says so (PutCopies), as badger does.
type ptrStore struct {
	*memStore
	copy bool
	mu   sync.Mutex
	ptrs map[*byte]int
}

func (s *ptrStore) PutCopies() bool { return s.copy }

func (s *ptrStore) Put(ctx context.Context, b blocks.Block) error {
	data := b.RawData()
	s.mu.Lock()
	s.ptrs[&data[:1][0]]++
	s.mu.Unlock()
	if s.copy {
		b, _ = blocks.NewBlockWithCid(bytes.Clone(data), b.Cid())
	}
	return s.memStore.Put(ctx, b)
}

// The Builder reuses its sealed buffers for a putter that copies, and only
// for one: a putter that keeps the bytes must get a fresh buffer each time.
// Either way every chunk reads back intact.
func TestBuilderBufferReuse(t *testing.T) {
	data := randBytes(7, 40*MinChunkSize+123)
	for _, copying := range []bool{true, false} {
		st := &ptrStore{memStore: newMemStore(), copy: copying, ptrs: map[*byte]int{}}
		key := newKey(t)
		res := build(t, st, key, MinChunkSize, file{"f", data})
		got, err := readAll(st.memStore, key, res.Manifest.Files[0], 0, 4)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("copying=%v: read back: %v (equal %v)", copying, err, bytes.Equal(got, data))
		}
		chunks := len(res.Manifest.Files[0].Chunks)
		switch buffers := len(st.ptrs) - 1; { // less the manifest's
		case copying && buffers > runtime.GOMAXPROCS(0)+extraSlots:
			t.Errorf("copying putter: %d chunks used %d buffers, want them reused", chunks, buffers)
		case !copying && buffers != chunks:
			t.Errorf("keeping putter: %d chunks used %d buffers, want one each", chunks, buffers)
		}
	}
}

package record

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// minManifestChunkCost is a lower bound on the manifest bytes one chunk
// costs (array header, 32-byte digest with its header, size): AddFile stops
// with ErrTooLarge once a file's chunks alone could not fit in a manifest.
const minManifestChunkCost = 1 + 34 + 1

// The Builder stores each block with one Put as soon as it is sealed. It
// used to gather 8 MiB batches for PutMany; measured against badger with
// 1 MiB blocks (BenchmarkIngest, interleaved runs on the shared machine:
// Put 145, 231, 179, 196, 114, 160, 167 MB/s against PutMany 135, 201,
// 237, 168, 100, 172, 140 MB/s) it did not help, since a commit per MiB is
// cheap next to sealing and copying the MiB, so the simpler code with one
// chunk in memory won. Storing a batch on a second goroutine while sealing
// the next did not help either (putmany-serial 155, 198, 210 MB/s against
// pipelined 156, 180, 166): with both cores busy there is nothing to gain.

// Builder seals files into a record: AddFile for each file, then Finish.
// A Builder is not safe for concurrent use. Once AddFile or Finish fails,
// or after Finish, the Builder refuses further calls (ErrBuilderClosed):
// its key has sealed data at file indexes it can no longer account for,
// and must not seal anything else. Blocks already stored by a failed
// Builder are unreferenced garbage.
type Builder struct {
	bs        BlockPutter
	keys      *recordKeys
	chunkSize int
	progress  func(int64)

	buf     []byte // plaintext chunk buffer, reused
	files   []File
	blocks  []cid.Cid
	total   int64
	chunks  int64 // chunks in all files, for the early manifest-size check
	err     error // sticky: set when the Builder may no longer be used
	started time.Time
}

// NewBuilder starts a record sealed under key, storing blocks into bs.
// key must be fresh (NewKey) and used for this one Builder only: nonces are
// derived from positions within the record, so two records sealed under
// the same key would reuse nonces. Invalid options are reported by the
// first AddFile.
func NewBuilder(bs BlockPutter, key Key, opts Options) *Builder {
	b := &Builder{bs: bs, chunkSize: opts.ChunkSize, progress: opts.Progress, started: time.Now()}
	if b.chunkSize == 0 {
		b.chunkSize = DefaultChunkSize
	}
	switch {
	case bs == nil:
		b.err = fmt.Errorf("%w: no block store", ErrBuilderClosed)
		return b
	case b.chunkSize < MinChunkSize || b.chunkSize > MaxChunkSize:
		b.err = fmt.Errorf("%w: chunk size %d outside [%d, %d]", ErrBuilderClosed, b.chunkSize, MinChunkSize, MaxChunkSize)
		return b
	}
	k, err := deriveKeys(key)
	if err != nil {
		b.err = fmt.Errorf("%w: %v", ErrBuilderClosed, err)
		return b
	}
	b.keys = k
	return b
}

// AddFile reads r to its end, sealing it chunk by chunk into blocks, and
// adds it to the record as the next file (index len of earlier files). It
// holds one chunk of plaintext and one sealed chunk at a time, whatever the
// size of r. The returned File is also recorded in the manifest.
func (b *Builder) AddFile(ctx context.Context, path string, r io.Reader) (File, error) {
	if b.err != nil {
		return File{}, b.err
	}
	f, err := b.addFile(ctx, path, r)
	if err != nil {
		b.fail(err)
		return File{}, err
	}
	b.files = append(b.files, f)
	return f, nil
}

func (b *Builder) fail(err error) {
	b.err = fmt.Errorf("%w: an earlier call failed: %v", ErrBuilderClosed, err)
	b.buf = nil
}

func (b *Builder) addFile(ctx context.Context, path string, r io.Reader) (File, error) {
	if err := validateFile(File{Path: path, Chunks: []Chunk{{CID: rawCID([32]byte{})}}}); err != nil {
		return File{}, fmt.Errorf("add file %q: %w", path, err)
	}
	if len(b.files) >= maxFiles {
		return File{}, fmt.Errorf("add file %q: %w: a record holds at most %d files", path, ErrTooLarge, maxFiles)
	}
	if r == nil {
		return File{}, fmt.Errorf("add file %q: nil reader", path)
	}
	if b.buf == nil {
		b.buf = make([]byte, b.chunkSize)
	}
	fi := uint32(len(b.files))
	f := File{Path: path}
	h := sha256.New()
	// Stores run on their own goroutine, a few chunks behind sealing, so the
	// datastore's copy into its value log overlaps the next chunk's AEAD and
	// hashing. Sealed buffers are never reused, so queued blocks stay valid.
	st := newStorer(ctx, b.bs)
	defer st.wait() // every return path stops the writer before the caller sees the result
	var carry [1]byte
	haveCarry := false
	for idx := uint64(0); ; idx++ {
		if err := ctx.Err(); err != nil {
			return File{}, fmt.Errorf("add file %q: %w", path, err)
		}
		b.chunks++
		if b.chunks*minManifestChunkCost > MaxManifestSize {
			return File{}, fmt.Errorf("add file %q: %w: more than %d chunks would not fit in a %d-byte manifest; use a larger chunk size or split the record",
				path, ErrTooLarge, MaxManifestSize/minManifestChunkCost, MaxManifestSize)
		}
		// Fill one chunk. A full chunk is the last one only if the next
		// read finds EOF: read one byte ahead and carry it over.
		buf := b.buf
		n := 0
		if haveCarry {
			buf[0] = carry[0]
			n = 1
		}
		m, eof, err := fill(r, buf[n:])
		n += m
		if err != nil {
			return File{}, fmt.Errorf("add file %q: read at byte %d: %w", path, f.Size+int64(n), err)
		}
		last := eof
		if !eof {
			k, eof, err := fill(r, carry[:])
			switch {
			case err != nil:
				return File{}, fmt.Errorf("add file %q: read at byte %d: %w", path, f.Size+int64(n), err)
			case k == 1:
				haveCarry = true
			default:
				last = eof
			}
		}
		pt := buf[:n]
		h.Write(pt)
		sealed := b.keys.seal(make([]byte, 0, n+TagSize), pt, fi, idx, last)
		c := rawCID(sha256Sum(sealed))
		blk, _ := blocks.NewBlockWithCid(sealed, c)
		if err := st.put(blk, idx); err != nil {
			st.wait()
			return File{}, fmt.Errorf("add file %q: %w", path, err)
		}
		f.Chunks = append(f.Chunks, Chunk{CID: c, Size: int64(n)})
		f.Size += int64(n)
		b.total += int64(n)
		if b.progress != nil {
			b.progress(b.total)
		}
		if last {
			break
		}
	}
	if err := st.wait(); err != nil {
		return File{}, fmt.Errorf("add file %q: %w", path, err)
	}
	h.Sum(f.SHA256[:0])
	for _, c := range f.Chunks {
		b.blocks = append(b.blocks, c.CID)
	}
	return f, nil
}

// Finish seals the manifest (h plus the files added so far), stores it and
// returns the record. Header.Created defaults to now and Version to 1.
// If the header is invalid or the manifest too large, Finish returns an
// error and may be called again; otherwise the Builder is closed.
func (b *Builder) Finish(ctx context.Context, h Header) (*Result, error) {
	if b.err != nil {
		return nil, b.err
	}
	m := &Manifest{
		Kind:      h.Kind,
		Name:      h.Name,
		MediaType: h.MediaType,
		Created:   h.Created,
		Version:   h.Version,
		Prev:      h.Prev,
		Files:     b.files,
		Meta:      h.Meta,
	}
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	m.Created = m.Created.Round(0).UTC() // as it will decode
	if m.Version == 0 {
		m.Version = 1
	}
	if len(m.Meta) == 0 {
		m.Meta = nil
	}
	pt, err := encodeManifest(m)
	if err != nil {
		return nil, fmt.Errorf("finish record: %w", err)
	}
	// The manifest must open again: check before sealing it for good.
	if _, err := decodeManifest(pt); err != nil {
		return nil, fmt.Errorf("finish record: manifest does not decode: %w", err)
	}
	// Close before sealing: a retried Finish must not seal another
	// manifest under the same nonce. (A Finish that failed validation
	// above sealed nothing and may be retried.)
	b.err = fmt.Errorf("%w: Finish was called", ErrBuilderClosed)
	b.buf = nil
	blk, err := sealManifest(b.keys, pt)
	if err != nil {
		return nil, fmt.Errorf("finish record: %w", err)
	}
	if err := b.bs.Put(ctx, blk); err != nil {
		return nil, fmt.Errorf("finish record: store manifest: %w", err)
	}
	res := &Result{ID: blk.Cid(), Manifest: m, Blocks: append(b.blocks, blk.Cid()), Size: b.total}
	return res, nil
}

// fill reads until buf is full or r reports io.EOF. Only io.EOF itself ends
// a file: io.ReadFull would also turn an io.ErrUnexpectedEOF from r (an
// HTTP body cut short, a truncated gzip stream) into a clean short read,
// and the truncated input would be sealed as a complete file.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for empty := 0; n < len(buf); {
		m, err := r.Read(buf[n:])
		n += m
		switch {
		case err == io.EOF:
			return n, true, nil
		case err != nil:
			return n, false, err
		case m == 0:
			if empty++; empty >= 100 {
				return n, false, io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
	return n, false, nil
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// storeQueue is how many sealed chunks may wait for the datastore.
const storeQueue = 4

// storer stores blocks on one goroutine, in order, behind the sealer.
type storer struct {
	ctx  context.Context
	bs   BlockPutter
	q    chan storeJob
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

type storeJob struct {
	blk blocks.Block
	idx uint64
}

func newStorer(ctx context.Context, bs BlockPutter) *storer {
	s := &storer{ctx: ctx, bs: bs, q: make(chan storeJob, storeQueue), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for j := range s.q {
			if s.failed() != nil {
				continue // drain: nothing more is stored after a failure
			}
			if err := s.bs.Put(ctx, j.blk); err != nil {
				s.mu.Lock()
				s.err = fmt.Errorf("store chunk %d: %w", j.idx, err)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *storer) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// put queues a block; it reports an earlier store failure at once.
func (s *storer) put(blk blocks.Block, idx uint64) error {
	if err := s.failed(); err != nil {
		return err
	}
	select {
	case s.q <- storeJob{blk, idx}:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// wait stops the writer after the queued blocks and returns the first
// store failure. It may be called more than once.
func (s *storer) wait() error {
	s.once.Do(func() { close(s.q) })
	<-s.done
	return s.failed()
}

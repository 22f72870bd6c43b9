package record

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// minManifestChunkCost is a lower bound on the manifest bytes one chunk
// costs (array header, 32-byte digest with its header, size): AddFile stops
// with ErrTooLarge once a file's chunks alone could not fit in a manifest.
const minManifestChunkCost = 1 + 34 + 1

// How a Builder spends its CPU (BenchmarkIngest, BenchmarkAdd in
// node/devnet): per 1 MiB chunk, one SHA-256 of the plaintext (the file's
// hash), AES-256-GCM, one SHA-256 of the ciphertext (its CID), and the
// datastore's copy into its value log. The file hash is sequential; the
// rest is not. So the caller's goroutine only reads, a hasher feeds the
// file hash in order, sealing workers (one per core) seal and hash chunks,
// and a storer puts them in order. Each chunk in flight owns a slot: a
// plaintext and a sealed buffer, reused when the putter copies what it
// stores (CopyingPutter), so adding a file of any size churns no memory.
// Earlier measurements that shaped this: gathering 8 MiB batches for
// PutMany did not beat a Put per chunk on badger (a commit per MiB is
// cheap next to sealing and copying the MiB).

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

	files   []File
	blocks  []cid.Cid
	total   int64
	chunks  int64 // chunks in all files, for the early manifest-size check
	err     error // sticky: set when the Builder may no longer be used
	started time.Time
	// spare are chunk buffers a finished file's pipeline gave back, for
	// the next file's (a record of many small files, such as a DICOM
	// study, would otherwise allocate and zero fresh buffers per file).
	spare []*chunkSlot
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
	fi := uint32(len(b.files))
	f := File{Path: path}
	p := newPipeline(ctx, b, fi)
	defer p.abort() // every return path stops the workers before the caller sees the result
	var carry [1]byte
	haveCarry := false
	for idx := uint64(0); ; idx++ {
		if err := p.ctx.Err(); err != nil {
			if perr := p.failed(); perr != nil {
				return File{}, fmt.Errorf("add file %q: %w", path, perr)
			}
			return File{}, fmt.Errorf("add file %q: %w", path, err)
		}
		b.chunks++
		if b.chunks*minManifestChunkCost > MaxManifestSize {
			return File{}, fmt.Errorf("add file %q: %w: more than %d chunks would not fit in a %d-byte manifest; use a larger chunk size or split the record",
				path, ErrTooLarge, MaxManifestSize/minManifestChunkCost, MaxManifestSize)
		}
		sl, err := p.slot()
		if err != nil {
			return File{}, fmt.Errorf("add file %q: %w", path, err)
		}
		// Fill one chunk. A full chunk is the last one only if the next
		// read finds EOF: read one byte ahead and carry it over.
		buf := sl.plain
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
		sl.n, sl.idx, sl.last = n, idx, last
		p.submit(sl)
		f.Chunks = append(f.Chunks, Chunk{Size: int64(n)})
		f.Size += int64(n)
		if last {
			break
		}
	}
	cids, sum, err := p.finish()
	if err != nil {
		return File{}, fmt.Errorf("add file %q: %w", path, err)
	}
	for i := range f.Chunks {
		f.Chunks[i].CID = cids[i]
	}
	f.SHA256 = sum
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

// CopyingPutter is a BlockPutter whose Put copies the block's bytes and
// keeps no reference to them once it returns (badger copies a value into
// its value log or memtable arena before a commit returns). A Builder
// reuses its sealed-chunk buffers only with such a putter; with any other
// it allocates a fresh buffer for every chunk and never touches it again.
type CopyingPutter interface {
	BlockPutter
	PutCopies() bool
}

// extraSlots is how many chunks may be in flight beyond one per sealing
// worker: read ahead of the sealers, or sealed and waiting for the storer.
const extraSlots = 4

// chunkSlot is one chunk in flight through a pipeline.
type chunkSlot struct {
	plain    []byte // chunk-size plaintext buffer; the first n bytes are the chunk
	sealed   []byte // its ciphertext, sealed into a buffer of capacity chunk size + tag
	n        int
	idx      uint64
	last     bool
	c        cid.Cid
	sealDone chan struct{} // closed once sealed
	hashDone chan struct{} // closed once in the file's hash
}

// pipeline seals, hashes and stores one file's chunks: submit hands a
// filled slot to the sealers and, in order, to the hasher and the storer;
// finish waits for all of them.
type pipeline struct {
	ctx    context.Context
	cancel context.CancelFunc
	b      *Builder
	fi     uint32
	reuse  bool

	free  chan *chunkSlot // slots not in flight
	made  int             // slots allocated so far (at most cap(free))
	work  chan *chunkSlot // to the sealers
	order chan *chunkSlot // to the storer, in chunk order

	hashq chan *chunkSlot // to the file hasher, in chunk order
	h     hash.Hash

	sealers sync.WaitGroup
	hashed  chan struct{} // closed when the hasher returns
	stored  chan struct{} // closed when the storer returns
	cids    []cid.Cid     // written by the storer, read after stored

	closeOnce sync.Once
	mu        sync.Mutex
	err       error // first store failure
}

func newPipeline(ctx context.Context, b *Builder, fi uint32) *pipeline {
	ctx, cancel := context.WithCancel(ctx)
	workers := min(max(runtime.GOMAXPROCS(0), 1), 8)
	slots := workers + extraSlots
	cp, ok := b.bs.(CopyingPutter)
	p := &pipeline{
		ctx: ctx, cancel: cancel, b: b, fi: fi,
		reuse:  ok && cp.PutCopies(),
		free:   make(chan *chunkSlot, slots),
		work:   make(chan *chunkSlot, slots),
		order:  make(chan *chunkSlot, slots),
		hashq:  make(chan *chunkSlot, slots),
		h:      sha256.New(),
		hashed: make(chan struct{}),
		stored: make(chan struct{}),
	}
	for range workers {
		p.sealers.Add(1)
		go p.seal()
	}
	go p.hash()
	go p.store()
	return p
}

// slot returns a free slot, allocating one while fewer than the limit
// exist, or waits for the storer to release one.
func (p *pipeline) slot() (*chunkSlot, error) {
	select {
	case sl := <-p.free:
		return sl, nil
	default:
	}
	if p.made < cap(p.free) {
		p.made++
		if n := len(p.b.spare); n > 0 {
			sl := p.b.spare[n-1]
			p.b.spare = p.b.spare[:n-1]
			return sl, nil
		}
		return &chunkSlot{plain: make([]byte, p.b.chunkSize)}, nil
	}
	select {
	case sl := <-p.free:
		return sl, nil
	case <-p.ctx.Done():
		if err := p.failed(); err != nil {
			return nil, err
		}
		return nil, p.ctx.Err()
	}
}

// submit queues a filled slot. It never blocks for long: at most cap(free)
// slots exist, and both queues hold that many.
func (p *pipeline) submit(sl *chunkSlot) {
	sl.sealDone, sl.hashDone = make(chan struct{}), make(chan struct{})
	p.order <- sl
	p.hashq <- sl
	p.work <- sl
}

func (p *pipeline) seal() {
	defer p.sealers.Done()
	for sl := range p.work {
		if p.ctx.Err() == nil {
			if cap(sl.sealed) < sl.n+TagSize {
				sl.sealed = make([]byte, 0, p.b.chunkSize+TagSize)
			}
			sl.sealed = p.b.keys.seal(sl.sealed[:0], sl.plain[:sl.n], p.fi, sl.idx, sl.last)
			sl.c = rawCID(sha256Sum(sl.sealed))
		}
		close(sl.sealDone)
	}
}

// hash feeds the file's plaintext, chunk by chunk in order, to its SHA-256
// (sequential by nature) beside the sealers.
func (p *pipeline) hash() {
	defer close(p.hashed)
	for sl := range p.hashq {
		if p.ctx.Err() == nil {
			p.h.Write(sl.plain[:sl.n])
		}
		close(sl.hashDone)
	}
}

func (p *pipeline) store() {
	defer close(p.stored)
	for sl := range p.order {
		<-sl.sealDone
		if p.ctx.Err() != nil {
			continue // drain: nothing more is stored after a failure
		}
		blk, _ := blocks.NewBlockWithCid(sl.sealed, sl.c)
		if err := p.b.bs.Put(p.ctx, blk); err != nil {
			p.mu.Lock()
			p.err = fmt.Errorf("store chunk %d: %w", sl.idx, err)
			p.mu.Unlock()
			p.cancel()
			continue
		}
		p.cids = append(p.cids, sl.c)
		p.b.total += int64(sl.n)
		if p.b.progress != nil {
			p.b.progress(p.b.total)
		}
		if !p.reuse {
			sl.sealed = nil // the putter may keep it
		}
		<-sl.hashDone // the plaintext buffer is free once hashed too
		p.free <- sl  // never blocks: free holds every slot
	}
}

func (p *pipeline) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// close ends the queues and waits for the sealers and the storer.
func (p *pipeline) close() {
	p.closeOnce.Do(func() {
		close(p.work)
		close(p.order)
		close(p.hashq)
	})
	p.sealers.Wait()
	<-p.hashed
	<-p.stored
}

// finish waits until every submitted chunk is stored and returns their
// CIDs in order and the file's SHA-256, or the first failure.
func (p *pipeline) finish() (cids []cid.Cid, sum [32]byte, err error) {
	p.close()
	defer p.cancel()
	if err := p.failed(); err != nil {
		return nil, sum, err
	}
	if err := p.ctx.Err(); err != nil {
		return nil, sum, err
	}
	p.h.Sum(sum[:0])
	// Every slot is back in free: keep them for the Builder's next file.
	for len(p.free) > 0 {
		sl := <-p.free
		sl.sealDone, sl.hashDone = nil, nil
		p.b.spare = append(p.b.spare, sl)
	}
	return p.cids, sum, nil
}

// abort stops the pipeline without storing what is still queued. After
// finish it does nothing more.
func (p *pipeline) abort() {
	p.cancel()
	p.close()
}

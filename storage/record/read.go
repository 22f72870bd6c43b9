package record

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"

	blocks "github.com/ipfs/go-block-format"
)

// DefaultReadConcurrency is ReadOptions.Concurrency's default.
const DefaultReadConcurrency = 16

// ReadFile fetches, verifies and decrypts file f (the file at fileIndex in
// its record's manifest) and writes its plaintext to w in order. Up to
// opts.Concurrency chunks are fetched and decrypted at once; no more are
// held in memory.
//
// Every block is checked against its CID (ErrBlockMismatch) and
// authenticated at its position (ErrTampered); a file whose chunk list ends
// before its final chunk gives ErrTruncated; at the end the plaintext's
// SHA-256 is checked against f.SHA256 (ErrTampered). Errors from the getter
// (a missing block, say) are returned wrapped, naming the chunk.
//
// On error w may have received part of the file: write to a temporary
// place and keep the result only if ReadFile returns nil.
func ReadFile(ctx context.Context, g BlockGetter, key Key, f File, fileIndex int, w io.Writer, opts ReadOptions) error {
	return readFile(ctx, g, nil, key, f, fileIndex, w, opts)
}

// BlockStream yields the blocks of a file's chunks in the file's order: a
// network fetch that delivers them in order (node/p2p's GetBlocks).
type BlockStream interface {
	// Next returns the next chunk's block. An error ends the read.
	Next(ctx context.Context) (blocks.Block, error)
}

// ReadFileStream is ReadFile over blocks that arrive in chunk order: it
// takes each chunk's block from s in turn (as fast as Concurrency chunks in
// flight allow) and verifies and decrypts up to Concurrency of them at
// once. Each block must be the chunk's (its CID is compared with the
// manifest's; with GetterVerifies false its bytes are hashed too).
func ReadFileStream(ctx context.Context, s BlockStream, key Key, f File, fileIndex int, w io.Writer, opts ReadOptions) error {
	return readFile(ctx, nil, s, key, f, fileIndex, w, opts)
}

func readFile(ctx context.Context, g BlockGetter, s BlockStream, key Key, f File, fileIndex int, w io.Writer, opts ReadOptions) error {
	if fileIndex < 0 || fileIndex >= maxFiles {
		return fmt.Errorf("%w: file index %d out of range", ErrMalformed, fileIndex)
	}
	if err := validateFile(f); err != nil {
		return fmt.Errorf("read file %d (%q): %w", fileIndex, f.Path, err)
	}
	k, err := deriveKeys(key)
	if err != nil {
		return err
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = DefaultReadConcurrency
	}
	conc = min(conc, len(f.Chunks))
	r := &reader{g: g, s: s, k: k, f: f, fi: uint32(fileIndex), bufSize: int(f.Chunks[0].Size), trusted: opts.GetterVerifies}
	if err := r.run(ctx, conc, w, opts.Progress); err != nil {
		return fmt.Errorf("read file %d (%q): %w", fileIndex, f.Path, err)
	}
	return nil
}

type reader struct {
	g       BlockGetter // chunks are fetched by the workers, or
	s       BlockStream // taken in order by the producer
	k       *recordKeys
	f       File
	fi      uint32
	bufSize int
	pool    sync.Pool
	// trusted skips the per-chunk CID check (ReadOptions.GetterVerifies).
	trusted bool
}

// slot is one chunk in flight; done is closed when pt or err is set.
type slot struct {
	idx  int
	pt   *[]byte
	err  error
	done chan struct{}
}

func (r *reader) run(ctx context.Context, conc int, w io.Writer, progress func(int64)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// sem bounds the chunks in flight: a slot takes it when its fetch
	// starts and gives it back once the chunk is written.
	sem := make(chan struct{}, conc)
	order := make(chan *slot, conc)
	var workers sync.WaitGroup
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		defer close(order)
		for i := range r.f.Chunks {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			s := &slot{idx: i, done: make(chan struct{})}
			var blk blocks.Block
			if r.s != nil {
				// In order, here: the stream is one sequence.
				if blk, s.err = r.next(ctx, i); s.err != nil {
					close(s.done)
					order <- s
					return
				}
			}
			order <- s // never blocks: at most conc slots exist
			workers.Add(1)
			go func() {
				defer workers.Done()
				defer close(s.done)
				if blk == nil {
					s.pt, s.err = r.chunk(ctx, s.idx)
				} else {
					s.pt, s.err = r.open(s.idx, blk)
				}
			}()
		}
	}()

	err := r.drain(ctx, order, sem, w, progress)
	cancel()
	<-producerDone
	workers.Wait()
	for s := range order { // slots started but never written
		if s.pt != nil {
			r.pool.Put(s.pt)
		}
	}
	return err
}

// drain writes the chunks in order and checks the file hash at the end.
func (r *reader) drain(ctx context.Context, order <-chan *slot, sem <-chan struct{}, w io.Writer, progress func(int64)) error {
	h := sha256.New()
	var written int64
	for i := range r.f.Chunks {
		var s *slot
		select {
		case s = <-order:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s == nil {
			return ctx.Err() // producer stopped on cancellation
		}
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.err != nil {
			return s.err
		}
		pt := *s.pt
		h.Write(pt)
		_, err := w.Write(pt)
		r.pool.Put(s.pt)
		<-sem
		if err != nil {
			return fmt.Errorf("write chunk %d: %w", i, err)
		}
		written += int64(len(pt))
		if progress != nil {
			progress(written)
		}
	}
	var sum [32]byte
	if h.Sum(sum[:0]); sum != r.f.SHA256 {
		return fmt.Errorf("%w: plaintext SHA-256 %x does not match the manifest's %x", ErrTampered, sum, r.f.SHA256)
	}
	return nil
}

// chunk fetches, verifies and opens chunk i into a pooled buffer.
func (r *reader) chunk(ctx context.Context, i int) (*[]byte, error) {
	c := r.f.Chunks[i]
	blk, err := r.g.Get(ctx, c.CID)
	if err != nil {
		return nil, fmt.Errorf("fetch chunk %d (%s): %w", i, c.CID, err)
	}
	if blk == nil {
		return nil, fmt.Errorf("fetch chunk %d (%s): getter returned no block", i, c.CID)
	}
	return r.open(i, blk)
}

// next takes chunk i's block from the stream.
func (r *reader) next(ctx context.Context, i int) (blocks.Block, error) {
	c := r.f.Chunks[i]
	blk, err := r.s.Next(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch chunk %d (%s): %w", i, c.CID, err)
	}
	if blk == nil {
		return nil, fmt.Errorf("fetch chunk %d (%s): the stream returned no block", i, c.CID)
	}
	if !blk.Cid().Equals(c.CID) {
		return nil, fmt.Errorf("%w: chunk %d: the stream yielded block %s, want %s", ErrBlockMismatch, i, blk.Cid(), c.CID)
	}
	return blk, nil
}

// open verifies chunk i's block and opens it into a pooled buffer.
func (r *reader) open(i int, blk blocks.Block) (*[]byte, error) {
	c := r.f.Chunks[i]
	raw := blk.RawData()
	if !r.trusted {
		if err := verifyBlock(c.CID, raw); err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i, err)
		}
	}
	if int64(len(raw)) != c.Size+TagSize {
		return nil, fmt.Errorf("%w: chunk %d is %d bytes sealed, want %d", ErrTampered, i, len(raw), c.Size+TagSize)
	}
	p, _ := r.pool.Get().(*[]byte)
	if p == nil {
		b := make([]byte, 0, r.bufSize)
		p = &b
	}
	last := i == len(r.f.Chunks)-1
	pt, err := r.k.open((*p)[:0], raw, r.fi, uint64(i), last)
	if err != nil {
		r.pool.Put(p)
		// Tell truncation (the file was cut before its final chunk) from
		// other damage: does the chunk open with the other last flag?
		if _, err2 := r.k.open(nil, raw, r.fi, uint64(i), !last); err2 == nil {
			if last {
				return nil, fmt.Errorf("%w: chunk %d is not the file's final chunk, but the chunk list ends there", ErrTruncated, i)
			}
			return nil, fmt.Errorf("%w: chunk %d is a final chunk, but the chunk list goes on", ErrTampered, i)
		}
		return nil, fmt.Errorf("%w: chunk %d does not authenticate as chunk %d of file %d (wrong key or file index, moved or modified)", ErrTampered, i, i, r.fi)
	}
	*p = pt
	return p, nil
}

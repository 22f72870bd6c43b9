package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// fakeNet delivers a file's blocks in a given order; direct Gets are counted.
type fakeNet struct {
	blocks map[cid.Cid]blocks.Block
	order  []cid.Cid
	hold   chan struct{} // if set, GetMany waits on it before delivering
	direct atomic.Int32
}

func (f *fakeNet) GetMany(ctx context.Context, _ []cid.Cid, fn func(blocks.Block) error) error {
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, c := range f.order {
		if err := fn(f.blocks[c]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeNet) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	f.direct.Add(1)
	if b, ok := f.blocks[c]; ok {
		return b, nil
	}
	return nil, errors.New("no such block")
}

func newFakeNet(n int) (*fakeNet, []cid.Cid) {
	f := &fakeNet{blocks: map[cid.Cid]blocks.Block{}}
	var cids []cid.Cid
	for i := range n {
		b := blocks.NewBlock(fmt.Appendf(nil, "chunk %d", i))
		f.blocks[b.Cid()] = b
		cids = append(cids, b.Cid())
	}
	return f, cids
}

// readLikeReadFile asks for cids as record.ReadFile does: up to conc Gets
// at once, a slot freed only when its chunk is consumed, in order.
func readLikeReadFile(ctx context.Context, g *fileGetter, cids []cid.Cid, conc int) error {
	sem := make(chan struct{}, conc)
	order := make(chan chan error, conc)
	go func() {
		defer close(order)
		for _, c := range cids {
			sem <- struct{}{}
			done := make(chan error, 1)
			order <- done
			go func() {
				b, err := g.Get(ctx, c)
				if err == nil && b.Cid() != c {
					err = fmt.Errorf("got %s for %s", b.Cid(), c)
				}
				done <- err
			}()
		}
	}()
	var first error
	for done := range order {
		if err := <-done; err != nil && first == nil {
			first = err
		}
		<-sem
	}
	return first
}

// TestFileGetterInOrder: an in-order fetch serves every Get, none direct.
func TestFileGetterInOrder(t *testing.T) {
	f, cids := newFakeNet(200)
	f.order = cids
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g := newFileGetter(f, len(cids))
	go g.fetch(ctx, cids)
	if err := readLikeReadFile(ctx, g, cids, readConcurrency); err != nil {
		t.Fatal(err)
	}
	if n := f.direct.Load(); n != 0 {
		t.Fatalf("%d direct Gets for an in-order fetch", n)
	}
}

// TestFileGetterOutOfOrder: a fetch that delivers the first chunk last
// fills the buffer; the reader then fetches that chunk itself instead of
// waiting forever.
func TestFileGetterOutOfOrder(t *testing.T) {
	f, cids := newFakeNet(200)
	f.order = append(append([]cid.Cid{}, cids[1:]...), cids[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g := newFileGetter(f, len(cids))
	go g.fetch(ctx, cids)
	if err := readLikeReadFile(ctx, g, cids, readConcurrency); err != nil {
		t.Fatal(err)
	}
	if f.direct.Load() == 0 {
		t.Fatal("no direct Get; the test proves nothing")
	}
}

// TestFileGetterCancel: a Get waiting on the fetch returns when its context
// ends.
func TestFileGetterCancel(t *testing.T) {
	f, cids := newFakeNet(4)
	f.order = cids
	f.hold = make(chan struct{})
	defer close(f.hold)
	g := newFileGetter(f, len(cids))
	go g.fetch(context.Background(), cids)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := g.Get(ctx, cids[0]); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get did not return after its context ended")
	}
}

package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// orderNet delivers the blocks a GetMany asks for in a given order (the
// first GetMany, the main fetch) or in the order asked (later ones: helper
// fetches, which it counts).
type orderNet struct {
	blocks map[cid.Cid]blocks.Block
	order  []cid.Cid     // the main fetch's delivery order
	hold   chan struct{} // if set, the main fetch waits on it first
	fail   error         // if set, the main fetch ends with it after delivering order

	mu        sync.Mutex
	calls     int
	helpers   atomic.Int32
	delivered atomic.Int32 // blocks handed to fn by the main fetch
}

func (f *orderNet) GetMany(ctx context.Context, cids []cid.Cid, fn func(blocks.Block) error) error {
	f.mu.Lock()
	f.calls++
	main := f.calls == 1
	f.mu.Unlock()
	if !main {
		f.helpers.Add(1)
		for _, c := range cids {
			if err := fn(f.blocks[c]); err != nil {
				return err
			}
		}
		return nil
	}
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
		f.delivered.Add(1)
	}
	return f.fail
}

func newOrderNet(n int) (*orderNet, []cid.Cid) {
	f := &orderNet{blocks: map[cid.Cid]blocks.Block{}}
	var cids []cid.Cid
	for i := range n {
		b := blocks.NewBlock(fmt.Appendf(nil, "chunk %d", i))
		f.blocks[b.Cid()] = b
		cids = append(cids, b.Cid())
	}
	return f, cids
}

// readAll takes every result, checking the order; it returns the first error.
func readAll(t *testing.T, ch <-chan Fetched, cids []cid.Cid) (int, error) {
	t.Helper()
	i := 0
	for r := range ch {
		if r.Err != nil {
			return i, r.Err
		}
		if i >= len(cids) || r.Block.Cid() != cids[i] {
			t.Fatalf("block %d is %s, want %s", i, r.Block.Cid(), cids[min(i, len(cids)-1)])
		}
		i++
	}
	return i, nil
}

func TestGetBlocksInOrder(t *testing.T) {
	f, cids := newOrderNet(200)
	f.order = cids
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := readAll(t, getOrdered(ctx, f, cids, 32), cids)
	if err != nil || n != len(cids) {
		t.Fatalf("read %d of %d: %v", n, len(cids), err)
	}
	if h := f.helpers.Load(); h != 0 {
		t.Fatalf("%d helper fetches for an in-order fetch", h)
	}
}

// A fetch that delivers the first block last fills the buffer; the
// missing block is then fetched on its own instead of waiting forever.
func TestGetBlocksOutOfOrder(t *testing.T) {
	f, cids := newOrderNet(200)
	f.order = append(append([]cid.Cid{}, cids[1:]...), cids[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := readAll(t, getOrdered(ctx, f, cids, 32), cids)
	if err != nil || n != len(cids) {
		t.Fatalf("read %d of %d: %v", n, len(cids), err)
	}
	if f.helpers.Load() == 0 {
		t.Fatal("no helper fetch; the test proves nothing")
	}
}

// Duplicate CIDs are fetched once and yielded at each position.
func TestGetBlocksDuplicates(t *testing.T) {
	f, cids := newOrderNet(3)
	want := []cid.Cid{cids[0], cids[1], cids[0], cids[2], cids[1]}
	f.order = cids // GetMany delivers each distinct CID once
	n, err := readAll(t, getOrdered(context.Background(), f, want, 2), want)
	if err != nil || n != len(want) {
		t.Fatalf("read %d of %d: %v", n, len(want), err)
	}
}

// The fetch runs ahead of a reader that does not read by the bound only.
func TestGetBlocksBounded(t *testing.T) {
	f, cids := newOrderNet(100)
	f.order = cids
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := getOrdered(ctx, f, cids, 8)
	time.Sleep(100 * time.Millisecond) // the reader is slow
	// ahead buffered, one in the hand-over to the loop, one on the way.
	if d := f.delivered.Load(); d > 8+2 {
		t.Fatalf("the fetch delivered %d blocks to a reader that took none (bound 8)", d)
	}
	if n, err := readAll(t, ch, cids); err != nil || n != len(cids) {
		t.Fatalf("read %d of %d: %v", n, len(cids), err)
	}
}

// The fetch's error reaches the reader after the blocks that did arrive.
func TestGetBlocksError(t *testing.T) {
	f, cids := newOrderNet(10)
	f.order = cids[:4]
	f.fail = fmt.Errorf("%w: 6 of 10 blocks missing", ErrNotFetched)
	n, err := readAll(t, getOrdered(context.Background(), f, cids, 32), cids)
	if !errors.Is(err, ErrNotFetched) {
		t.Fatalf("err = %v, want ErrNotFetched", err)
	}
	if n > 4 {
		t.Fatalf("read %d blocks, 4 arrived", n)
	}
}

// A reader that gives up cancels ctx; the fetch ends and the channel
// closes.
func TestGetBlocksCancel(t *testing.T) {
	f, cids := newOrderNet(4)
	f.order = cids
	f.hold = make(chan struct{})
	defer close(f.hold)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range getOrdered(ctx, f, cids, 32) {
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the channel stayed open after ctx ended")
	}
}

func TestGetBlocksEmpty(t *testing.T) {
	f, _ := newOrderNet(0)
	for r := range getOrdered(context.Background(), f, nil, 32) {
		t.Fatalf("got %+v from an empty fetch", r)
	}
}

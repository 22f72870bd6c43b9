package p2p

import (
	"context"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// Fetched is one result of GetBlocks: the next block, or the error that
// ends the fetch (the last value sent before the channel closes).
type Fetched struct {
	Block blocks.Block
	Err   error
}

// GetBlocks fetches cids as one session (GetMany: local blocks, then bulk
// streams from the holders named by WithHolders or found on the DHT, then
// bitswap) and yields their blocks on the returned channel in the order of
// cids, as boxo's exchange.Fetcher.GetBlocks yields them in the order they
// arrive. It is how a file is read: the reader pulls chunk after chunk and
// never coordinates with the fetch.
//
// The fetch runs ahead of the reader by at most ahead blocks (at least 1):
// when that many are buffered and the next one is among them, the fetch
// waits for the reader. A fetch that delivers out of order may buffer up
// to twice as many while the next block is still on its way; past that,
// the missing blocks of the next ahead are fetched by a second session
// while the first waits, so the reader never waits on a fetch that waits
// on the reader.
//
// Every block is verified against its CID (see GetMany). The channel is
// closed after the last block, or after a Fetched whose Err says why the
// fetch ended (ctx done, blocks not found: ErrNotFetched). A reader that
// stops early cancels ctx; the fetch then ends and closes the channel.
func (n *Node) GetBlocks(ctx context.Context, cids []cid.Cid, ahead int) <-chan Fetched {
	return getOrdered(ctx, n, cids, ahead)
}

// manyGetter is what an ordered fetch runs on: the Node, or a fake.
type manyGetter interface {
	GetMany(ctx context.Context, cids []cid.Cid, fn func(blocks.Block) error) error
}

func getOrdered(ctx context.Context, g manyGetter, cids []cid.Cid, ahead int) <-chan Fetched {
	out := make(chan Fetched)
	o := &ordered{
		g: g, cids: cids, out: out,
		ahead:   max(1, min(ahead, len(cids))),
		need:    make(map[cid.Cid]int, len(cids)),
		buf:     make(map[cid.Cid]blocks.Block),
		arrive:  make(chan blocks.Block),
		extra:   make(chan blocks.Block),
		fetched: make(chan error, 1),
		helped:  make(chan error, 1),
	}
	for _, c := range cids {
		o.need[c]++
	}
	go o.run(ctx)
	return out
}

// ordered is one GetBlocks. Its state is owned by the run goroutine; the
// fetches hand it blocks over channels.
type ordered struct {
	g     manyGetter
	cids  []cid.Cid
	out   chan<- Fetched
	ahead int

	next int                      // index in cids of the block to send next
	need map[cid.Cid]int          // how many times each CID is still to be sent
	buf  map[cid.Cid]blocks.Block // arrived, not yet sent

	arrive  chan blocks.Block // from the main fetch, taken while there is room
	extra   chan blocks.Block // from a helper fetch (at most ahead blocks), always taken
	fetched chan error        // the main fetch's end
	helped  chan error        // a helper fetch's end
}

func (o *ordered) run(ctx context.Context) {
	defer close(o.out)
	ctx, cancel := context.WithCancel(ctx)
	// The fetches end before the channel closes: nothing of this fetch
	// outlives the read.
	running := 0
	defer func() {
		cancel()
		for ; running > 0; running-- {
			select {
			case <-o.fetched:
			case <-o.helped:
			}
		}
	}()
	if len(o.cids) == 0 {
		return
	}
	to := func(ch chan<- blocks.Block) func(blocks.Block) error {
		return func(b blocks.Block) error {
			select {
			case ch <- b:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	running++
	go func() { o.fetched <- o.g.GetMany(ctx, o.cids, to(o.arrive)) }()

	fetchDone, helping := false, false
	for o.next < len(o.cids) {
		c := o.cids[o.next]
		b, have := o.buf[c]
		var send chan<- Fetched
		if have {
			send = o.out
		}
		// Take more blocks while there is room: up to ahead, or twice
		// that while the next block is not among them.
		arrive := o.arrive
		if len(o.buf) >= 2*o.ahead || have && len(o.buf) >= o.ahead {
			arrive = nil
		}
		if !have && !helping && (len(o.buf) >= 2*o.ahead || fetchDone) {
			// The fetch is held up behind blocks far ahead (or ended
			// without this one): fetch the next few on their own.
			helping = true
			running++
			go func(want []cid.Cid) { o.helped <- o.g.GetMany(ctx, want, to(o.extra)) }(o.missing())
		}
		select {
		case send <- Fetched{Block: b}:
			o.next++
			if o.need[c]--; o.need[c] == 0 {
				delete(o.need, c)
				delete(o.buf, c)
			}
		case b := <-arrive:
			o.keep(b)
		case b := <-o.extra:
			o.keep(b)
		case err := <-o.fetched:
			running--
			fetchDone = true
			if err != nil {
				o.fail(ctx, err)
				return
			}
		case err := <-o.helped:
			running--
			helping = false
			if err != nil {
				o.fail(ctx, err)
				return
			}
		case <-ctx.Done():
			o.fail(ctx, ctx.Err())
			return
		}
	}
}

// keep buffers b until it is sent, unless it was sent already (both
// fetches delivered it).
func (o *ordered) keep(b blocks.Block) {
	if o.need[b.Cid()] > 0 {
		o.buf[b.Cid()] = b
	}
}

// missing lists the CIDs among the next ahead that have not arrived.
func (o *ordered) missing() []cid.Cid {
	var out []cid.Cid
	for _, c := range o.cids[o.next:min(len(o.cids), o.next+o.ahead)] {
		if _, ok := o.buf[c]; !ok {
			out = append(out, c)
		}
	}
	return out
}

// fail sends err as the last result, unless the reader is gone (it
// cancelled ctx: it is not listening).
func (o *ordered) fail(ctx context.Context, err error) {
	select {
	case o.out <- Fetched{Err: err}:
	case <-ctx.Done():
	}
}

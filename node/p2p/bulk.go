package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	bstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// BulkProtocol streams many blocks from one holder on one stream, beside
// bitswap: the fetcher names a batch of CIDs, the holder answers each in
// order (the block, or refused, or missing), applying the same block filter
// as bitswap. It saves bitswap's per-block wantlist, engine and message
// work on large fetches; bitswap remains the fallback for every block the
// bulk path does not deliver.
const BulkProtocol protocol.ID = "/medmesh/blocks/1.0.0"

// Bulk transfer tuning. Variables so tests and benchmarks can adjust them.
var (
	// bulkBatch is how many CIDs one request names, and bulkWindow how
	// many requests a fetcher keeps outstanding on a stream.
	bulkBatch  = 16
	bulkWindow = 2
	// bulkMinBlocks is the smallest fetch that tries the bulk path without
	// holders named by WithHolders (it costs a DHT lookup first).
	bulkMinBlocks = 4
	// bulkIdleTimeout is how long a holder waits for the next request, and
	// bulkWriteTimeout how long it may take to send one block.
	bulkIdleTimeout  = time.Minute
	bulkWriteTimeout = time.Minute
	// bulkMaxHolders bounds the holders one fetch streams from at once.
	bulkMaxHolders = 4
	// bulkHedge is how long the other holders wait for the leading one
	// before they join a fetch (see bulkFetch).
	bulkHedge = 20 * time.Millisecond
)

type holdersKey struct{}

// WithHolders returns a context that names peers likely to hold the blocks
// a GetMany under it fetches (a record's owner and replica holders, say).
// GetMany then streams from them with BulkProtocol without asking the DHT
// first.
func WithHolders(ctx context.Context, holders ...peer.ID) context.Context {
	return context.WithValue(ctx, holdersKey{}, holders)
}

func holdersFrom(ctx context.Context) []peer.ID {
	h, _ := ctx.Value(holdersKey{}).([]peer.ID)
	return h
}

// serveStore is where the bulk server reads blocks: the blockstore without
// its hash-on-read check when it has one. The fetcher derives every block's
// CID from its bytes, so a corrupted local block is caught there (and
// fetched elsewhere) without a third SHA-256 pass on the holder.
func serveStore(bs bstore.Blockstore) bstore.Blockstore {
	if v, ok := bs.(*bstore.ValidatingBlockstore); ok && v.Blockstore != nil {
		return v.Blockstore
	}
	return bs
}

// serveBulk answers BulkProtocol requests on one stream until the fetcher
// closes its side, an error, or the node closes.
func (n *Node) serveBulk(s network.Stream) {
	p := s.Conn().RemotePeer()
	if !n.cfg.Members.IsMember(p) {
		_ = s.Reset()
		return
	}
	store := serveStore(n.bstore)
	br := bufio.NewReaderSize(s, 4<<10)
	bw := bufio.NewWriterSize(s, 64<<10)
	var req []cid.Cid
	for {
		_ = s.SetReadDeadline(time.Now().Add(bulkIdleTimeout))
		var err error
		req, err = readBulkRequest(br, req)
		if err == io.EOF {
			_ = s.Close()
			return
		}
		if err != nil {
			n.log.Debug("bulk request", "peer", p.String(), "err", err)
			_ = s.Reset()
			return
		}
		var sent []cid.Cid
		for _, c := range req {
			status, data := bulkOK, []byte(nil)
			if n.ctx.Err() != nil {
				_ = s.Reset()
				return
			}
			if !n.blockRequestFilter(p, c) {
				status = bulkRefused
			} else if b, err := store.Get(n.ctx, c); err != nil {
				if !ipld.IsNotFound(err) {
					n.log.Warn("bulk serve: read block", "cid", c.String(), "err", err)
				}
				status = bulkMissing
			} else if data = b.RawData(); len(data) > bulkMaxBlockSize {
				status, data = bulkMissing, nil
			}
			_ = s.SetWriteDeadline(time.Now().Add(bulkWriteTimeout))
			if err := writeBulkFrame(bw, status, data); err != nil {
				_ = s.Reset()
				return
			}
			if status == bulkOK {
				n.metrics.bulkServed.Inc()
				sent = append(sent, c)
			}
		}
		if err := bw.Flush(); err != nil {
			_ = s.Reset()
			return
		}
		if n.cfg.Served != nil {
			for _, c := range sent {
				n.cfg.Served(p, c)
			}
		}
	}
}

// bulkQueue hands out the CIDs of one bulk fetch to its holder streams.
type bulkQueue struct {
	mu    sync.Mutex
	queue []cid.Cid
	// tried records, per CID, the holders that did not deliver it.
	tried map[cid.Cid][]peer.ID
}

// take removes up to max CIDs p has not failed from the front of the queue.
func (q *bulkQueue) take(p peer.ID, max int) []cid.Cid {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []cid.Cid
	keep := q.queue[:0]
	for i, c := range q.queue {
		if len(out) == max {
			keep = append(keep, q.queue[i:]...)
			break
		}
		if q.failed(p, c) {
			keep = append(keep, c)
			continue
		}
		out = append(out, c)
	}
	q.queue = keep
	return out
}

// empty reports whether no CID is waiting to be taken.
func (q *bulkQueue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue) == 0
}

// leaderFirst returns holders rotated so that the one at the first CID's
// hash modulo their number comes first.
func leaderFirst(holders []peer.ID, first cid.Cid) []peer.ID {
	if len(holders) < 2 {
		return holders
	}
	h := first.Hash()
	k := int(h[len(h)-1]) % len(holders)
	return append(append(make([]peer.ID, 0, len(holders)), holders[k:]...), holders[:k]...)
}

func (q *bulkQueue) failed(p peer.ID, c cid.Cid) bool {
	for _, t := range q.tried[c] {
		if t == p {
			return true
		}
	}
	return false
}

// giveBack returns CIDs p did not deliver to the front of the queue; with
// fail set p is not asked for them again.
func (q *bulkQueue) giveBack(p peer.ID, fail bool, cids ...cid.Cid) {
	if len(cids) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if fail {
		for _, c := range cids {
			q.tried[c] = append(q.tried[c], p)
		}
	}
	q.queue = append(append(make([]cid.Cid, 0, len(cids)+len(q.queue)), cids...), q.queue...)
}

// bulkHolders lists the peers a fetch of cids streams from: those named
// with WithHolders, else the DHT's providers of the first CID.
func (n *Node) bulkHolders(ctx context.Context, cids []cid.Cid) []peer.ID {
	var out []peer.ID
	seen := map[peer.ID]bool{n.Host.ID(): true}
	add := func(p peer.ID) {
		if !seen[p] && len(out) < bulkMaxHolders && n.cfg.Members.IsMember(p) {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range holdersFrom(ctx) {
		add(p)
	}
	if len(out) > 0 || len(cids) < bulkMinBlocks {
		return out
	}
	lctx, cancel := context.WithTimeout(ctx, min(n.cfg.StallTimeout, 2*time.Second))
	defer cancel()
	for ai := range n.DHT.FindProvidersAsync(lctx, cids[0], stallMaxProviders) {
		if len(ai.Addrs) > 0 && ai.ID != n.Host.ID() {
			n.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Minute)
		}
		add(ai.ID)
	}
	return out
}

// bulkFetch streams the pending blocks of f from holders, splitting them
// across the holders, and hands each verified block to accept. It returns
// when every holder stream has ended (delivered all it could), when no
// block arrives for the stall timeout, or on an error from fn; what it did
// not deliver stays pending for bitswap.
func (n *Node) bulkFetch(ctx context.Context, f *fetchState, holders []peer.ID, fn func(blocks.Block) error) error {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := &bulkQueue{queue: f.remaining(), tried: make(map[cid.Cid][]peer.ID)}
	results := make(chan blocks.Block, 4)
	// One holder leads, chosen by the first CID so that many small
	// fetches (a dataset's one-chunk instances) spread over the holders;
	// the others join after bulkHedge, or at once when the leader's stream
	// ends (a holder that is down), and only while CIDs are left. Started
	// all at once, the first stream to open took every one-CID fetch: a
	// dataset fetch from three providers on their own 200 Mbit/s links
	// drew 50 of 67 MB from one of them and ran at 31 MB/s, against 48
	// over bitswap (scripts/bench-dataset.sh).
	if len(q.queue) == 0 {
		return nil
	}
	holders = leaderFirst(holders, q.queue[0])
	leaderDone := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				defer close(leaderDone)
			} else {
				t := time.NewTimer(bulkHedge)
				select {
				case <-t.C:
				case <-leaderDone:
					t.Stop()
				case <-bctx.Done():
					t.Stop()
					return
				}
				if q.empty() {
					return
				}
			}
			err := n.bulkStream(bctx, p, q, results)
			switch {
			case errors.Is(err, errBulkLie):
				n.log.Warn("bulk holder sent wrong bytes for a block; dropped them, fetching elsewhere", "peer", p.String())
			case err != nil && bctx.Err() == nil:
				n.log.Debug("bulk fetch from holder ended", "peer", p.String(), "err", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	defer func() { cancel(); <-done }()

	timer := time.NewTimer(n.cfg.StallTimeout)
	defer timer.Stop()
	for len(f.pending) > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-n.ctx.Done():
			return nil
		case <-timer.C:
			n.log.Info("bulk fetch stalled; falling back to bitswap", "missing", len(f.pending))
			return nil
		case <-done:
			// Every stream ended; take what they sent before they did.
			for {
				select {
				case b := <-results:
					if err := n.accept(ctx, f, b, fn); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		case b := <-results:
			if err := n.accept(ctx, f, b, fn); err != nil {
				return err
			}
			timer.Reset(n.cfg.StallTimeout)
		}
	}
	return nil
}

// bulkStream fetches from one holder on one stream: a writer keeps up to
// bulkWindow requests of bulkBatch CIDs outstanding, the reader checks each
// block against its CID and sends it to results. CIDs not delivered go back
// to the queue (marked as failed by p unless the stream just broke).
func (n *Node) bulkStream(ctx context.Context, p peer.ID, q *bulkQueue, results chan<- blocks.Block) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dctx, dcancel := context.WithTimeout(sctx, max(n.cfg.StallTimeout, 2*time.Second))
	s, err := n.Host.NewStream(dctx, p, BulkProtocol)
	dcancel()
	if err != nil {
		return fmt.Errorf("open bulk stream: %w", err)
	}
	defer func() { _ = s.Reset() }() // after a clean end this is a no-op

	inflight := make(chan []cid.Cid, bulkWindow-1)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer close(inflight)
		bw := bufio.NewWriterSize(s, 4<<10)
		for sctx.Err() == nil {
			batch := q.take(p, bulkBatch)
			if len(batch) == 0 {
				_ = s.CloseWrite()
				return
			}
			// Hand the batch to the reader first: if the write fails it
			// is the reader that gives it back.
			select {
			case inflight <- batch:
			case <-sctx.Done():
				q.giveBack(p, false, batch...)
				return
			}
			if err := writeBulkRequest(bw, batch); err != nil || bw.Flush() != nil {
				_ = s.Reset()
				return
			}
		}
	}()
	// On any early return the reader gives back what was not delivered.
	var readErr error
	br := bufio.NewReaderSize(s, 64<<10)
	for batch := range inflight {
		for i, c := range batch {
			if readErr != nil {
				q.giveBack(p, false, batch[i:]...)
				break
			}
			b, status, err := n.readBulkBlock(br, c)
			switch {
			case err != nil:
				readErr = err
				q.giveBack(p, errors.Is(err, errBulkLie) || errors.Is(err, errBulkMalformed), batch[i:]...)
				cancel()
				_ = s.Reset()
			case status != bulkOK:
				q.giveBack(p, true, c)
			default:
				select {
				case results <- b:
				case <-sctx.Done():
					readErr = sctx.Err()
					q.giveBack(p, false, batch[i:]...)
				}
			}
			if readErr != nil {
				break
			}
		}
	}
	<-writerDone
	return readErr
}

var errBulkLie = errors.New("p2p: bulk holder sent a block that does not match its CID")

// readBulkBlock reads the frame answering c and, for a block, checks that
// its bytes hash to c.
func (n *Node) readBulkBlock(br *bufio.Reader, c cid.Cid) (blocks.Block, byte, error) {
	status, size, err := readBulkFrameHeader(br)
	if err != nil || status != bulkOK {
		return nil, status, err
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(br, data); err != nil {
		return nil, status, err
	}
	got, err := c.Prefix().Sum(data)
	if err != nil || !got.Equals(c) {
		n.metrics.bulkRejected.Inc()
		return nil, status, fmt.Errorf("%w: %s", errBulkLie, c)
	}
	n.metrics.bulkBlocks.Inc()
	b, _ := blocks.NewBlockWithCid(data, c)
	return b, status, nil
}

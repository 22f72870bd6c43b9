package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	bstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

const (
	// stallProviderCIDs is how many missing CIDs a stalled fetch looks up
	// providers for (the holder of one usually holds the rest).
	stallProviderCIDs = 3
	// stallMaxProviders bounds the providers taken per lookup.
	stallMaxProviders = 8
)

// Get returns block c from the local blockstore or, failing that, from the
// network: peers already connected are asked first, then providers found on
// the DHT are dialed. A fetched block is verified against c and stored
// locally (unless ctx comes from NoKeep). The fetch never stalls silently (see GetMany); it ends when ctx
// does, with an error wrapping ErrNotFetched.
func (n *Node) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	var out blocks.Block
	err := n.GetMany(ctx, []cid.Cid{c}, func(b blocks.Block) error {
		out = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetMany fetches cids and calls fn once per distinct CID, in arrival order
// (local blocks first), from the calling goroutine. An error from fn stops
// the fetch and is returned.
//
// Missing blocks are fetched with one bitswap session. When no block arrives
// for Config.StallTimeout the session is cancelled (its wants are
// cancelled), providers of the missing blocks are looked up on the DHT and
// dialed, and a fresh session re-sends the wants; after two stalls in a row
// connections to the providers are re-established, which clears a peer's
// lost wantlist (once per provider and fetch). Every block is checked
// against its CID before it is stored (unless ctx comes from NoKeep)
// or handed to fn. When ctx ends first, the error wraps ErrNotFetched and
// says how many blocks are missing and how many providers were seen.
func (n *Node) GetMany(ctx context.Context, cids []cid.Cid, fn func(blocks.Block) error) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	seen := make(map[cid.Cid]struct{}, len(cids))
	var missing []cid.Cid
	for _, c := range cids {
		if !c.Defined() {
			return errors.New("p2p: undefined CID")
		}
		if _, dup := seen[c]; dup {
			continue
		}
		seen[c] = struct{}{}
		b, err := n.bstore.Get(ctx, c)
		switch {
		case err == nil:
			if err := fn(b); err != nil {
				return err
			}
		case ipld.IsNotFound(err):
			missing = append(missing, c)
		case errors.Is(err, bstore.ErrHashMismatch):
			// A corrupted local copy: drop it and fetch a good one.
			n.log.Warn("local block corrupted; fetching it again", "cid", c.String())
			if err := n.bstore.DeleteBlock(ctx, c); err != nil {
				return fmt.Errorf("p2p: delete corrupted block %s: %w", c, err)
			}
			missing = append(missing, c)
		default:
			return fmt.Errorf("p2p: local blockstore: %w", err)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return n.fetch(ctx, missing, fn)
}

type noKeepKey struct{}

// NoKeep returns a context under which Get and GetMany hand fetched blocks
// to the caller without storing them. A node reading a record it neither
// owns nor holds as a replica keeps no copy of its ciphertext: which nodes
// hold a record is the replication manager's decision, kept within quotas
// and visible on the ledger, not a side effect of who read it. It is also
// cheaper: storing every fetched block cost a fifth of a two-node get
// (in-process BenchmarkGetTwoNodes, 512 MiB: 266-293 MB/s storing,
// 346-351 not).
func NoKeep(ctx context.Context) context.Context {
	return context.WithValue(ctx, noKeepKey{}, true)
}

func noKeep(ctx context.Context) bool {
	v, _ := ctx.Value(noKeepKey{}).(bool)
	return v
}

// fetchState tracks one GetMany's network fetch.
type fetchState struct {
	order     []cid.Cid // missing CIDs in request order
	pending   map[cid.Cid]struct{}
	total     int
	stalls    int
	providers map[peer.ID]struct{}
	// reset holds providers whose connection this fetch already
	// re-established: once is enough to drop a lost wantlist, and a
	// provider that refuses us must not be disconnected over and over.
	reset   map[peer.ID]struct{}
	lastErr error
	keep    bool // store fetched blocks (not under NoKeep)
}

func (f *fetchState) remaining() []cid.Cid {
	out := make([]cid.Cid, 0, len(f.pending))
	for _, c := range f.order {
		if _, ok := f.pending[c]; ok {
			out = append(out, c)
		}
	}
	f.order = out
	return out
}

func (n *Node) fetch(ctx context.Context, missing []cid.Cid, fn func(blocks.Block) error) error {
	f := &fetchState{
		order:     missing,
		pending:   make(map[cid.Cid]struct{}, len(missing)),
		total:     len(missing),
		providers: make(map[peer.ID]struct{}),
		reset:     make(map[peer.ID]struct{}),
		keep:      !noKeep(ctx),
	}
	for _, c := range missing {
		f.pending[c] = struct{}{}
	}
	// Stream what holders we know of can send in bulk; bitswap fetches
	// the rest (refused, missing, wrong bytes, no bulk protocol, stalled).
	if holders := n.bulkHolders(ctx, missing); len(holders) > 0 {
		if err := n.bulkFetch(ctx, f, holders, fn); err != nil {
			return err
		}
	}
	stallsInARow := 0
	for len(f.pending) > 0 {
		if err := ctx.Err(); err != nil {
			return n.notFetched(f, err)
		}
		if n.ctx.Err() != nil {
			return n.notFetched(f, ErrClosed)
		}
		progressed, err := n.fetchRound(ctx, f, fn)
		if err != nil {
			return err
		}
		if len(f.pending) == 0 {
			break
		}
		if ctx.Err() != nil {
			return n.notFetched(f, ctx.Err())
		}
		if n.ctx.Err() != nil {
			return n.notFetched(f, ErrClosed)
		}
		if progressed {
			stallsInARow = 0
		}
		stallsInARow++
		f.stalls++
		n.metrics.stalls.Inc()
		n.log.Info("fetch stalled; re-sending wants and looking up providers",
			"missing", len(f.pending), "of", f.total, "stall", f.stalls)
		n.reconnectProviders(ctx, f, stallsInARow >= 2)
	}
	return nil
}

// fetchRound runs one bitswap session over the pending CIDs until all
// arrive, no block arrives for the stall timeout, or ctx ends. It reports
// whether any block arrived.
func (n *Node) fetchRound(ctx context.Context, f *fetchState, fn func(blocks.Block) error) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // cancels the session and its wants
	ch, err := n.Bitswap.NewSession(sctx).GetBlocks(sctx, f.remaining())
	if err != nil {
		f.lastErr = err
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("p2p: bitswap: %w", err)
	}
	timer := time.NewTimer(n.cfg.StallTimeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return progressed, nil
		case <-n.ctx.Done():
			return progressed, nil
		case <-timer.C:
			return progressed, nil
		case b, ok := <-ch:
			if !ok {
				// The session ended without every block (bitswap shutting
				// down): wait out the stall timer rather than spin.
				ch = nil
				continue
			}
			if err := n.accept(ctx, f, b, fn); err != nil {
				return progressed, err
			}
			progressed = true
			if len(f.pending) == 0 {
				return true, nil
			}
			timer.Reset(n.cfg.StallTimeout)
		}
	}
}

// accept verifies a fetched block, stores it and hands it to fn.
func (n *Node) accept(ctx context.Context, f *fetchState, b blocks.Block, fn func(blocks.Block) error) error {
	c := b.Cid()
	if _, want := f.pending[c]; !want {
		return nil
	}
	// No second hash here: bitswap derives a received block's CID from its
	// bytes (message.go, prefix.Sum), and a block read back from the local
	// store is re-hashed by the validating blockstore.
	if f.keep {
		if err := n.bstore.Put(ctx, b); err != nil {
			return fmt.Errorf("p2p: store fetched block %s: %w", c, err)
		}
		// Let peers whose wants we could not serve before have it now.
		if n.Bitswap.Server != nil {
			if err := n.Bitswap.Server.NotifyNewBlocks(ctx, b); err != nil {
				n.log.Debug("notify bitswap server", "err", err)
			}
		}
	}
	delete(f.pending, c)
	n.metrics.fetchedBlocks.Inc()
	n.metrics.fetchedBytes.Add(float64(len(b.RawData())))
	return fn(b)
}

// reconnectProviders looks up providers of a few missing CIDs on the DHT and
// dials those not connected. With fresh set, connected providers are
// disconnected and re-dialed too (once per fetch each), dropping any
// wantlist state lost on a stale connection.
func (n *Node) reconnectProviders(ctx context.Context, f *fetchState, fresh bool) {
	lctx, cancel := context.WithTimeout(ctx, max(n.cfg.StallTimeout, 2*time.Second))
	defer cancel()
	found := make(map[peer.ID]peer.AddrInfo)
	for i, c := range f.remaining() {
		if i == stallProviderCIDs {
			break
		}
		for ai := range n.DHT.FindProvidersAsync(lctx, c, stallMaxProviders) {
			if ai.ID == n.Host.ID() || !n.cfg.Members.IsMember(ai.ID) {
				continue
			}
			found[ai.ID] = ai
		}
	}
	for id, ai := range found {
		f.providers[id] = struct{}{}
		_, wasReset := f.reset[id]
		if fresh && !wasReset && n.Host.Network().Connectedness(id) == network.Connected {
			f.reset[id] = struct{}{}
			n.log.Info("re-establishing connection to stalled provider", "peer", id.String())
			_ = n.Host.Network().ClosePeer(id)
		}
		if n.Host.Network().Connectedness(id) == network.Connected {
			continue
		}
		dctx := network.WithForceDirectDial(lctx, "fetch stalled")
		if err := n.Connect(dctx, ai); err != nil {
			f.lastErr = err
			n.log.Debug("dial provider", "peer", id.String(), "err", err)
		}
	}
}

func (n *Node) notFetched(f *fetchState, cause error) error {
	rem := f.remaining()
	msg := fmt.Sprintf("%d of %d blocks missing", len(rem), f.total)
	if len(rem) > 0 {
		msg += fmt.Sprintf(" (first %s)", rem[0])
	}
	msg += fmt.Sprintf(", %d stalls, %d providers seen on the DHT", f.stalls, len(f.providers))
	if len(f.providers) > 0 {
		msg += " (they may not hold the block or may refuse it to us)"
	}
	if f.lastErr != nil {
		msg += fmt.Sprintf(", last error: %v", f.lastErr)
	}
	return fmt.Errorf("%w: %s: %w", ErrNotFetched, msg, cause)
}

// GetFrom fetches block c from the holders one at a time, each over
// BulkProtocol for at most the stall timeout, before it falls back to Get.
// A small block (a record's manifest) is then served once, by one holder,
// so the holders' read attestations count each read once.
func (n *Node) GetFrom(ctx context.Context, c cid.Cid, holders []peer.ID) (blocks.Block, error) {
	if b, err := n.bstore.Get(ctx, c); err == nil {
		return b, nil
	}
	f := &fetchState{order: []cid.Cid{c}, pending: map[cid.Cid]struct{}{c: {}}, total: 1, keep: !noKeep(ctx)}
	var out blocks.Block
	keep := func(b blocks.Block) error { out = b; return nil }
	for _, p := range holders {
		if p == n.Host.ID() || !n.cfg.Members.IsMember(p) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, n.cfg.StallTimeout)
		results := make(chan blocks.Block, 1)
		err := n.bulkStream(sctx, p, &bulkQueue{queue: []cid.Cid{c}, tried: map[cid.Cid][]peer.ID{}}, results)
		cancel()
		select {
		case b := <-results:
			if err := n.accept(ctx, f, b, keep); err != nil {
				return nil, err
			}
			return out, nil
		default:
		}
		if ctx.Err() != nil {
			return nil, n.notFetched(f, ctx.Err())
		}
		n.log.Debug("holder did not deliver", "peer", p.String(), "cid", c.String(), "err", err)
	}
	return n.Get(ctx, c)
}

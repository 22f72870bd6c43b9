package ledger

import (
	"context"

	"github.com/ipfs/go-cid"
)

// Catch-up sync as plain values, in the manner of tka's SyncOffer and
// MissingAUMs: what a node offers is its heads; what a peer lacks and what
// this node lacks are functions of the offer and the DAG. Nothing here
// touches the network; net.go carries offers and entries as bytes.

// SyncOffer is what a node tells a peer it has: entries whose causal past
// it has too. An offer holds the node's heads and, like tka's, ancestors
// of each head at exponentially growing distances, so a peer that lacks
// the newest heads (the two wrote concurrently) still finds entries it
// knows and sends only the difference, not the whole log.
type SyncOffer struct {
	Heads []cid.Cid
}

const (
	// maxHaveHeads bounds the entries one offer carries (the sync
	// protocol's limit): an offer cut short only makes the answer larger.
	maxHaveHeads = 512
	// maxOfferDistance is the farthest ancestor an offer names, along
	// first parents: 1, 2, 4, ... up to it.
	maxOfferDistance = 256
)

// Offer returns c's offer: its heads, sorted, then their ancestors at
// distances 1, 2, 4, ... maxOfferDistance along a chain of parents in the
// head's scope (scopeParent), at most maxHaveHeads in all.
func (c *Core) Offer(ctx context.Context) (SyncOffer, error) {
	return c.ScopeOffer(ctx, ScopeGlobal)
}

// ScopeOffer is Offer for catching up scope s: the heads of the scopes in
// its closure (an owner scope's entries name global heads too), then their
// ancestors.
func (c *Core) ScopeOffer(ctx context.Context, s string) (SyncOffer, error) {
	if err := c.ready(ctx); err != nil {
		return SyncOffer{}, err
	}
	hs := c.closureHeads(wireScope(s))
	seen := make(map[cid.Cid]bool, len(hs))
	for _, h := range hs {
		seen[h] = true
	}
	out := hs
	for _, h := range hs {
		at, next := h, 1
		for dist := 1; dist <= maxOfferDistance && len(out) < maxHaveHeads; dist++ {
			n, err := c.d.get(ctx, at)
			if err != nil {
				return SyncOffer{}, err
			}
			if n == nil || len(n.parents) == 0 {
				break
			}
			if at, err = c.scopeParent(ctx, n); err != nil {
				return SyncOffer{}, err
			}
			if dist == next {
				next *= 2
				if !seen[at] {
					seen[at] = true
					out = append(out, at)
				}
			}
		}
	}
	if len(out) > maxHaveHeads {
		out = out[:maxHaveHeads]
	}
	return SyncOffer{Heads: out}, nil
}

// scopeParent returns a parent of n in n's scope, or its first parent if
// none is. An offer's ancestors follow it: an owner or audit scope entry
// names heads of the scopes it depends on too, and its parents are sorted
// by their bytes, so the first parent leaves the scope in about half the
// cases; a chain in the global scope tells a peer nothing of the owner
// scope, and a peer that did not know the heads answered with the scope's
// whole history.
func (c *Core) scopeParent(ctx context.Context, n *node) (cid.Cid, error) {
	if len(n.parents) > 1 {
		for _, p := range n.parents {
			pn, err := c.d.get(ctx, p)
			if err != nil {
				return cid.Undef, err
			}
			if pn != nil && pn.scope == n.scope {
				return p, nil
			}
		}
	}
	return n.parents[0], nil
}

// PeerLacks returns the applied entries a peer that made offer lacks: those
// in c's causal past that are not in the causal past of any offered head,
// oldest first (so the peer can apply them in order). Offered heads c does
// not know are ignored: the peer has entries c lacks (WeLack). The cost is
// the size of the difference, not of the log.
func (c *Core) PeerLacks(ctx context.Context, offer SyncOffer) ([]cid.Cid, error) {
	return c.ScopePeerLacks(ctx, ScopeGlobal, offer)
}

// ScopePeerLacks is PeerLacks for scope s: the entries of s and of the
// scopes it depends on (closure) that the peer lacks, oldest first. A
// scope c holds nothing of yields only what the peer lacks of the global
// scope.
func (c *Core) ScopePeerLacks(ctx context.Context, s string, offer SyncOffer) ([]cid.Cid, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	diff, err := c.d.difference(ctx, c.closureHeads(wireScope(s)), offer.Heads, 0)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(diff)-1; i < j; i, j = i+1, j-1 { // newest first -> oldest first
		diff[i], diff[j] = diff[j], diff[i]
	}
	return diff, nil
}

// WeLack returns the offered heads c has not applied: the peer has entries
// c lacks (those heads, or the ancestors a buffered one waits for), and a
// sync from it fetches them.
func (c *Core) WeLack(ctx context.Context, offer SyncOffer) ([]cid.Cid, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	var out []cid.Cid
	for _, h := range offer.Heads {
		ok, err := c.Has(ctx, h)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, h)
		}
	}
	return out, nil
}

package ledger

import (
	"container/heap"
	"context"
	"errors"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// node is the in-memory form of an applied entry's meta.
type node struct {
	clock   HLC
	parents []cid.Cid
	typ     string
	author  peer.ID
	cs      string // the CID as a string, when known
	scope   string // the wire scope ("" for global)
}

// dag gives cached access to entry metadata and answers causality questions.
// It belongs to one Core and is not safe for concurrent use.
type dag struct {
	t     *txn
	cache map[cid.Cid]*node
	anc   map[[2]cid.Cid]bool // (a, b) -> a is a strict ancestor of b
	sc    *stateCache         // decoded current state (fastpath.go)
	added uint64              // nodes ever added to cache (trim.go)
}

// newTxn starts a batch whose writes keep the state cache coherent. size is
// the number of entries expected in it (the write map is sized for them).
func (d *dag) newTxn(s Store, size int) *txn {
	return &txn{s: s, writes: make(map[string][]byte, size*writesPerEntry), blind: make([]kv, 0, 2*size), sc: d.sc}
}

// writesPerEntry is about how many overlay keys applying one entry writes.
const writesPerEntry = 4

const (
	maxNodeCache = 1 << 18
	maxAncCache  = 1 << 16
)

// get returns the meta of an applied entry, or nil.
func (d *dag) get(ctx context.Context, c cid.Cid) (*node, error) {
	if n, ok := d.cache[c]; ok {
		return n, nil
	}
	v, ok, err := d.t.get(ctx, pMeta+c.String())
	if err != nil || !ok {
		return nil, err
	}
	var m meta
	if err := decMode.Unmarshal(v, &m); err != nil {
		return nil, err
	}
	n := &node{clock: HLC{m.Wall, m.Counter}, typ: m.Type, scope: m.Scope}
	if n.author, err = peer.IDFromBytes(m.Author); err != nil {
		return nil, err
	}
	for _, p := range m.Parents {
		pc, err := cid.Cast(p)
		if err != nil {
			return nil, err
		}
		n.parents = append(n.parents, pc)
	}
	d.add(c, n)
	return n, nil
}

// name returns c.String(), from the cached node when it has it.
func (d *dag) name(c cid.Cid) string {
	if n := d.cache[c]; n != nil && n.cs != "" {
		return n.cs
	}
	return c.String()
}

func (d *dag) add(c cid.Cid, n *node) {
	if len(d.cache) >= maxNodeCache {
		clear(d.cache)
	}
	d.cache[c] = n
	d.added++
}

// before reports whether (clock, CID) of a sorts before b's.
func before(ac HLC, a cid.Cid, bc HLC, b cid.Cid) bool {
	if ac != bc {
		return ac.Less(bc)
	}
	return a.KeyString() < b.KeyString()
}

// isAncestor reports whether a is a strict ancestor of b. It walks back from
// b, pruning every entry ordered before a (an ancestor of a is never a
// descendant of it) and every entry a known fact about a answers for (a is
// an ancestor of it: found; a is not: nothing below it leads to a).
// Results are immutable facts and cached.
func (d *dag) isAncestor(ctx context.Context, a, b cid.Cid) (bool, error) {
	if a == b {
		return false, nil
	}
	key := [2]cid.Cid{a, b}
	if v, ok := d.anc[key]; ok {
		return v, nil
	}
	an, err := d.get(ctx, a)
	if err != nil || an == nil {
		return false, err
	}
	bn, err := d.get(ctx, b)
	if err != nil || bn == nil {
		return false, err
	}
	found := false
	if before(an.clock, a, bn.clock, b) {
		seen := map[cid.Cid]bool{}
		stack := append([]cid.Cid(nil), bn.parents...)
		for len(stack) > 0 && !found {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if c == a {
				found = true
				break
			}
			if seen[c] {
				continue
			}
			seen[c] = true
			if v, ok := d.anc[[2]cid.Cid{a, c}]; ok {
				if found = v; found {
					break
				}
				continue
			}
			n, err := d.get(ctx, c)
			if err != nil {
				return false, err
			}
			if n == nil || before(n.clock, c, an.clock, a) {
				continue
			}
			stack = append(stack, n.parents...)
		}
	}
	if len(d.anc) >= maxAncCache {
		clear(d.anc)
	}
	d.anc[key] = found
	return found, nil
}

// walkItem is a heap element of the painted walk.
type walkItem struct {
	c     cid.Cid
	clock HLC
}

type walkHeap []walkItem

func (h walkHeap) Len() int { return len(h) }
func (h walkHeap) Less(i, j int) bool {
	return before(h[j].clock, h[j].c, h[i].clock, h[i].c) // max-heap
}
func (h walkHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *walkHeap) Push(x any)   { *h = append(*h, x.(walkItem)) }
func (h *walkHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// errWalkLimit is returned when a difference is larger than asked for.
var errWalkLimit = errors.New("ledger: walk limit exceeded")

// shortcutAfter is how many entries difference pops before it asks, of
// each entry only the from side has reached, whether it is an ancestor of
// the exclude side (isAncestor, whose answers are cached facts), and again
// after twice as many, and so on.
//
// Why: an entry whose parents are far back in the history (a node that
// appended before catching up, or a member doing it on purpose) stays a
// head with an old clock. Every entry signed without having seen it is
// then judged off the heads, and the painted walk, which goes in
// decreasing clock order, reaches that entry and its old parents only
// after walking the whole history above them: each such entry cost a walk
// of the history (BenchmarkLateParent: 39 ms an entry with 40,000 entries
// above the old parents). With the shortcut the first of them pays a walk
// and the others find the answers cached.
const shortcutAfter = 64

// shortcutMost is the most entries the shortcut settles in one walk: a
// late entry leaves one or a few (it and its old parents) only the from
// side reaches; a large difference (a peer far behind) leaves many, which
// the walk itself settles sooner than a search from each would.
const shortcutMost = 32

// difference returns the applied entries that are in the causal past of
// from (inclusive) but not in that of exclude (inclusive), newest first.
// CIDs in either set that are not applied are ignored. It walks both pasts
// in decreasing (clock, CID) order, painting nodes by the side that reached
// them, and stops as soon as only excluded nodes remain queued: everything
// below them is in exclude's past. Cost is proportional to the difference
// plus its boundary, not to the log, except where an entry only from
// reaches has a clock far below the rest (see shortcutAfter). limit <= 0
// means unlimited.
func (d *dag) difference(ctx context.Context, from, exclude []cid.Cid, limit int) ([]cid.Cid, error) {
	return d.differenceAfter(ctx, from, exclude, limit, shortcutAfter)
}

// differenceAfter is difference with the first shortcut after the given
// number of pops (tests take it down to 1).
func (d *dag) differenceAfter(ctx context.Context, from, exclude []cid.Cid, limit, after int) ([]cid.Cid, error) {
	// mOut marks an entry of from's past the shortcut found outside
	// exclude's past: output, its parents queued, skipped when popped.
	const mFrom, mEx, mOut = 1, 2, 4
	marks := map[cid.Cid]uint8{}
	h := &walkHeap{}
	fromOnly := 0
	// only are the queued entries marked mFrom alone (fromOnly of them).
	only := map[cid.Cid]bool{}
	push := func(c cid.Cid, m uint8) error {
		old, seen := marks[c]
		if seen {
			nw := old | m
			if old == mFrom && nw != mFrom {
				fromOnly--
				delete(only, c)
			}
			marks[c] = nw
			return nil
		}
		n, err := d.get(ctx, c)
		if err != nil || n == nil {
			return err
		}
		marks[c] = m
		if m == mFrom {
			fromOnly++
			only[c] = true
		}
		heap.Push(h, walkItem{c, n.clock})
		return nil
	}
	for _, c := range exclude {
		if err := push(c, mEx); err != nil {
			return nil, err
		}
	}
	for _, c := range from {
		if err := push(c, mFrom); err != nil {
			return nil, err
		}
	}
	var out []cid.Cid
	early := false
	// shortcut settles each entry in only by asking whether it is an
	// ancestor of an entry of exclude, until none is left to settle.
	settled := 0
	// newestEx is the newest applied entry of exclude: an entry ordered
	// after it is in no exclude entry's past, and the walk pops it before
	// reaching the exclude side below it, so the shortcut leaves it alone.
	var newestEx *walkItem
	for _, x := range exclude {
		n, err := d.get(ctx, x)
		if err != nil {
			return nil, err
		}
		if n != nil && (newestEx == nil || before(newestEx.clock, newestEx.c, n.clock, x)) {
			newestEx = &walkItem{x, n.clock}
		}
	}
	shortcut := func() error {
		for newestEx != nil {
			var next []cid.Cid
			for c := range only {
				n, err := d.get(ctx, c)
				if err != nil {
					return err
				}
				if n != nil && before(n.clock, c, newestEx.clock, newestEx.c) {
					next = append(next, c)
				}
			}
			if len(next) == 0 || settled+len(next) > shortcutMost {
				return nil
			}
			settled += len(next)
			for _, c := range next {
				in := false
				for _, x := range exclude {
					anc, err := d.isAncestor(ctx, c, x)
					if err != nil {
						return err
					}
					if in = anc; in {
						break
					}
				}
				fromOnly--
				delete(only, c)
				if in {
					marks[c] |= mEx
					continue
				}
				// Not in exclude's past (nor in exclude: those are marked
				// mEx from the start): it is in the difference.
				marks[c] |= mOut
				out = append(out, c)
				early = true
				n, err := d.get(ctx, c)
				if err != nil {
					return err
				}
				if n == nil {
					continue
				}
				for _, p := range n.parents {
					if err := push(p, mFrom); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	pops, check := 0, max(after, 1)
	for h.Len() > 0 && fromOnly > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if pops++; pops == check {
			check *= 2
			if err := shortcut(); err != nil {
				return nil, err
			}
			if limit > 0 && len(out) > limit {
				return out, errWalkLimit
			}
			if fromOnly == 0 {
				break
			}
		}
		it := heap.Pop(h).(walkItem)
		m := marks[it.c]
		if m&mOut != 0 {
			continue // output by the shortcut, its parents queued then
		}
		if m == mFrom {
			fromOnly--
			delete(only, it.c)
			out = append(out, it.c)
			if limit > 0 && len(out) > limit {
				return out, errWalkLimit
			}
		}
		n, err := d.get(ctx, it.c)
		if err != nil {
			return nil, err
		}
		for _, p := range n.parents {
			if err := push(p, m); err != nil {
				return nil, err
			}
		}
	}
	if early {
		// Newest first, as the walk alone would have output them.
		nodes := make(map[cid.Cid]HLC, len(out))
		for _, c := range out {
			n, err := d.get(ctx, c)
			if err != nil {
				return nil, err
			}
			nodes[c] = n.clock
		}
		slices.SortFunc(out, func(a, b cid.Cid) int {
			if before(nodes[b], b, nodes[a], a) {
				return -1
			}
			return 1
		})
	}
	return out, nil
}

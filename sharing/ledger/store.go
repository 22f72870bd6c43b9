package ledger

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"sort"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Datastore layout, under the /ledger namespace:
//
//	/e/<cid>                    meta of every applied entry (clock, parents, type, author)
//	/h/<cid>                    current heads
//	/l/<revclock>/<cid>         all applied entries, newest first (type as value)
//	/t/<type>/<revclock>/<cid>  the same, per type
//	/i/...                      indexes over applied entries (inputs of derived state)
//	/s/...                      the materialized view; Digest hashes exactly this prefix
//	/c/clock                    the local clock high-water mark
const (
	pMeta  = "/e/"
	pHeads = "/h/"
	pLog   = "/l/"
	pType  = "/t/"
	pIdx   = "/i/"
	pState = "/s/"
)

// clockKey renders a clock and CID so that byte order is (clock, CID) order.
func clockKey(h HLC, c cid.Cid) string { return clockKeyS(h, c.String()) }

// clockKeyS is clockKey with the CID already rendered as a string.
func clockKeyS(h HLC, c string) string {
	const hexdig = "0123456789abcdef"
	b := make([]byte, 25+len(c))
	var raw [12]byte
	binary.BigEndian.PutUint64(raw[:], h.Wall)
	binary.BigEndian.PutUint32(raw[8:], h.Counter)
	for i, x := range raw {
		b[2*i], b[2*i+1] = hexdig[x>>4], hexdig[x&0xf]
	}
	b[24] = '/'
	copy(b[25:], c)
	return string(b)
}

// revClockKey renders a clock and CID so that ascending byte order is
// newest first (badger's reverse prefix iteration is unreliable).
func revClockKey(h HLC, c string) string {
	return clockKeyS(HLC{^h.Wall, ^h.Counter}, c)
}

// meta is what the ledger keeps about each applied entry besides its block.
type meta struct {
	Wall    uint64   `cbor:"1,keyasint"`
	Counter uint32   `cbor:"2,keyasint"`
	Parents [][]byte `cbor:"3,keyasint"`
	Type    string   `cbor:"4,keyasint"`
	Author  []byte   `cbor:"5,keyasint"`
}

// encodeMeta returns the canonical CBOR of e's meta, as encMode would, but
// written directly: it is encoded for every applied entry.
func encodeMeta(e *Entry) ([]byte, error) {
	if len(e.Parents) == 0 {
		// Genesis: encMode writes the nil parent list as null.
		return encMode.Marshal(&meta{Wall: e.Clock.Wall, Counter: e.Clock.Counter, Type: e.Type, Author: []byte(e.Author)})
	}
	n := 1 + 10 + 6 + 10 + len(e.Type) + 10 + len(e.Author)
	for _, p := range e.Parents {
		n += 9 + p.ByteLen()
	}
	b := make([]byte, 0, n)
	b = append(b, 0xa5, 0x01)
	b = cborHead(b, 0, e.Clock.Wall)
	b = append(b, 0x02)
	b = cborHead(b, 0, uint64(e.Clock.Counter))
	b = append(b, 0x03)
	b = cborHead(b, 4, uint64(len(e.Parents)))
	for _, p := range e.Parents {
		b = cborHead(b, 2, uint64(p.ByteLen()))
		b = append(b, p.KeyString()...)
	}
	b = append(b, 0x04)
	b = cborHead(b, 3, uint64(len(e.Type)))
	b = append(b, e.Type...)
	b = append(b, 0x05)
	b = cborHead(b, 2, uint64(len(e.Author)))
	return append(b, e.Author...), nil
}

// cborHead appends the shortest CBOR head of major type mt with argument v.
func cborHead(b []byte, mt byte, v uint64) []byte {
	mt <<= 5
	switch {
	case v < 24:
		return append(b, mt|byte(v))
	case v <= 0xff:
		return append(b, mt|24, byte(v))
	case v <= 0xffff:
		return append(b, mt|25, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(b, mt|26, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return append(b, mt|27, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

// node is the in-memory form of meta.
type node struct {
	clock   HLC
	parents []cid.Cid
	typ     string
	author  peer.ID
	cs      string // the CID as a string, when known
}

// txn is a write overlay over the datastore: reads see earlier writes of the
// same batch; Commit writes everything in one datastore batch.
type txn struct {
	ds     datastore.Batching
	writes map[string][]byte // nil value = delete
	// dirs indexes written keys by every ancestor directory ("/a/", "/a/b/"),
	// so list does not scan the whole batch. It is built on the first list
	// (most batches never list) and maintained from then on.
	dirs map[string]map[string]struct{}
	// sc, when set, is the ledger's decoded-state cache: every write to a
	// cached state key drops it there.
	sc *stateCache
	// blind holds writes of new keys that nothing reads back before the
	// commit (the log indexes): no overlay map, no directory index.
	blind []kv
	// heads0 are the ledger's heads when the batch began (stageHeads).
	heads0 map[cid.Cid]HLC
}

func newTxn(ds datastore.Batching) *txn {
	return &txn{ds: ds, writes: map[string][]byte{}}
}

// dsKey converts k without path.Clean's allocation when k is already clean
// (every key the ledger builds is); NewKey cleans anything else, as before.
func dsKey(k string) datastore.Key {
	if isCleanKey(k) {
		return datastore.RawKey(k)
	}
	return datastore.NewKey(k)
}

// isCleanKey reports whether path.Clean(k) == k for a key starting with /.
func isCleanKey(k string) bool {
	if len(k) < 2 || k[0] != '/' || k[len(k)-1] == '/' {
		return false
	}
	seg := 1 // start of the current segment
	for i := 1; i <= len(k); i++ {
		if i < len(k) && k[i] != '/' {
			continue
		}
		switch i - seg {
		case 0:
			return false
		case 1:
			if k[seg] == '.' {
				return false
			}
		case 2:
			if k[seg] == '.' && k[seg+1] == '.' {
				return false
			}
		}
		seg = i + 1
	}
	return true
}

func (t *txn) index(k string) {
	if t.dirs == nil {
		return
	}
	if _, ok := t.writes[k]; ok {
		return
	}
	t.indexKey(k)
}

func (t *txn) indexKey(k string) {
	for i := 1; i < len(k); i++ {
		if k[i] == '/' {
			d := t.dirs[k[:i+1]]
			if d == nil {
				d = map[string]struct{}{}
				t.dirs[k[:i+1]] = d
			}
			d[k] = struct{}{}
		}
	}
}

func (t *txn) get(ctx context.Context, k string) ([]byte, bool, error) {
	if v, ok := t.writes[k]; ok {
		return v, v != nil, nil
	}
	v, err := t.ds.Get(ctx, dsKey(k))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

func (t *txn) put(k string, v []byte) {
	if v == nil {
		v = []byte{}
	}
	t.index(k)
	t.writes[k] = v
	if t.sc != nil {
		t.sc.invalidate(k)
	}
}

func (t *txn) del(k string) {
	t.index(k)
	t.writes[k] = nil
	if t.sc != nil {
		t.sc.invalidate(k)
	}
}

// putBlind writes a key that no get or list of this batch reads: the /l/
// and /t/ log indexes of newly applied entries.
func (t *txn) putBlind(k string, v []byte) {
	if v == nil {
		v = []byte{}
	}
	t.blind = append(t.blind, kv{k, v})
}

// kv is one key/value pair from a listing.
type kv struct {
	Key   string
	Value []byte
}

// list returns all pairs under prefix (which must end in "/"), in key order,
// merging uncommitted writes.
func (t *txn) list(ctx context.Context, prefix string) ([]kv, error) {
	m := map[string][]byte{}
	res, err := t.ds.Query(ctx, dsq.Query{Prefix: strings.TrimSuffix(prefix, "/")})
	if err != nil {
		return nil, err
	}
	for r := range res.Next() {
		if r.Error != nil {
			res.Close()
			return nil, r.Error
		}
		if strings.HasPrefix(r.Key, prefix) {
			m[r.Key] = r.Value
		}
	}
	res.Close()
	if t.dirs == nil {
		t.dirs = map[string]map[string]struct{}{}
		for k := range t.writes {
			t.indexKey(k)
		}
	}
	for k := range t.dirs[prefix] {
		if v := t.writes[k]; true {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
	}
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (t *txn) commit(ctx context.Context) error {
	if len(t.writes) == 0 && len(t.blind) == 0 {
		return nil
	}
	b, err := t.ds.Batch(ctx)
	if err != nil {
		return err
	}
	for _, w := range t.blind {
		if err := b.Put(ctx, dsKey(w.Key), w.Value); err != nil {
			return err
		}
	}
	for k, v := range t.writes {
		if v == nil {
			err = b.Delete(ctx, dsKey(k))
		} else {
			err = b.Put(ctx, dsKey(k), v)
		}
		if err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}

// dag gives cached access to entry metadata and answers causality questions.
// It is used only with Ledger.mu held.
type dag struct {
	t     *txn
	cache map[cid.Cid]*node
	anc   map[[2]cid.Cid]bool // (a, b) -> a is a strict ancestor of b
	sc    *stateCache         // decoded current state (state.go)
}

// newTxn starts a batch whose writes keep the state cache coherent. size is
// the number of entries expected in it (the write map is sized for them).
func (d *dag) newTxn(ds datastore.Batching, size int) *txn {
	return &txn{ds: ds, writes: make(map[string][]byte, size*writesPerEntry), blind: make([]kv, 0, 2*size), sc: d.sc}
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
	n := &node{clock: HLC{m.Wall, m.Counter}, typ: m.Type}
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
// descendant of it). Results are immutable facts and cached.
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

// difference returns the applied entries that are in the causal past of
// from (inclusive) but not in that of exclude (inclusive), newest first.
// CIDs in either set that are not applied are ignored. It walks both pasts
// in decreasing (clock, CID) order, painting nodes by the side that reached
// them, and stops as soon as only excluded nodes remain queued: everything
// below them is in exclude's past. Cost is proportional to the difference
// plus its boundary, not to the log. limit <= 0 means unlimited.
func (d *dag) difference(ctx context.Context, from, exclude []cid.Cid, limit int) ([]cid.Cid, error) {
	const mFrom, mEx = 1, 2
	marks := map[cid.Cid]uint8{}
	h := &walkHeap{}
	fromOnly := 0
	push := func(c cid.Cid, m uint8) error {
		old, seen := marks[c]
		if seen {
			nw := old | m
			if old == mFrom && nw != mFrom {
				fromOnly--
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
	for h.Len() > 0 && fromOnly > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		it := heap.Pop(h).(walkItem)
		m := marks[it.c]
		if m == mFrom {
			fromOnly--
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
	return out, nil
}

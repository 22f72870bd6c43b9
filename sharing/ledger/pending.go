package ledger

import "github.com/ipfs/go-cid"

// pending buffers entries whose parents are missing, and remembers recently
// rejected CIDs so their descendants are rejected rather than buffered.
// Part of a Core.
type pending struct {
	max      int
	entries  map[cid.Cid]*pendEntry
	waiters  map[cid.Cid][]cid.Cid // missing parent -> waiting children
	order    []cid.Cid             // arrival order, for eviction
	rej      map[cid.Cid]struct{}
	rejOrder []cid.Cid
}

type pendEntry struct {
	e       *Entry
	missing int
}

const maxRejectedMemory = 10000

func newPending(max int) *pending {
	return &pending{max: max, entries: map[cid.Cid]*pendEntry{}, waiters: map[cid.Cid][]cid.Cid{},
		rej: map[cid.Cid]struct{}{}}
}

func (p *pending) len() int { return len(p.entries) }

// add buffers e; it returns false if e was dropped because the buffer is
// full of entries that arrived earlier (a later sync fetches it again).
func (p *pending) add(e *Entry, missing []cid.Cid) bool {
	if _, ok := p.entries[e.cid]; ok {
		return true
	}
	for len(p.entries) >= p.max && len(p.order) > 0 {
		old := p.order[0]
		p.order = p.order[1:]
		delete(p.entries, old)
	}
	if len(p.entries) >= p.max {
		return false
	}
	p.entries[e.cid] = &pendEntry{e: e, missing: len(missing)}
	p.order = append(p.order, e.cid)
	for _, m := range missing {
		p.waiters[m] = append(p.waiters[m], e.cid)
	}
	if len(p.order) > 2*p.max {
		live := p.order[:0]
		for _, c := range p.order {
			if _, ok := p.entries[c]; ok {
				live = append(live, c)
			}
		}
		p.order = live
	}
	return true
}

// release returns the buffered entries that waited for c and now have no
// missing parent left (they are re-validated by the caller).
func (p *pending) release(c cid.Cid) []*Entry {
	ws, ok := p.waiters[c]
	if !ok {
		return nil
	}
	delete(p.waiters, c)
	var out []*Entry
	for _, w := range ws {
		pe, ok := p.entries[w]
		if !ok {
			continue
		}
		pe.missing--
		if pe.missing <= 0 {
			delete(p.entries, w)
			out = append(out, pe.e)
		}
	}
	return out
}

func (p *pending) markRejected(c cid.Cid) {
	if _, ok := p.rej[c]; ok {
		return
	}
	if len(p.rejOrder) >= maxRejectedMemory {
		delete(p.rej, p.rejOrder[0])
		p.rejOrder = p.rejOrder[1:]
	}
	p.rej[c] = struct{}{}
	p.rejOrder = append(p.rejOrder, c)
}

func (p *pending) rejected(c cid.Cid) bool {
	_, ok := p.rej[c]
	return ok
}

// buffered reports whether entry c is waiting in the buffer.
func (p *pending) buffered(c cid.Cid) bool {
	_, ok := p.entries[c]
	return ok
}

// missing returns the parents buffered entries wait for that are not
// buffered themselves.
func (p *pending) missing() []cid.Cid {
	var out []cid.Cid
	for c, ws := range p.waiters {
		if _, ok := p.entries[c]; ok {
			continue
		}
		for _, w := range ws {
			if _, ok := p.entries[w]; ok { // not evicted since
				out = append(out, c)
				break
			}
		}
	}
	return out
}

package console

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// ringSize is how many recent events a Feed keeps for pages that open (or
// reconnect) later and for `medmesh watch --recent`.
const ringSize = 256

// subBuffer is how far a subscriber may fall behind before the feed drops
// it (a browser then reconnects and catches up from the ring).
const subBuffer = 256

// Feed turns the entries the node's ledger applies into this node's
// events (api.Event): a record shared with it, revoked from it, or — for
// records it owns — read. It follows the ledger from Start to Close; the
// work per entry is a type check, and a state lookup only for the entries
// that name this node or a record of interest.
type Feed struct {
	self  peer.ID
	led   Ledger
	names *names
	log   *slog.Logger

	mu   sync.Mutex
	seq  uint64
	ring []api.Event
	subs map[*feedSub]struct{}
}

type feedSub struct {
	ch     chan api.Event
	closed bool
}

func newFeed(self peer.ID, led Ledger, names *names, log *slog.Logger) *Feed {
	return &Feed{self: self, led: led, names: names, log: log, subs: map[*feedSub]struct{}{}}
}

// run follows the ledger until ctx ends.
func (f *Feed) run(ctx context.Context) {
	ch, cancel := f.led.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			f.closeAll()
			return
		case e, ok := <-ch:
			if !ok {
				f.closeAll()
				return
			}
			if ev, ok := f.event(ctx, e); ok {
				f.publish(ev)
			}
		}
	}
}

// event is what an entry means to this node, if anything.
func (f *Feed) event(ctx context.Context, e *ledger.Entry) (api.Event, bool) {
	var ev api.Event
	var rec cid.Cid
	switch e.Type {
	case ledger.TypeGrant:
		g, ok := ledger.GrantOf(e)
		if !ok || g.Grantee != f.self {
			return ev, false
		}
		ev = api.Event{Type: api.EventShared, Time: g.Time, Grantee: f.self.String(), Purpose: g.Purpose, Expires: api.Nullable(g.Expires)}
		rec = g.Record
	case ledger.TypeRevoke:
		rv, ok := ledger.RevokeOf(e)
		if !ok || rv.Grantee != f.self {
			return ev, false
		}
		ev = api.Event{Type: api.EventRevoked, Time: time.UnixMilli(int64(e.Clock.Wall)).UTC(), Grantee: f.self.String()}
		rec = rv.Record
	case ledger.TypeAccess:
		a, ok := ledger.AccessOf(e)
		if !ok {
			return ev, false
		}
		ev = api.Event{Type: api.EventRead, Time: a.Time, Reader: a.Reader.String(), Purpose: a.Purpose, Count: a.Reads}
		rec = a.Record
	case ledger.TypeServed:
		s, ok := ledger.ServedOf(e)
		if !ok || s.Reads == 0 {
			return ev, false // blocks of a read already counted
		}
		ev = api.Event{Type: api.EventRead, Time: s.Last, Reader: s.Reader.String(), AttestedBy: []string{s.Server.String()}, Count: int(s.Reads)}
		rec = s.Record
	default:
		return ev, false
	}
	info, ok := f.led.Record(rec)
	if !ok {
		return ev, false
	}
	if ev.Type == api.EventRead && info.Owner != f.self {
		return ev, false // reads are the owner's business
	}
	// One event per change, not per version: a grant or revoke covers
	// every version of a record, one entry each, oldest first; the
	// newest version's entry stands for them all.
	if ev.Type != api.EventRead && !newest(f.led, info) {
		return ev, false
	}
	orgs := orgsOf(f.led)
	ev.ID, ev.Version, ev.Class = info.ID.String(), int(info.Version), info.Class
	ev.Owner, ev.OwnerOrg = info.Owner.String(), orgs[info.Owner]
	ev.Name = f.names.of(ctx, info)
	if ev.Grantee != "" {
		ev.GranteeOrg = orgs[f.self]
	}
	if ev.Reader != "" {
		ev.ReaderOrg = orgs[mustPeer(ev.Reader)]
	}
	if ev.AttestedBy == nil {
		ev.AttestedBy = []string{}
	}
	ev.Entry = e.CID().String()
	return ev, true
}

// newest reports whether info is the newest version of its record the
// ledger knows.
func newest(led Ledger, info ledger.RecordInfo) bool {
	for _, v := range led.Versions(info.ID) {
		if v.Version > info.Version {
			return false
		}
	}
	return true
}

func mustPeer(s string) peer.ID {
	p, _ := peer.Decode(s)
	return p
}

// orgsOf maps members to their organisations.
func orgsOf(led Ledger) map[peer.ID]string {
	out := map[peer.ID]string{}
	for _, m := range led.Members() {
		out[m.Peer] = m.Org
	}
	return out
}

func (f *Feed) publish(ev api.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	ev.Seq = f.seq
	if len(f.ring) == ringSize {
		copy(f.ring, f.ring[1:])
		f.ring = f.ring[:ringSize-1]
	}
	f.ring = append(f.ring, ev)
	for s := range f.subs {
		select {
		case s.ch <- ev:
		default: // too far behind: it reconnects and catches up from the ring
			delete(f.subs, s)
			close(s.ch)
			s.closed = true
		}
	}
}

// Recent returns the events kept, oldest first, with Seq > after.
func (f *Feed) Recent(after uint64) []api.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recentLocked(after)
}

func (f *Feed) recentLocked(after uint64) []api.Event {
	out := []api.Event{}
	for _, ev := range f.ring {
		if ev.Seq > after {
			out = append(out, ev)
		}
	}
	return out
}

// Subscribe returns the kept events after seq after (none if after is
// negative) and a channel of the events from then on, closed when the
// feed stops or the subscriber falls too far behind; cancel ends it.
func (f *Feed) Subscribe(after int64) (backlog []api.Event, ch <-chan api.Event, cancel func()) {
	s := &feedSub{ch: make(chan api.Event, subBuffer)}
	f.mu.Lock()
	if after >= 0 {
		backlog = f.recentLocked(uint64(after))
	}
	if f.subs == nil { // closed
		close(s.ch)
		s.closed = true
	} else {
		f.subs[s] = struct{}{}
	}
	f.mu.Unlock()
	return backlog, s.ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !s.closed {
			delete(f.subs, s)
			close(s.ch)
			s.closed = true
		}
	}
}

func (f *Feed) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		close(s.ch)
		s.closed = true
	}
	f.subs = nil
}

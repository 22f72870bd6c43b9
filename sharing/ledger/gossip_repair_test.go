package ledger

import (
	"context"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// loseGossip makes from's GossipSub forget to: it resets from's outbound
// GossipSub stream to `to` each time GossipSub opens a new one, until
// GossipSub stops reopening it (after MaxBackoffAttempts within ten
// minutes it gives the peer up while the connection stays: what the
// simulation's holder met, libp2p/go-libp2p-pubsub#433). to's GossipSub
// then lists from on no topic, and from sends it nothing.
func loseGossip(t testing.TB, from host.Host, to peer.ID) {
	t.Helper()
	outbound := func() []network.Stream {
		var out []network.Stream
		for _, c := range from.Network().ConnsToPeer(to) {
			for _, s := range c.GetStreams() {
				if strings.HasPrefix(string(s.Protocol()), "/meshsub/") && s.Stat().Direction == network.DirOutbound {
					out = append(out, s)
				}
			}
		}
		return out
	}
	for attempt := 0; attempt < 20; attempt++ {
		var ss []network.Stream
		// GossipSub's backoff waits up to about a second for the fourth
		// attempt: no stream within two means it gave up.
		deadline := time.Now().Add(2 * time.Second)
		for len(ss) == 0 && time.Now().Before(deadline) {
			ss = outbound()
			time.Sleep(20 * time.Millisecond)
		}
		if len(ss) == 0 {
			return // given up
		}
		for _, s := range ss {
			_ = s.Reset()
		}
	}
	t.Fatal("GossipSub kept reopening its stream")
}

// eventually polls cond until it holds, failing after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publish appends and publishes a record announcement of nd's.
func publish(t testing.TB, nd *meshNode, name string) {
	t.Helper()
	if _, err := nd.l.Append(context.Background(), TypeRecordAnnounce, recordPayload(t, nd.who, name)); err != nil {
		t.Fatal(err)
	}
}

func listed(ps []peer.ID, p peer.ID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// TestGossipRepair: two connected members, a and b; a's GossipSub gives b
// up (its stream to b failed too often; the connection stays), so neither
// lists the other on any topic and a sends b nothing. a's ledger notices
// it has no GossipSub stream to a connected member, and that it lists on
// no topic a member whose stream to it is open, and repairs both
// (net_gossip.go): the two list each other again and a's next entry
// reaches b by gossip alone (the sync loop is an hour apart here). With
// the repair off, as before it existed ("off"), they stay unlisted and the
// entry does not come.
func TestGossipRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	t.Run("on", func(t *testing.T) { gossipRepairCase(t, 11600, true) })
	t.Run("off", func(t *testing.T) { gossipRepairCase(t, 11610, false) })
}

func gossipRepairCase(t *testing.T, port int, repair bool) {
	w := newWorld(t, 2)
	_, nodes := startMeshOpts(t, w, 2, port, time.Minute, time.Hour, func(l *Ledger) { w.setup(t, l) }, func(int) []pubsub.Option {
		// As nodes publish (p2p.GossipSubOptions): an author sends its entry to
		// every peer on the topic, not only to its mesh, which GossipSub forms
		// at its first heartbeat.
		return []pubsub.Option{pubsub.WithFloodPublish(true)}
	}, func(i int, o *Options) {
		o.GossipRepairAfter = 3 * time.Second
		if !repair {
			o.GossipRepairAfter = -1
		}
	})
	a, b := nodes[0], nodes[1]
	bothListed := func() bool { return listed(b.l.GossipPeers(), a.h.ID()) && listed(a.l.GossipPeers(), b.h.ID()) }
	eventually(t, 20*time.Second, "each GossipSub to list the other", bothListed)
	publish(t, a, "before")
	eventually(t, 20*time.Second, "a's entry to reach b by gossip", func() bool {
		return equalCids(a.l.Heads(), b.l.Heads())
	})
	loseGossip(t, a.h, b.h.ID())
	if listed(b.l.GossipPeers(), a.h.ID()) || listed(a.l.GossipPeers(), b.h.ID()) {
		t.Fatal("a GossipSub still lists the other after a's gave b up")
	}
	if !repair {
		time.Sleep(10 * time.Second) // three times what the repair waits
		publish(t, a, "unrepaired")
		time.Sleep(2 * time.Second)
		if bothListed() || equalCids(a.l.Heads(), b.l.Heads()) {
			t.Fatal("GossipSub recovered by itself: the repair may no longer be needed (see net_gossip.go)")
		}
		return
	}
	eventually(t, 30*time.Second, "the GossipSubs to list each other again", bothListed)
	// a repaired (b, whose GossipSub kept its stream to a, has nothing to
	// repair, unless a loaded machine delayed a's streams past its wait).
	if got := a.l.GossipRepairs(); got < 1 {
		t.Fatalf("a reports %d gossip repairs, want at least 1", got)
	}
	t.Logf("repairs: a %d, b %d", a.l.GossipRepairs(), b.l.GossipRepairs())
	publish(t, a, "after the repair")
	eventually(t, 20*time.Second, "a's entry to reach b by gossip", func() bool {
		return equalCids(a.l.Heads(), b.l.Heads())
	})
}

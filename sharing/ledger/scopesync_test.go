package ledger

import (
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// TestScopeSyncWithoutGossip: six connected ledgers of a scoped network
// whose GossipSub never reaches another (each speaks a protocol of its
// own, as a node whose pubsub streams to its peers did not open: the
// simulation's holder that never saw its record, issue #16). The owner's
// entries still reach every follower of its scope, by the sync loop alone:
// a follower syncs each followed scope with a connected follower every
// tick, not only with the peers its GossipSub lists on the scope's topic
// (none here), which left it without the owner's later entries for good
// once it had caught up.
func TestScopeSyncWithoutGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	w := newWorld(t, 6, WithScopes())
	_, nodes := startMeshWith(t, w, 6, 11500, 3*time.Minute, 500*time.Millisecond, func(l *Ledger) {
		for i, m := range w.members {
			if i > 0 {
				as(t, l, w.admin, TypeMemberAdd, MemberAddPayload{Peer: m.id, Org: fmt.Sprintf("clinic %d", i)})
			}
		}
		for _, m := range w.members {
			as(t, l, m, TypeKeyAnnounce, KeyAnnouncePayload{Public: m.kem.Public()})
		}
	}, func(i int) []pubsub.Option {
		return []pubsub.Option{pubsub.WithGossipSubProtocols([]protocol.ID{protocol.ID(fmt.Sprintf("/medmesh-test/no-gossip/%d", i))}, pubsub.GossipSubDefaultFeatures)}
	})
	owner := nodes[1]
	scope := OwnerScope(owner.who.id)
	group := []*meshNode{owner}
	for _, nd := range nodes {
		if nd != owner && nd.l.Follows(scope) {
			group = append(group, nd)
		}
	}
	if len(group) < 3 {
		t.Fatalf("want at least two followers of %s besides its owner, have %d", scope, len(group)-1)
	}
	if sub, peers := group[1].l.ScopeTopic(scope); !sub || len(peers) != 0 {
		t.Fatalf("a follower's GossipSub should be subscribed to %s with no peer listed, not %v with %v", scope, sub, peers)
	}
	// Caught up on the scope first (its first syncs), then the owner
	// writes to it.
	as(t, owner.l, owner.who, TypeRecordAnnounce, recordPayload(t, owner.who, "first"))
	waitScope(t, scope, group, 30*time.Second)
	for i := range 5 {
		time.Sleep(600 * time.Millisecond) // a sync tick or more apart
		as(t, owner.l, owner.who, TypeRecordAnnounce, recordPayload(t, owner.who, fmt.Sprintf("later %d", i)))
	}
	waitScope(t, scope, group, 30*time.Second)
}

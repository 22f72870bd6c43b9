package ledger

import (
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestHolders: the owner and the members whose latest receipt is "held",
// sorted; a release or decline takes a member out.
func TestHolders(t *testing.T) {
	w := newWorld(t, 4)
	l := openNode(t, w.admin, w.genesis)
	w.setup(t, l)
	owner := w.members[1]
	rec := recordPayload(t, owner, "b").Record
	info, _ := l.Record(rec)
	a, b, c := w.members[0], w.members[2], w.members[3]
	as(t, l, a, TypeReceipt, ReceiptPayload{Record: rec, Status: "held"})
	as(t, l, b, TypeReceipt, ReceiptPayload{Record: rec, Status: "held"})
	as(t, l, b, TypeReceipt, ReceiptPayload{Record: rec, Status: "released", Reason: "surplus"})
	as(t, l, c, TypeReceipt, ReceiptPayload{Record: rec, Status: "declined", Reason: "disk full"})
	want := []peer.ID{owner.id, a.id}
	slices.Sort(want)
	if got := l.Holders(info); !slices.Equal(got, want) {
		t.Fatalf("holders %v, want %v", got, want)
	}
}

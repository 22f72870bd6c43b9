package ledger

import (
	"sort"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// Holders are where a record's blocks are: its owner and the peers whose
// latest receipt for it is "held", sorted. (Who may hold it is
// HoldAuthority; who does is this.)
func (l *Ledger) Holders(info RecordInfo) []peer.ID {
	set := map[peer.ID]bool{info.Owner: true}
	for _, rc := range l.Receipts(info.ID) {
		if rc.Status == replication.StatusHeld {
			set[rc.Holder] = true
		}
	}
	out := make([]peer.ID, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

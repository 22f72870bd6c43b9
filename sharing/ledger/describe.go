package ledger

import (
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Describe returns the clear-text fields of an entry's payload that say
// who is in the network and what it announces (membership, organisations,
// record announcements) in the CLI's JSON vocabulary, for `ledger log`. It
// returns nil for other types and for a payload it cannot decode.
func Describe(e *Entry) map[string]any {
	var pl any
	switch e.Type {
	case TypeGenesis:
		pl = new(genesisWire)
	case TypeMemberAdd:
		pl = new(memberAddWire)
	case TypeMemberRemove:
		pl = new(memberRemoveWire)
	case TypeMemberOrg:
		pl = new(memberOrgWire)
	case TypeRecordAnnounce:
		pl = new(recordWire)
	default:
		return nil
	}
	if canonicalUnmarshal(e.Payload, pl) != nil {
		return nil
	}
	str := func(b []byte) string {
		if p, err := peer.IDFromBytes(b); err == nil {
			return p.String()
		}
		return ""
	}
	switch w := pl.(type) {
	case *genesisWire:
		out := map[string]any{"name": w.Name, "admin": str(w.Admin)}
		if w.Types != nil {
			out["types"] = w.Types
		}
		return out
	case *memberAddWire:
		roles := w.Roles
		if roles == nil {
			roles = []string{}
		}
		return map[string]any{"peer": str(w.Peer), "org": w.Org, "roles": roles}
	case *memberRemoveWire:
		return map[string]any{"peer": str(w.Peer)}
	case *memberOrgWire:
		return map[string]any{"peer": str(w.Peer), "org": w.Org}
	case *recordWire:
		out := map[string]any{"class": w.Class, "version": w.Version, "size": w.Size, "replicas": w.Replicas}
		if c, err := cid.Cast(w.Record); err == nil {
			out["id"] = c.String()
		}
		if c, err := cid.Cast(w.Prev); err == nil && len(w.Prev) > 0 {
			out["prev"] = c.String()
		}
		return out
	}
	return nil
}

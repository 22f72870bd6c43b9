// Package access is medmesh's access policy: who may receive a record's
// blocks now, and under which grant. It is a pure function of ledger state
// and time — no network, no storage, no clock of its own — so every node
// that holds a record's blocks serves them by the same rule, and the rule is
// tested with tables (access_test.go).
//
// A peer may receive a record's blocks when it is
//
//   - the record's owner;
//   - a member that may hold the record (replication.Authority: within the
//     placement window, or named by the owner, and never a grantee), so
//     replicas can be placed and repaired; or
//   - a grantee with a live grant: not revoked, not past its expiry plus
//     ledger.ClockSkew.
//
// Nobody else, whatever it has signed: a "held" receipt the ledger rejected
// is not in the state, and a revoked grantee is neither a grantee nor (having
// had a grant) a member that may hold the record.
//
// Each read a grantee makes is served by the owner or a holder, which
// attests it on the ledger (ledger.ServedPayload) naming the grant Decide
// chose; the audit takes the read's purpose from that grant, so a read
// under an emergency grant is flagged whatever purpose the reader states.
package access

import (
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/replication"
)

// State is the ledger state the policy reads; *ledger.Ledger implements it.
type State interface {
	// Record returns an announced record.
	Record(id cid.Cid) (ledger.RecordInfo, bool)
	// Grants returns the record's current (not revoked) grants to members.
	Grants(id cid.Cid) []ledger.Grant
	// HoldAuthority says who may hold the record.
	HoldAuthority(info ledger.RecordInfo) replication.Authority
}

// Role is why a peer may receive a record's blocks.
type Role int

// Roles, from none to the strongest.
const (
	None Role = iota
	// Grantee: a live grant (Decision.Grant) allows it to read the record.
	Grantee
	// Holder: placement may ask it to hold the record's ciphertext.
	Holder
	// Owner: it announced the record.
	Owner
)

func (r Role) String() string {
	return [...]string{"none", "grantee", "holder", "owner"}[r]
}

// Decision is the policy's answer for one peer.
type Decision struct {
	Role Role
	// Grant is the grant a grantee reads under: among its live grants, an
	// emergency one first (so such reads are flagged for review), then the
	// one that lasts longest.
	Grant *ledger.Grant
}

// Allowed reports whether the peer may receive the record's blocks.
func (d Decision) Allowed() bool { return d.Role != None }

// Record is the policy of one record at one moment: computed once from the
// state and asked per peer.
type Record struct {
	Info    ledger.RecordInfo
	holders map[peer.ID]bool
	grants  map[peer.ID]ledger.Grant
	// Until is when the policy may change without a ledger entry (the
	// first live grant's expiry plus skew); zero if never.
	Until time.Time
}

// Evaluate computes the policy of record id at now. ok is false for a
// record the state does not know: nothing may receive its blocks.
func Evaluate(st State, id cid.Cid, now time.Time) (rp Record, ok bool) {
	info, ok := st.Record(id)
	if !ok {
		return Record{}, false
	}
	rp = Record{Info: info, holders: map[peer.ID]bool{}, grants: map[peer.ID]ledger.Grant{}}
	for _, p := range st.HoldAuthority(info).Eligible() {
		rp.holders[p] = true
	}
	for _, g := range st.Grants(id) {
		if !g.LiveAt(now) {
			continue
		}
		if !g.Expires.IsZero() {
			if end := g.Expires.Add(ledger.ClockSkew); rp.Until.IsZero() || end.Before(rp.Until) {
				rp.Until = end
			}
		}
		if cur, ok := rp.grants[g.Grantee]; !ok || better(g, cur) {
			rp.grants[g.Grantee] = g
		}
	}
	return rp, true
}

// better reports whether grant a is preferred over b for the same grantee.
func better(a, b ledger.Grant) bool {
	ae, be := a.Purpose == ledger.PurposeEmergency, b.Purpose == ledger.PurposeEmergency
	if ae != be {
		return ae
	}
	switch {
	case a.Expires.IsZero() != b.Expires.IsZero():
		return a.Expires.IsZero()
	case !a.Expires.Equal(b.Expires):
		return a.Expires.After(b.Expires)
	}
	return a.Entry.KeyString() < b.Entry.KeyString()
}

// Decide answers for peer p.
func (r Record) Decide(p peer.ID) Decision {
	switch {
	case p == r.Info.Owner:
		return Decision{Role: Owner}
	case r.holders[p]:
		return Decision{Role: Holder}
	}
	if g, ok := r.grants[p]; ok {
		return Decision{Role: Grantee, Grant: &g}
	}
	return Decision{}
}

// Stale reports whether the policy must be evaluated again at now.
func (r Record) Stale(now time.Time) bool {
	return !r.Until.IsZero() && !now.Before(r.Until)
}

// ReadGrants lists the live grants of record id to reader at now, the one
// Decide would choose for its blocks first: the order in which a reader
// tries to open their envelopes, so its claim names the grant holders
// attest.
func ReadGrants(st State, id cid.Cid, reader peer.ID, now time.Time) []ledger.Grant {
	var out []ledger.Grant
	for _, g := range st.Grants(id) {
		if g.Grantee == reader && g.LiveAt(now) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b ledger.Grant) int {
		switch {
		case better(a, b):
			return -1
		case better(b, a):
			return 1
		}
		return 0
	})
	return out
}

package access

import (
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/replication"
)

// state is an in-memory State: one record, its current grants and the
// grantees it ever had.
type state struct {
	info    ledger.RecordInfo
	members []peer.ID
	grants  []ledger.Grant
	granted []peer.ID // current and former grantees
	named   []peer.ID
	rcs     []replication.Receipt
}

func (s *state) Record(id cid.Cid) (ledger.RecordInfo, bool) {
	return s.info, id == s.info.ID
}

func (s *state) Grants(id cid.Cid) []ledger.Grant { return s.grants }

func (s *state) HoldAuthority(info ledger.RecordInfo) replication.Authority {
	a := replication.Authority{Record: info.ID, Owner: info.Owner, Wanted: int(info.Replicas), Granted: s.granted, Named: s.named, Receipts: s.rcs}
	for _, p := range s.members {
		a.Members = append(a.Members, replication.Member{Peer: p})
	}
	return a
}

func peers(n int) []peer.ID {
	var out []peer.ID
	for i := 0; i < n; i++ {
		b, _ := mh.Sum([]byte(fmt.Sprintf("peer %d", i)), mh.IDENTITY, -1)
		out = append(out, peer.ID(b))
	}
	return out
}

func cidOf(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ps := peers(10)
	rec := cidOf("record")
	owner := ps[0]
	// Rank the others: with two replicas the window is two members wide.
	var ms []replication.Member
	for _, p := range ps {
		ms = append(ms, replication.Member{Peer: p})
	}
	order := replication.Order(rec, owner, ms, nil)
	first, second, third, fourth, fifth, sixth, seventh, eighth := order[1], order[2], order[3], order[4], order[5], order[6], order[7], order[8]
	grant := func(to peer.ID, purpose string, exp time.Time, tag string) ledger.Grant {
		return ledger.Grant{Record: rec, Grantee: to, Grantor: owner, Purpose: purpose, Expires: exp, Entry: cidOf(tag), Time: now.Add(-time.Hour)}
	}
	live := grant(third, ledger.PurposeTreatment, time.Time{}, "live")
	skewed := grant(fourth, ledger.PurposeTreatment, now.Add(-time.Minute), "within skew")
	expired := grant(fifth, ledger.PurposeResearch, now.Add(-time.Hour), "expired")
	treat := grant(sixth, ledger.PurposeTreatment, time.Time{}, "treatment")
	emerg := grant(sixth, ledger.PurposeEmergency, now.Add(time.Hour), "emergency")
	st := &state{
		info:    ledger.RecordInfo{ID: rec, Owner: owner, Replicas: 2},
		members: ps,
		grants:  []ledger.Grant{live, skewed, expired, treat, emerg},
		// second was revoked: it is no longer in Grants, but it had a grant.
		granted: []peer.ID{second, third, fourth, fifth, sixth},
	}
	rp, ok := Evaluate(st, rec, now)
	if !ok {
		t.Fatal("record unknown")
	}
	outsider := peers(11)[10]
	for _, c := range []struct {
		name  string
		p     peer.ID
		role  Role
		grant *ledger.Grant
	}{
		{"owner", owner, Owner, nil},
		// The window's two members are the first two after the owner
		// that never had a grant: second (revoked) and the grantees are
		// left out of the ranking.
		{"first in the window", first, Holder, nil},
		{"second in the window", seventh, Holder, nil},
		{"revoked grantee: neither grantee nor holder", second, None, nil},
		{"live grantee", third, Grantee, &live},
		{"expired within the clock-skew margin", fourth, Grantee, &skewed},
		{"expired grantee", fifth, None, nil},
		{"emergency grant preferred over treatment", sixth, Grantee, &emerg},
		{"member outside the window", eighth, None, nil},
		{"non-member", outsider, None, nil},
	} {
		d := rp.Decide(c.p)
		if d.Role != c.role || (c.grant == nil) != (d.Grant == nil) || (c.grant != nil && d.Grant.Entry != c.grant.Entry) {
			t.Errorf("%s: got %v %+v, want %v %+v", c.name, d.Role, d.Grant, c.role, c.grant)
		}
		if d.Allowed() != (c.role != None) {
			t.Errorf("%s: Allowed() = %v", c.name, d.Allowed())
		}
	}
	// The earliest expiry among live grants bounds the decision.
	if want := skewed.Expires.Add(ledger.ClockSkew); !rp.Until.Equal(want) {
		t.Fatalf("Until = %v, want %v", rp.Until, want)
	}
	if rp.Stale(now) || !rp.Stale(rp.Until) {
		t.Fatal("Stale wrong")
	}
	if later, _ := Evaluate(st, rec, rp.Until); later.Decide(fourth).Allowed() {
		t.Fatal("grant still honoured after expiry plus skew")
	}
	// Unknown record: nobody.
	if _, ok := Evaluate(st, cidOf("other"), now); ok {
		t.Fatal("unknown record evaluated")
	}
	// A named member outside the window may hold; a named grantee may not.
	st.named = []peer.ID{eighth, third}
	rp, _ = Evaluate(st, rec, now)
	if rp.Decide(eighth).Role != Holder || rp.Decide(third).Role != Grantee {
		t.Fatalf("named: %v %v", rp.Decide(eighth).Role, rp.Decide(third).Role)
	}
	// The reader tries its grants in the order Decide prefers them.
	gs := ReadGrants(st, rec, sixth, now)
	if len(gs) != 2 || gs[0].Entry != emerg.Entry || gs[1].Entry != treat.Entry {
		t.Fatalf("ReadGrants: %+v", gs)
	}
}

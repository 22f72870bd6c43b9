package replication

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

func testPeers(t testing.TB, n int) []peer.ID {
	t.Helper()
	var out []peer.ID
	for i := 0; i < n; i++ {
		b, _ := mh.Sum([]byte(fmt.Sprintf("peer-%d", i)), mh.IDENTITY, -1)
		out = append(out, peer.ID(b))
	}
	return out
}

func testRecord(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

func members(ps []peer.ID, orgs ...string) []Member {
	out := make([]Member, len(ps))
	for i, p := range ps {
		out[i] = Member{Peer: p}
		if i < len(orgs) {
			out[i].Org = orgs[i]
		}
	}
	return out
}

func TestOrderDeterministicAndOwnerFirst(t *testing.T) {
	ps := testPeers(t, 8)
	rec := testRecord("r1")
	a := Order(rec, ps[3], members(ps), nil)
	// Same inputs in another order give the same ranking.
	rev := members(ps)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	b := Order(rec, ps[3], rev, nil)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("order depends on member order:\n%v\n%v", a, b)
	}
	if a[0] != ps[3] || len(a) != 8 {
		t.Fatalf("owner not first or members lost: %v", a)
	}
	// Different records spread differently (HRW): over many records every
	// member of the owner's replica group is ranked second at least once,
	// and the group comes before every other member.
	group := Group(ps[0], members(ps))
	if len(group) != GroupSize {
		t.Fatalf("group %v, want %d members", group, GroupSize)
	}
	second := map[peer.ID]int{}
	for i := 0; i < 400; i++ {
		o := Order(testRecord(fmt.Sprint(i)), ps[0], members(ps), nil)
		second[o[1]]++
		for j, p := range o[1:] {
			if (j < GroupSize) != Has(group, p) {
				t.Fatalf("record %d: %v at %d, group %v", i, p, j+1, group)
			}
		}
	}
	if len(second) != GroupSize {
		t.Fatalf("second place not spread over the %d group members: %v", GroupSize, second)
	}
	// Groups differ by owner: over the owners, every peer is in some group.
	in := map[peer.ID]bool{}
	for _, o := range ps {
		for _, p := range Group(o, members(ps)) {
			in[p] = true
		}
	}
	if len(in) != len(ps) {
		t.Fatalf("groups cover %d of %d peers", len(in), len(ps))
	}
	// Excluding a peer removes only it: the rest keep their relative order.
	c := Order(rec, ps[3], members(ps), map[peer.ID]bool{a[2]: true})
	want := append(append([]peer.ID{}, a[:2]...), a[3:]...)
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("exclusion reshuffled the order:\n%v\n%v", c, want)
	}
}

func TestOrderPrefersOtherOrgs(t *testing.T) {
	ps := testPeers(t, 6)
	// Owner in org x; peers 1,2 also x; 3,4 in y; 5 in z.
	ms := members(ps, "x", "x", "x", "y", "y", "z")
	for i := 0; i < 50; i++ {
		o := Order(testRecord(fmt.Sprint(i)), ps[0], ms, nil)
		orgs := map[string]bool{}
		for _, p := range o[:3] {
			for _, m := range ms {
				if m.Peer == p {
					orgs[m.Org] = true
				}
			}
		}
		if len(orgs) != 3 {
			t.Fatalf("record %d: first three %v are not in three orgs", i, o[:3])
		}
	}
}

func TestDecide(t *testing.T) {
	ps := testPeers(t, 6)
	rec := testRecord("r")
	owner := ps[0]
	ms := members(ps)
	order := Order(rec, owner, ms, nil)
	all := func(peer.ID) bool { return true }

	// Fresh record: owner + the next two.
	p := Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Alive: all})
	if fmt.Sprint(p.Targets) != fmt.Sprint(order[:3]) || len(p.Surplus) != 0 {
		t.Fatalf("fresh: %v", p.Targets)
	}
	// A declined candidate is skipped: the next one is chosen.
	rcs := []Receipt{{Holder: order[1], Status: StatusDeclined, Reason: "quota"}, {Holder: order[2], Status: StatusHeld}}
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: all})
	if fmt.Sprint(p.Targets) != fmt.Sprint([]peer.ID{order[0], order[2], order[3]}) {
		t.Fatalf("declined not skipped: %v (order %v)", p.Targets, order)
	}
	// Holders 1 and 2 held; 2 dies: the next alive non-holder repairs.
	rcs = []Receipt{{Holder: order[1], Status: StatusHeld}, {Holder: order[2], Status: StatusHeld}}
	dead := func(q peer.ID) bool { return q != order[2] }
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: dead})
	if fmt.Sprint(p.Targets) != fmt.Sprint([]peer.ID{order[0], order[1], order[3]}) || len(p.Live) != 2 {
		t.Fatalf("repair: %+v", p)
	}
	// It comes back after order[3] took over: four live, the lowest-ranked
	// (order[3]) is surplus; the owner never is.
	rcs = append(rcs, Receipt{Holder: order[3], Status: StatusHeld})
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: all})
	if fmt.Sprint(p.Surplus) != fmt.Sprint([]peer.ID{order[3]}) {
		t.Fatalf("surplus: %+v", p)
	}
	// Owner down, wanted 2: the owner is not live, two others hold.
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 2, Members: ms, Receipts: rcs, Alive: func(q peer.ID) bool { return q != owner }})
	if replicaHas(p.Targets, owner) || len(p.Targets) != 2 || len(p.Surplus) != 1 {
		t.Fatalf("owner down: %+v", p)
	}
	// A holder that lost its blocks is ineligible; a plain release is not.
	lost := Receipt{Holder: order[1], Status: StatusReleased, Reason: ReasonLost + " 1 block"}
	if !lost.Ineligible() || (Receipt{Status: StatusReleased, Reason: "surplus"}).Ineligible() {
		t.Fatal("eligibility of released receipts")
	}
	// Not enough members: every alive one is a target, no panic.
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 10, Members: ms[:2], Alive: all})
	if len(p.Targets) != 2 {
		t.Fatalf("small network: %+v", p)
	}
}

func replicaHas(ps []peer.ID, p peer.ID) bool { return Has(ps, p) }

func TestLivenessGrace(t *testing.T) {
	ps := testPeers(t, 2)
	rec := testRecord("x")
	t0 := time.Unix(1000, 0)
	l := NewLiveness(10*time.Second, t0)
	if !l.Up(ps[0], t0.Add(9*time.Second)) || l.Up(ps[0], t0.Add(11*time.Second)) {
		t.Fatal("unseen peer should be up for the grace period after start only")
	}
	l.Seen(ps[0], t0.Add(20*time.Second))
	if !l.Alive(rec, ps[0], t0.Add(25*time.Second)) {
		t.Fatal("seen peer not alive")
	}
	l.Verified(rec, ps[0], false, t0.Add(21*time.Second))
	l.Seen(ps[0], t0.Add(40*time.Second))
	if !l.Alive(rec, ps[0], t0.Add(30*time.Second)) || l.Alive(rec, ps[0], t0.Add(40*time.Second)) {
		t.Fatal("failing holder: alive within grace, dead after")
	}
	l.Verified(rec, ps[0], true, t0.Add(41*time.Second))
	if !l.Alive(rec, ps[0], t0.Add(42*time.Second)) || l.LastVerified(rec, ps).IsZero() {
		t.Fatal("a passed check clears the failure")
	}
}

// TestChallenge runs the protocol between two real libp2p hosts: an honest
// prover, one missing a block, one answering garbage, and raw garbage sent
// to the prover (which must not panic).
func TestChallenge(t *testing.T) {
	ctx := context.Background()
	h1, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	h2, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if err := h1.Connect(ctx, peer.AddrInfo{ID: h2.ID(), Addrs: h2.Addrs()}); err != nil {
		t.Fatal(err)
	}
	rec := testRecord("rec")
	var bs []blocks.Block
	store := map[cid.Cid][]byte{}
	for i := 0; i < 4; i++ {
		d := make([]byte, 1000)
		rand.Read(d)
		b := blocks.NewBlock(d)
		bs = append(bs, b)
		store[b.Cid()] = d
	}
	mode := "honest"
	h2.SetStreamHandler(ChallengeProtocol, func(s network.Stream) {
		Serve(ctx, s, func(_ context.Context, r, c cid.Cid) ([]byte, error) {
			if r != rec {
				return nil, ErrNotHeld
			}
			d, ok := store[c]
			switch {
			case !ok:
				return nil, ErrNotHeld
			case mode == "missing" && c == bs[2].Cid():
				return nil, ErrMissing
			case mode == "liar":
				return []byte("not the block"), nil
			}
			return d, nil
		}, 5*time.Second)
	})
	for _, tc := range []struct {
		mode string
		ok   bool
	}{{"honest", true}, {"missing", false}, {"liar", false}} {
		mode = tc.mode
		res, err := Challenge(ctx, h1, h2.ID(), rec, bs)
		if err != nil || res.OK() != tc.ok {
			t.Fatalf("%s: %+v %v", tc.mode, res, err)
		}
		if tc.mode == "missing" && res.Missing != 1 {
			t.Fatalf("missing count: %+v", res)
		}
	}
	mode = "honest"
	res, err := Challenge(ctx, h1, h2.ID(), testRecord("other"), bs)
	if err != nil || !res.Refused || res.OK() {
		t.Fatalf("record not held: %+v %v", res, err)
	}
	// Garbage on the wire: the prover resets, nothing panics, and it still
	// answers the next honest challenge.
	for _, junk := range [][]byte{{0xff, 0x00, 0x13}, make([]byte, 10000), {0xa1, 0x01, 0x40}} {
		s, err := h1.NewStream(ctx, h2.ID(), ChallengeProtocol)
		if err != nil {
			t.Fatal(err)
		}
		s.Write(junk)
		s.CloseWrite()
		buf := make([]byte, 10)
		s.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _ := s.Read(buf); n > 0 {
			t.Fatalf("prover answered garbage with %x", buf[:n])
		}
		s.Close()
	}
	if res, err := Challenge(ctx, h1, h2.ID(), rec, bs); err != nil || !res.OK() {
		t.Fatalf("after garbage: %+v %v", res, err)
	}
}

// A decline is withdrawn only when the record is short of replicas that
// no eligible member can supply, by the declined members in the order
// they would have without their declines; the window widens with extra.
// A withdrawn decline ("held") is a holder like any other.
func TestDecideWithdrawDecline(t *testing.T) {
	ps := testPeers(t, 5)
	rec := testRecord("withdraw")
	owner := ps[0]
	ms := members(ps)
	order := Order(rec, owner, ms, nil)
	all := func(peer.ID) bool { return true }

	// order[1] and order[3] declined, order[2] and order[4] hold: three
	// live holders, nobody is short, no decline is asked again.
	rcs := []Receipt{
		{Holder: order[1], Status: StatusDeclined, Reason: "quota"},
		{Holder: order[2], Status: StatusHeld},
		{Holder: order[3], Status: StatusDeclined, Reason: "disk full"},
		{Holder: order[4], Status: StatusHeld},
	}
	p := Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: all})
	if p.Shortfall != 0 || len(p.Declined) != 0 || p.Withdraws(order[1], 5) {
		t.Fatalf("fully replicated: %+v", p)
	}
	// order[4] dies: no eligible non-holder is left, one replica short.
	// The declined are ranked as without their declines; only the first
	// is asked, and the second once the window widens.
	dead4 := func(q peer.ID) bool { return q != order[4] }
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: dead4})
	if p.Shortfall != 1 || fmt.Sprint(p.Declined) != fmt.Sprint([]peer.ID{order[1], order[3]}) {
		t.Fatalf("short: %+v (order %v)", p, order)
	}
	if !p.Withdraws(order[1], 0) || p.Withdraws(order[3], 0) || !p.Withdraws(order[3], 1) || p.Withdraws(order[2], 9) {
		t.Fatalf("withdraw window: %+v", p)
	}
	// A dead declined member is not asked: the next one is.
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: func(q peer.ID) bool { return q != order[4] && q != order[1] }})
	if !p.Withdraws(order[3], 0) {
		t.Fatalf("dead declined member still first: %+v", p)
	}
	// An eligible alive non-holder can repair: no decline is asked again.
	rcs5 := append([]Receipt{}, rcs[:3]...)
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs5, Alive: all})
	if p.Shortfall != 0 || len(p.Declined) != 0 || !replicaHas(p.Targets, order[4]) {
		t.Fatalf("eligible repairer: %+v", p)
	}
	// order[1] withdrew ("held"): it is a live holder again, at its HRW
	// rank; when order[4] returns, the lowest-ranked holder is surplus.
	rcs[0] = Receipt{Holder: order[1], Status: StatusHeld}
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: dead4})
	if p.Shortfall != 0 || fmt.Sprint(p.Targets) != fmt.Sprint(order[:3]) || len(p.Surplus) != 0 {
		t.Fatalf("after withdrawal: %+v", p)
	}
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: all})
	if fmt.Sprint(p.Surplus) != fmt.Sprint([]peer.ID{order[4]}) || p.Shortfall != 0 || len(p.Declined) != 0 {
		t.Fatalf("surplus after withdrawal: %+v", p)
	}
	// A member that lost its blocks stays out even when short.
	rcs[0] = Receipt{Holder: order[1], Status: StatusReleased, Reason: ReasonLost + " 1 block"}
	p = Decide(Input{Record: rec, Owner: owner, Wanted: 3, Members: ms, Receipts: rcs, Alive: dead4})
	if replicaHas(p.Declined, order[1]) || replicaHas(p.Targets, order[1]) {
		t.Fatalf("lost member asked again: %+v", p)
	}
}

// InGroup answers as Has(Group(...)) does, for every member, across
// memberships with org-less members, shared orgs (the owner's among them),
// a single org and duplicated entries.
func TestInGroupMatchesGroup(t *testing.T) {
	ps := testPeers(t, 40)
	for trial := 0; trial < 300; trial++ {
		n := 1 + trial%len(ps)
		ms := make([]Member, 0, n+2)
		for i := 0; i < n; i++ {
			m := Member{Peer: ps[(trial*7+i)%len(ps)]}
			switch (trial + i) % 4 {
			case 0: // org-less
			case 1:
				m.Org = fmt.Sprintf("org %d", i%3)
			case 2:
				m.Org = fmt.Sprintf("org %d", (i*trial)%7)
			case 3:
				m.Org = "same"
			}
			ms = append(ms, m)
		}
		if trial%5 == 0 && n > 2 { // a peer listed twice: its first entry counts
			ms = append(ms, Member{Peer: ms[1].Peer, Org: "duplicate"})
		}
		owner := ms[trial%len(ms)].Peer
		g := Group(owner, ms)
		for _, m := range append(ms, Member{Peer: ps[(trial+n)%len(ps)]}) {
			if got, want := InGroup(owner, m.Peer, ms), Has(g, m.Peer); got != want {
				t.Fatalf("trial %d: InGroup(%s) = %v, Group %v says %v (members %+v)", trial, m.Peer, got, g, want, ms)
			}
		}
		q := ms[(trial*3)%len(ms)].Peer
		var want []peer.ID
		for _, o := range dedupe(ms) {
			if Has(Group(o.Peer, ms), q) {
				want = append(want, o.Peer)
			}
		}
		if got := GroupsWith(q, ms); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("trial %d: GroupsWith(%s) = %v, want %v", trial, q, got, want)
		}
	}
}

// BenchmarkInGroup: what a node spends, per owner, deciding at a change of
// membership whether it follows the owner's scopes (200 clinics).
func BenchmarkInGroup(b *testing.B) {
	ps := testPeers(b, 200)
	ms := make([]Member, len(ps))
	for i, p := range ps {
		ms[i] = Member{Peer: p, Org: fmt.Sprintf("org %d", i)}
	}
	b.Run("Group", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Has(Group(ps[i%200], ms), ps[7])
		}
	})
	b.Run("InGroup", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			InGroup(ps[i%200], ps[7], ms)
		}
	})
	b.Run("GroupsWith/per-owner", func(b *testing.B) {
		for i := 0; i < b.N; i += len(ms) {
			GroupsWith(ps[7], ms)
		}
	})
}

// BenchmarkGroupsWith is what one node computes at each change of
// membership (the owner scopes it follows): a SHA-256 per pair of members.
// Peer IDs have the length of real Ed25519 ones (38 bytes).
func BenchmarkGroupsWith(b *testing.B) {
	for _, n := range []int{50, 200, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ms := randomMembers(n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				GroupsWith(ms[i%n].Peer, ms)
			}
		})
	}
}

// randomMembers returns n members with random peer IDs of the length of
// real Ed25519 ones (38 bytes), each of its own organisation.
func randomMembers(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		key := make([]byte, 36)
		rand.Read(key)
		id, _ := mh.Sum(key, mh.IDENTITY, -1)
		ms[i] = Member{Peer: peer.ID(id), Org: fmt.Sprintf("clinic %d", i)}
	}
	return ms
}

package replication

import (
	"bytes"
	"crypto/sha256"
	"sort"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Receipt statuses (the ledger's replica.receipt).
const (
	StatusHeld     = "held"
	StatusDeclined = "declined"
	StatusReleased = "released"
)

// ReasonLost prefixes the reason of a "released" receipt published by a
// holder that found it lost blocks it should hold; such a holder is not
// chosen again for the record.
const ReasonLost = "lost:"

// Member is a network member as placement sees it.
type Member struct {
	Peer peer.ID
	Org  string
}

// Receipt is a holder's latest receipt for a record.
type Receipt struct {
	Holder peer.ID
	Status string
	Reason string
}

// Ineligible reports whether a receipt excludes its author from placement.
func (r Receipt) Ineligible() bool {
	return r.Status == StatusDeclined || (r.Status == StatusReleased && strings.HasPrefix(r.Reason, ReasonLost))
}

// Score is the HRW score of peer p for record rec.
func Score(rec cid.Cid, p peer.ID) [32]byte {
	h := sha256.New()
	h.Write(rec.Bytes())
	h.Write([]byte(p))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// GroupSize is how many members besides the owner form an owner's replica
// group: the window of a record that wants three replicas (the default), so
// each node is in the groups of about GroupSize owners, not of all of them.
const GroupSize = 4

// groupScore is the HRW score of peer p for owner's replica group.
func groupScore(owner, p peer.ID) [32]byte {
	var buf [128]byte // the domain and two peer IDs: no allocation
	b := append(append(append(buf[:0], groupDomain...), owner...), p...)
	return sha256.Sum256(b)
}

const groupDomain = "medmesh replica group\n"

// Group returns owner's replica group: the GroupSize members other than the
// owner ranked first by HRW score SHA-256(domain || owner || peer), org-
// diverse first as in Order. Placement ranks a record's candidates within
// its owner's group before any other member (Order), so a record's window
// lies in the group unless grants or declines exclude group members; the
// members of the group follow the owner's ledger scopes (sharing/ledger,
// "Scopes"). It depends only on the membership.
func Group(owner peer.ID, members []Member) []peer.ID {
	ranked := rank(owner, members, nil, func(p peer.ID) [32]byte { return groupScore(owner, p) })
	return ranked[1:min(len(ranked), GroupSize+1)]
}

// InGroup reports whether q is in owner's replica group: Has(Group(owner,
// members), q), without ranking the members (see groupCheck).
func InGroup(owner, q peer.ID, members []Member) bool {
	var g groupCheck
	return g.in(owner, q, dedupe(members))
}

// GroupsWith returns the members whose replica group q is in: the owners
// whose ledger scopes q follows. A node asks it at each change of
// membership; it costs a SHA-256 per pair of members and no sort.
func GroupsWith(q peer.ID, members []Member) []peer.ID {
	ms := dedupe(members)
	var g groupCheck
	var out []peer.ID
	for _, m := range ms {
		if g.in(m.Peer, q, ms) {
			out = append(out, m.Peer)
		}
	}
	return out
}

// dedupe keeps each peer's first entry, as rank does.
func dedupe(members []Member) []Member {
	seen := make(map[peer.ID]bool, len(members))
	out := make([]Member, 0, len(members))
	for _, m := range members {
		if !seen[m.Peer] {
			seen[m.Peer] = true
			out = append(out, m)
		}
	}
	return out
}

// groupCheck decides membership of one group by counting, with buffers
// reused from owner to owner.
type groupCheck struct {
	cs   []groupCand
	best map[string]int // org -> index in cs of its best-ranked candidate
}

type groupCand struct {
	p     peer.ID
	org   string
	score [32]byte
}

func (a *groupCand) before(b *groupCand) bool {
	if c := bytes.Compare(a.score[:], b.score[:]); c != 0 {
		return c > 0
	}
	return a.p < b.p
}

// in reports whether q is in owner's group among members (no duplicates).
// rank's rules: the owner is not a candidate and its org is taken; a first
// pass takes, in score order, the best-ranked candidate of each org not
// taken (and every org-less one), a second pass the rest; the group is the
// first GroupSize. So q's place is the number of candidates of its own
// pass ranked before it, plus, in the second pass, the whole first pass.
func (g *groupCheck) in(owner, q peer.ID, members []Member) bool {
	a, ok := g.ahead(owner, q, members)
	return ok && a < GroupSize
}

// ahead returns the number of candidates ranked before q in owner's
// order, and false when q is not a candidate (the owner, or not a member).
func (g *groupCheck) ahead(owner, q peer.ID, members []Member) (int, bool) {
	if q == owner {
		return 0, false
	}
	g.cs = g.cs[:0]
	if g.best == nil {
		g.best = map[string]int{}
	}
	clear(g.best)
	ownerOrg, qi := "", -1
	for _, m := range members {
		if m.Peer == owner {
			ownerOrg = m.Org
			continue
		}
		if m.Peer == q {
			qi = len(g.cs)
		}
		g.cs = append(g.cs, groupCand{m.Peer, m.Org, groupScore(owner, m.Peer)})
	}
	if qi < 0 {
		return 0, false
	}
	for i := range g.cs {
		c := &g.cs[i]
		if c.org == "" || c.org == ownerOrg {
			continue
		}
		if b, ok := g.best[c.org]; !ok || c.before(&g.cs[b]) {
			g.best[c.org] = i
		}
	}
	first := func(i int) bool {
		c := &g.cs[i]
		return c.org == "" || (c.org != ownerOrg && g.best[c.org] == i)
	}
	qc, qFirst := &g.cs[qi], first(qi)
	firstCount, ahead := 0, 0
	for i := range g.cs {
		f := first(i)
		if f {
			firstCount++
		}
		if i != qi && f == qFirst && g.cs[i].before(qc) {
			ahead++
		}
	}
	if !qFirst {
		ahead += firstCount
	}
	return ahead, true
}

// Order ranks members for a record: the owner first, then the eligible
// members of the owner's replica group (Group) by HRW score, org-diverse
// first (see the package doc), then the other eligible members ranked the
// same way. Members in excluded are left out (the owner never is).
func Order(rec cid.Cid, owner peer.ID, members []Member, excluded map[peer.ID]bool) []peer.ID {
	group := Group(owner, members)
	var in, out []Member
	for _, m := range members {
		if Has(group, m.Peer) {
			in = append(in, m)
		} else {
			out = append(out, m)
		}
	}
	score := func(p peer.ID) [32]byte { return Score(rec, p) }
	ranked := rank(owner, append(in, ownerMember(owner, members)...), excluded, score)
	rest := rank(owner, out, excluded, score) // out holds the owner
	return append(ranked, rest[1:]...)
}

// ownerMember returns owner's Member entries in members (for its org).
func ownerMember(owner peer.ID, members []Member) []Member {
	for _, m := range members {
		if m.Peer == owner {
			return []Member{m}
		}
	}
	return nil
}

// rank ranks members by score, highest first, owner first and org-diverse
// first: a first pass takes each peer whose org is not represented yet
// (the owner's counts), a second the rest. Members in excluded are left
// out (the owner never is).
func rank(owner peer.ID, members []Member, excluded map[peer.ID]bool, score func(peer.ID) [32]byte) []peer.ID {
	type cand struct {
		m     Member
		score [32]byte
	}
	var cs []cand
	ownerOrg := ""
	seen := map[peer.ID]bool{}
	for _, m := range members {
		if seen[m.Peer] {
			continue
		}
		seen[m.Peer] = true
		if m.Peer == owner {
			ownerOrg = m.Org
			continue
		}
		if excluded[m.Peer] {
			continue
		}
		cs = append(cs, cand{m, score(m.Peer)})
	}
	sort.Slice(cs, func(i, j int) bool {
		if c := bytes.Compare(cs[i].score[:], cs[j].score[:]); c != 0 {
			return c > 0
		}
		return cs[i].m.Peer < cs[j].m.Peer
	})
	out := make([]peer.ID, 0, len(cs)+1)
	out = append(out, owner)
	used := map[string]bool{}
	if ownerOrg != "" {
		used[ownerOrg] = true
	}
	taken := make([]bool, len(cs))
	for i, c := range cs {
		if c.m.Org == "" || !used[c.m.Org] {
			if c.m.Org != "" {
				used[c.m.Org] = true
			}
			out = append(out, c.m.Peer)
			taken[i] = true
		}
	}
	for i, c := range cs {
		if !taken[i] {
			out = append(out, c.m.Peer)
		}
	}
	return out
}

// Window is how many members after the owner may hold a record that wants
// wanted replicas (the owner included): the wanted-1 first-ranked
// candidates, and as many spares again for repair. Only they (and holders
// the owner names) may fetch the record's blocks or claim to hold it; a
// record that wants one replica (its owner's) is never sent to anyone.
func Window(wanted int) int { return 2 * (max(wanted, 1) - 1) }

// Authority says, from ledger state alone, which members may hold a
// record's ciphertext. Every node evaluates it the same way: the ledger
// rejects a "held" receipt from a peer that may not hold the record, and
// the block filter serves a record's blocks to no such peer.
//
// A member may hold a record when it is within the window: the first
// Window(Wanted) members after the owner in Order (fewer when the owner's
// replica group alone supplies the copies: windowSize), ranked with the members excluded whose
// latest receipt makes them ineligible (its own receipts aside: a decline
// does not stop its author taking the record back), or when the owner named
// it (replica.assign). A member that has, or ever had, a grant on the record
// never may: it holds the record's key, so holding its ciphertext as well
// would let it read without a holder serving it (and attesting the read),
// and a revoked grantee could decrypt the old versions again.
type Authority struct {
	Record  cid.Cid
	Owner   peer.ID
	Wanted  int
	Members []Member
	// Receipts are each holder's latest receipt for the record.
	Receipts []Receipt
	// Granted are the peers that have or had a grant on the record.
	Granted []peer.ID
	// Named are the holders the owner named.
	Named []peer.ID
}

// excluded returns the peers Order leaves out when it ranks q: the
// granted, and the others whose latest receipt makes them ineligible.
func (a Authority) excluded(q peer.ID) map[peer.ID]bool {
	ex := make(map[peer.ID]bool, len(a.Granted)+len(a.Receipts))
	for _, p := range a.Granted {
		ex[p] = true
	}
	for _, r := range a.Receipts {
		if r.Ineligible() && r.Holder != q {
			ex[r.Holder] = true
		}
	}
	return ex
}

func (a Authority) isMember(q peer.ID) bool {
	for _, m := range a.Members {
		if m.Peer == q {
			return true
		}
	}
	return false
}

// MayHold reports whether q may hold the record. The owner always may.
func (a Authority) MayHold(q peer.ID) bool {
	if q == a.Owner {
		return true
	}
	if !a.isMember(q) || Has(a.Granted, q) {
		return false
	}
	if Has(a.Named, q) {
		return true
	}
	order := Order(a.Record, a.Owner, a.Members, a.excluded(q))
	return inWindow(order, q, windowSize(order, a.Owner, a.Members, a.Wanted))
}

// windowSize is how many members after the owner in order are in the
// record's window: Window(wanted), cut to the owner's group members ranked
// first (Order ranks them before any other) when they are enough for the
// wanted copies and a spare to repair them. So a grant or a decline in the group does not pull a
// member outside it into the window, and into following the owner's
// ledger scopes; when the group cannot supply the copies, the window
// reaches past it as before.
func windowSize(order []peer.ID, owner peer.ID, members []Member, wanted int) int {
	w := Window(wanted)
	group := Group(owner, members)
	g := 0
	for _, p := range order[1:] {
		if !Has(group, p) {
			break
		}
		g++
	}
	if g >= max(wanted, 1) && g < w {
		return g
	}
	return w
}

// inWindow reports whether q is among the first size after the owner in
// order.
func inWindow(order []peer.ID, q peer.ID, size int) bool {
	for i, p := range order[1:] {
		if i >= size {
			return false
		}
		if p == q {
			return true
		}
	}
	return false
}

// Eligible lists every peer other than the owner that may hold the record.
func (a Authority) Eligible() []peer.ID {
	var out []peer.ID
	seen := map[peer.ID]bool{a.Owner: true}
	add := func(q peer.ID) {
		if !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	order := Order(a.Record, a.Owner, a.Members, a.excluded(""))
	size := windowSize(order, a.Owner, a.Members, a.Wanted)
	for i, q := range order[1:] {
		if i >= size {
			break
		}
		add(q)
	}
	for _, q := range a.Named {
		if a.MayHold(q) {
			add(q)
		}
	}
	// Ineligible peers are ranked without their own receipt.
	for _, r := range a.Receipts {
		if r.Ineligible() && !seen[r.Holder] && a.MayHold(r.Holder) {
			add(r.Holder)
		}
	}
	return out
}

// Input is what Plan decides from.
type Input struct {
	Record  cid.Cid
	Owner   peer.ID
	Wanted  int
	Members []Member
	// Receipts are each holder's latest receipt for the record.
	Receipts []Receipt
	// Granted are the peers that have or had a grant on the record: they
	// never hold it (see Authority).
	Granted []peer.ID
	// Named are the holders the owner named beyond the window.
	Named []peer.ID
	// Alive reports whether a peer counts as alive for this record.
	Alive func(peer.ID) bool
}

// Authority returns the input's holding authority.
func (in Input) Authority() Authority {
	return Authority{Record: in.Record, Owner: in.Owner, Wanted: in.Wanted, Members: in.Members,
		Receipts: in.Receipts, Granted: in.Granted, Named: in.Named}
}

// Plan is the placement of one record as one node sees it.
type Plan struct {
	// Order is the full ranking (owner first).
	Order []peer.ID
	// Holders are the owner and peers with a "held" receipt, in order
	// (alive or not; members only).
	Holders []peer.ID
	// Live are the holders that are alive, in order.
	Live []peer.ID
	// Targets are the peers that should hold the record now.
	Targets []peer.ID
	// Surplus are live holders beyond Wanted (never the owner).
	Surplus []peer.ID
	// Shortfall is how many of the wanted replicas no target can supply:
	// Wanted minus the number of Targets (0 when the record is, or is
	// about to be, fully replicated by eligible members).
	Shortfall int
	// Declined, only when Shortfall > 0, are the alive members whose
	// latest receipt is "declined", ranked as Order would rank them
	// without their declines: the candidates to withdraw a decline. Only
	// those that may hold the record (Authority) are listed.
	Declined []peer.ID
	// Beyond, only when Shortfall > 0, are alive, eligible members outside
	// the window, in order, as many as the shortfall: the holders the
	// owner may name (replica.assign) so the record reaches its replicas.
	Beyond []peer.ID
}

// Withdraws reports whether q, a member that declined the record, should
// take it now if it has room: q is among the first Shortfall+extra of
// Declined. extra widens the window for a shortfall that has lasted (a
// higher-ranked node that still has no room stays silent; see the package
// doc).
func (p Plan) Withdraws(q peer.ID, extra int) bool {
	n := p.Shortfall + max(extra, 0)
	for i, d := range p.Declined {
		if i >= n {
			return false
		}
		if d == q {
			return true
		}
	}
	return false
}

// Has reports whether p is in ps.
func Has(ps []peer.ID, p peer.ID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// Decide computes the plan for a record.
func Decide(in Input) Plan {
	auth := in.Authority()
	excluded := map[peer.ID]bool{}
	declined := map[peer.ID]bool{}
	held := map[peer.ID]bool{in.Owner: true}
	member := map[peer.ID]bool{}
	for _, m := range in.Members {
		member[m.Peer] = true
	}
	for _, q := range in.Granted {
		if q != in.Owner {
			excluded[q] = true
		}
	}
	var evicted []peer.ID
	for _, r := range in.Receipts {
		if r.Ineligible() {
			excluded[r.Holder] = true
		}
		if r.Status == StatusDeclined && r.Holder != in.Owner {
			declined[r.Holder] = true
		}
		if r.Status == StatusHeld && member[r.Holder] {
			if r.Holder != in.Owner && Has(in.Granted, r.Holder) {
				// A holder that became a grantee gives its replica up.
				evicted = append(evicted, r.Holder)
				continue
			}
			held[r.Holder] = true
		}
	}
	var p Plan
	p.Order = Order(in.Record, in.Owner, in.Members, excluded)
	wanted := max(in.Wanted, 1)
	alive := in.Alive
	if alive == nil {
		alive = func(peer.ID) bool { return true }
	}
	for _, q := range p.Order {
		if held[q] {
			p.Holders = append(p.Holders, q)
			if alive(q) {
				p.Live = append(p.Live, q)
			}
		}
	}
	if len(p.Live) >= wanted {
		p.Targets = append(p.Targets, p.Live[:wanted]...)
		for _, q := range p.Live[wanted:] {
			if q != in.Owner {
				p.Surplus = append(p.Surplus, q)
			}
		}
		p.Surplus = append(p.Surplus, evicted...)
		return p
	}
	p.Surplus = append(p.Surplus, evicted...)
	p.Targets = append(p.Targets, p.Live...)
	var beyond []peer.ID
	size := windowSize(p.Order, in.Owner, in.Members, wanted)
	for i, q := range p.Order {
		if len(p.Targets) >= wanted {
			break
		}
		if held[q] || !alive(q) || excluded[q] {
			continue
		}
		if i-1 >= size && !Has(in.Named, q) {
			beyond = append(beyond, q)
			continue
		}
		p.Targets = append(p.Targets, q)
	}
	p.Shortfall = wanted - len(p.Targets)
	if p.Shortfall > 0 {
		p.Beyond = beyond[:min(len(beyond), p.Shortfall)]
	}
	if p.Shortfall > 0 && len(declined) > 0 {
		lost := map[peer.ID]bool{}
		for q := range excluded {
			if !declined[q] {
				lost[q] = true
			}
		}
		for _, q := range Order(in.Record, in.Owner, in.Members, lost)[1:] {
			if declined[q] && alive(q) && auth.MayHold(q) {
				p.Declined = append(p.Declined, q)
			}
		}
	}
	return p
}

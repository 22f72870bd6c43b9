package replication

import (
	"bytes"

	"github.com/libp2p/go-libp2p/core/peer"
)

// GroupTracker answers GroupsWith(q, members) for one member q as the
// membership changes, ranking only the owners whose group a change can
// move q into or out of. GroupsWith costs a SHA-256 per pair of members
// (7 ms at 200, 180 ms at 1,000), and every node asks it at each change of
// membership; a tracker costs a few owners' rankings instead.
//
// It rests on two properties of the ranking (rank, groupCheck), with
// "ahead" the number of candidates ranked before q in owner o's order:
//
//   - Adding a member never lowers q's ahead for another owner: the new
//     candidate either ranks behind q, or takes a place before it, or
//     displaces its own organisation's best from the first pass, which it
//     can only do by outranking it.
//   - Removing a member lowers q's ahead by at most one, unless it was a
//     member of q's organisation ranked before q (q may then move from
//     the second pass to the first): the removed candidate's place goes,
//     and at most its organisation's next best is promoted in its stead.
//
// So an owner whose group q is in stays so when members only leave, and
// one whose group q is out of stays so while a lower bound of its ahead,
// decreased by one per member removed, is at least GroupSize. Those are
// the owners a change leaves alone; the others are ranked again.
type GroupTracker struct {
	q       peer.ID
	members map[peer.ID]string // peer -> org, as at the last Update
	// ahead holds, per owner (q left out): for an owner whose group q is
	// in, a value below GroupSize; for one q is out of, a lower bound of
	// the candidates ranked before q, at least GroupSize.
	ahead map[peer.ID]int
	g     groupCheck
	// Ranked is the number of owners ranked by the last Update.
	Ranked int
}

// NewGroupTracker returns a tracker of the groups q is in.
func NewGroupTracker(q peer.ID) *GroupTracker {
	return &GroupTracker{q: q}
}

// Update returns GroupsWith(q, members), in the order of members.
func (t *GroupTracker) Update(members []Member) []peer.ID {
	ms := dedupe(members)
	now := make(map[peer.ID]string, len(ms))
	for _, m := range ms {
		now[m.Peer] = m.Org
	}
	t.Ranked = 0
	qOrg, qMember := now[t.q]
	if oldOrg, was := t.members[t.q]; t.members == nil || !qMember || !was || oldOrg != qOrg {
		t.members, t.ahead = now, make(map[peer.ID]int, len(ms))
		if qMember {
			for _, m := range ms {
				if m.Peer != t.q {
					t.ahead[m.Peer] = t.rank(m.Peer, ms)
				}
			}
		}
		return t.result(ms)
	}
	// A member whose organisation changed left and came back.
	var removed, added []Member
	for p, org := range t.members {
		if o, ok := now[p]; !ok || o != org {
			removed = append(removed, Member{Peer: p, Org: org})
		}
	}
	for p, org := range now {
		if o, ok := t.members[p]; !ok || o != org {
			added = append(added, Member{Peer: p, Org: org})
		}
	}
	t.members = now
	if len(removed) == 0 && len(added) == 0 {
		return t.result(ms)
	}
	redo := map[peer.ID]bool{}
	for _, x := range removed {
		delete(t.ahead, x.Peer)
	}
	for _, x := range added {
		redo[x.Peer] = true // a new owner, or one whose organisation changed
	}
	var sameOrg []peer.ID // removed members of q's organisation
	for _, x := range removed {
		if x.Org != "" && x.Org == qOrg {
			sameOrg = append(sameOrg, x.Peer)
		}
	}
	for o, a := range t.ahead {
		if redo[o] {
			continue
		}
		if a < GroupSize { // q is in: only an addition can move it out
			if len(added) > 0 {
				redo[o] = true
			}
			continue
		}
		a -= len(removed)
		t.ahead[o] = a
		if a < GroupSize {
			redo[o] = true
			continue
		}
		for _, x := range sameOrg {
			qs, xs := groupScore(o, t.q), groupScore(o, x)
			if c := bytes.Compare(xs[:], qs[:]); c > 0 || (c == 0 && x < t.q) {
				redo[o] = true
				break
			}
		}
	}
	for o := range redo {
		t.ahead[o] = t.rank(o, ms)
	}
	return t.result(ms)
}

func (t *GroupTracker) rank(owner peer.ID, ms []Member) int {
	t.Ranked++
	a, _ := t.g.ahead(owner, t.q, ms)
	return a
}

func (t *GroupTracker) result(ms []Member) []peer.ID {
	var out []peer.ID
	for _, m := range ms {
		if a, ok := t.ahead[m.Peer]; ok && a < GroupSize {
			out = append(out, m.Peer)
		}
	}
	return out
}

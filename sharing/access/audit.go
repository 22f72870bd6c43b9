package access

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// Disclosure is one line of a record version's accounting of disclosures:
// reads of one reader under one grant, as the nodes that served them
// attested, matched with what the reader's node claimed.
type Disclosure struct {
	Record cid.Cid
	Reader peer.ID
	// Grant is the grant the reads were made under (cid.Undef if a claim
	// names a grant the ledger does not know, which it rejects).
	Grant cid.Cid
	// Purpose is the purpose of that grant: what authorised the reads.
	Purpose string
	// Stated is the purpose the reader's node stated, where it differs.
	Stated string
	// First and Last bound the reads covered.
	First, Last time.Time
	// Count is the number of reads covered: manifest fetches the servers
	// attested (one per read), or 1 for blocks fetched without one, or 1
	// for a claim no server attests.
	Count int
	// Blocks are the other blocks the servers sent.
	Blocks uint64
	// AttestedBy are the nodes that attest serving these reads.
	AttestedBy []peer.ID
	// Reported is how many of them the reader's node claimed.
	Reported int
	// Emergency marks reads under an emergency grant.
	Emergency bool
	// Review flags the line for the privacy officer, and Notes say why:
	// an emergency read, or claims and attestations that disagree.
	Review bool
	Notes  []string
}

// matchWindow is how far a reader's claim may lie from the reads it covers
// (the claim is made when a read ends; clocks differ).
const matchWindow = ledger.ClockSkew

// Audit builds a record version's accounting of disclosures from the
// attestations of the nodes that served it (served), the readers' claims
// (claims) and the record's grants (every grant ever made, for purposes).
// It depends on the readers' honesty only for the purpose they state: a
// read the servers attest appears whether or not the reader claimed it.
func Audit(served []ledger.Served, claims []ledger.AccessEvent, grants []ledger.Grant) []Disclosure {
	purpose := make(map[cid.Cid]string, len(grants))
	for _, g := range grants {
		purpose[g.Entry] = g.Purpose
	}
	slices.SortFunc(served, func(a, b ledger.Served) int { return a.First.Compare(b.First) })
	var rows []*Disclosure
	newRow := func(rec cid.Cid, reader peer.ID, g cid.Cid, first, last time.Time) *Disclosure {
		d := &Disclosure{Record: rec, Reader: reader, Grant: g, Purpose: purpose[g], First: first, Last: last}
		rows = append(rows, d)
		return d
	}
	// Manifest fetches are reads; blocks without one join the read they
	// overlap (a read's chunks may come from several holders).
	for _, s := range served {
		if s.Reads == 0 {
			continue
		}
		d := newRow(s.Record, s.Reader, s.Grant, s.First, s.Last)
		d.Count, d.Blocks, d.AttestedBy = int(s.Reads), s.Blocks, []peer.ID{s.Server}
	}
	for _, s := range served {
		if s.Reads != 0 {
			continue
		}
		d := overlapping(rows, s.Reader, s.Grant, s.First, s.Last)
		if d == nil {
			d = newRow(s.Record, s.Reader, s.Grant, s.First, s.Last)
			d.Count = 1
		}
		d.Blocks += s.Blocks
		d.First, d.Last = minTime(d.First, s.First), maxTime(d.Last, s.Last)
		if !slices.Contains(d.AttestedBy, s.Server) {
			d.AttestedBy = append(d.AttestedBy, s.Server)
		}
	}
	// Claims, oldest first, take the earliest attested reads they can
	// cover: a claim of n reads (a reader's batch, from Time to Last)
	// covers up to n attested reads, across rows, each read once.
	slices.SortFunc(claims, func(a, b ledger.AccessEvent) int { return a.Time.Compare(b.Time) })
	for _, c := range claims {
		n := max(c.Reads, 1)
		last := maxTime(c.Time, c.Last)
		for _, r := range rows {
			if n == 0 {
				break
			}
			if r.Reader == c.Reader && r.Grant == c.Grant && r.Reported < r.Count && len(r.AttestedBy) > 0 &&
				!last.Before(r.First.Add(-matchWindow)) && !c.Time.After(r.Last.Add(matchWindow)) {
				k := min(n, r.Count-r.Reported)
				r.claim(c.Purpose, k)
				n -= k
			}
		}
		if n > 0 {
			d := newRow(c.Record, c.Reader, c.Grant, c.Time, last)
			d.Count = n
			d.note("reported by the reader's node only: no holder attests serving it (read from a copy it kept?)")
			d.claim(c.Purpose, n)
		}
	}
	out := make([]Disclosure, 0, len(rows))
	for _, d := range rows {
		if missing := d.Count - d.Reported; missing > 0 && len(d.AttestedBy) > 0 {
			d.note(fmt.Sprintf("%d of %d reads attested by the serving nodes were not reported by the reader's node", missing, d.Count))
		}
		if d.Stated != "" {
			d.note(fmt.Sprintf("the reader stated purpose %q; the grant it read under is for %q", d.Stated, d.Purpose))
		}
		if d.Purpose == ledger.PurposeEmergency {
			d.Emergency = true
			d.note("read under an emergency grant: review")
		}
		sort.Slice(d.AttestedBy, func(i, j int) bool { return d.AttestedBy[i] < d.AttestedBy[j] })
		out = append(out, *d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].First.Before(out[j].First) })
	return out
}

// claim counts n of the row's reads as reported by the reader, with the
// purpose it stated.
func (d *Disclosure) claim(purpose string, n int) {
	d.Reported += n
	if purpose != d.Purpose && d.Stated == "" {
		d.Stated = purpose
	}
}

func (d *Disclosure) note(s string) {
	d.Review = true
	d.Notes = append(d.Notes, s)
}

func overlapping(rows []*Disclosure, reader peer.ID, g cid.Cid, first, last time.Time) *Disclosure {
	for _, r := range rows {
		if r.Reader == reader && r.Grant == g && !first.After(r.Last.Add(matchWindow)) && !last.Before(r.First.Add(-matchWindow)) {
			return r
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

package access

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

func TestAudit(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ps := peers(4)
	reader, other, srvA, srvB := ps[0], ps[1], ps[2], ps[3]
	rec := cidOf("rec")
	treat := ledger.Grant{Record: rec, Grantee: reader, Purpose: ledger.PurposeTreatment, Entry: cidOf("treat")}
	emerg := ledger.Grant{Record: rec, Grantee: other, Purpose: ledger.PurposeEmergency, Entry: cidOf("emerg")}
	grants := []ledger.Grant{treat, emerg}
	served := func(srv, rd peer.ID, g ledger.Grant, reads, blocks uint64, from, to time.Duration) ledger.Served {
		return ledger.Served{Record: rec, Reader: rd, Server: srv, Grant: g.Entry, Reads: reads, Blocks: blocks, First: t0.Add(from), Last: t0.Add(to)}
	}
	claim := func(rd peer.ID, g ledger.Grant, purpose string, at time.Duration) ledger.AccessEvent {
		return ledger.AccessEvent{Record: rec, Reader: rd, Grant: g.Entry, Purpose: purpose, Time: t0.Add(at), Version: 1}
	}
	claims := func(rd peer.ID, g ledger.Grant, purpose string, n int, from, to time.Duration) ledger.AccessEvent {
		c := claim(rd, g, purpose, from)
		c.Reads, c.Last = n, t0.Add(to)
		return c
	}
	type want struct {
		reader     peer.ID
		purpose    string
		stated     string
		count      int
		reported   int
		attested   int
		review     bool
		emergency  bool
		noteSubstr string
	}
	for _, c := range []struct {
		name   string
		served []ledger.Served
		claims []ledger.AccessEvent
		want   []want
	}{
		{"honest reader: attested and claimed",
			[]ledger.Served{served(srvA, reader, treat, 3, 30, 0, 2*time.Second)},
			[]ledger.AccessEvent{claim(reader, treat, "treatment", time.Second), claim(reader, treat, "treatment", 2*time.Second), claim(reader, treat, "treatment", 3*time.Second)},
			[]want{{reader, "treatment", "", 3, 3, 1, false, false, ""}}},
		{"silent reader: the servers attest what it did not report",
			[]ledger.Served{served(srvA, reader, treat, 2, 4, 0, time.Second)},
			nil,
			[]want{{reader, "treatment", "", 2, 0, 1, true, false, "2 of 2 reads"}}},
		{"a claim no server attests",
			nil,
			[]ledger.AccessEvent{claim(reader, treat, "treatment", 0)},
			[]want{{reader, "treatment", "", 1, 1, 0, true, false, "no holder attests"}}},
		{"emergency grant, plain get: flagged by the grant, not the reader's word",
			[]ledger.Served{served(srvB, other, emerg, 1, 2, 0, 0)},
			[]ledger.AccessEvent{claim(other, emerg, "treatment", time.Second)},
			[]want{{other, "emergency", "treatment", 1, 1, 1, true, true, "emergency"}}},
		{"chunks from a second holder join the read",
			[]ledger.Served{served(srvA, reader, treat, 1, 2, 0, time.Second), served(srvB, reader, treat, 0, 5, 0, time.Second)},
			[]ledger.AccessEvent{claim(reader, treat, "treatment", time.Second)},
			[]want{{reader, "treatment", "", 1, 1, 2, false, false, ""}}},
		{"a claim long after the reads is not theirs",
			[]ledger.Served{served(srvA, reader, treat, 1, 0, 0, 0)},
			[]ledger.AccessEvent{claim(reader, treat, "treatment", time.Hour)},
			[]want{{reader, "treatment", "", 1, 0, 1, true, false, "not reported"}, {reader, "treatment", "", 1, 1, 0, true, false, "no holder attests"}}},
		// Batched claims (issue #16): a reader's node claims its reads of a
		// record per interval. Each read is counted once, whichever holders
		// served it and however the two sides batched it.
		{"a batched claim covers reads two holders attested, each once",
			[]ledger.Served{served(srvA, reader, treat, 3, 0, 0, time.Second), served(srvB, reader, treat, 2, 0, 1500*time.Millisecond, 2*time.Second)},
			[]ledger.AccessEvent{claims(reader, treat, "treatment", 4, 0, 1800*time.Millisecond), claim(reader, treat, "treatment", 2*time.Second)},
			[]want{{reader, "treatment", "", 3, 3, 1, false, false, ""}, {reader, "treatment", "", 2, 2, 1, false, false, ""}}},
		{"a batched claim of more reads than attested: the rest is the reader's word",
			[]ledger.Served{served(srvA, reader, treat, 3, 0, 0, time.Second)},
			[]ledger.AccessEvent{claims(reader, treat, "research", 5, 0, time.Second)},
			[]want{{reader, "treatment", "research", 3, 3, 1, true, false, "stated purpose"}, {reader, "treatment", "research", 2, 2, 0, true, false, "no holder attests"}}},
		{"a batched attestation and single claims",
			[]ledger.Served{served(srvA, reader, treat, 300, 0, 0, time.Minute)},
			func() []ledger.AccessEvent {
				var out []ledger.AccessEvent
				for i := range 20 {
					out = append(out, claims(reader, treat, "treatment", 15, time.Duration(i)*3*time.Second, time.Duration(i)*3*time.Second+2*time.Second))
				}
				return out
			}(),
			[]want{{reader, "treatment", "", 300, 300, 1, false, false, ""}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Audit(c.served, c.claims, grants)
			if len(got) != len(c.want) {
				t.Fatalf("got %d lines, want %d: %+v", len(got), len(c.want), got)
			}
			for i, w := range c.want {
				g := got[i]
				if g.Reader != w.reader || g.Purpose != w.purpose || g.Stated != w.stated || g.Count != w.count || g.Reported != w.reported ||
					len(g.AttestedBy) != w.attested || g.Review != w.review || g.Emergency != w.emergency {
					t.Fatalf("line %d: %+v, want %+v", i, g, w)
				}
				if w.noteSubstr != "" && !strings.Contains(strings.Join(g.Notes, "; "), w.noteSubstr) {
					t.Fatalf("line %d notes %q lack %q", i, g.Notes, w.noteSubstr)
				}
			}
		})
	}
}

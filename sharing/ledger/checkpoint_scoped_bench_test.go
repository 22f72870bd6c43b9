package ledger

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// BenchmarkJoinMillionScoped measures issue #16's join in the network the
// issue is about: a scoped network of 200 members whose history of N
// entries (MEDMESH_JOIN_ENTRIES, default 1,000,000) is spread over the
// owners' scopes by a Zipf distribution (the owner of rank r gets a share
// proportional to 1/r: the busiest clinic about 17% of it), almost all of
// it read claims on the owners' audit scopes, the rest each owner's record
// and grants to eight readers. A new member is admitted, in the replica
// group of the busiest owner (the worst case for it) and of whichever
// others the membership puts it in; it follows those owners' owner and
// audit scopes. Before its admission, each of those scopes got a
// checkpoint signed by a majority of the owner's replica group; after it,
// the admin signed a global checkpoint (the membership: 201 members); then
// 1,000 more claims came on the busiest owner's audit scope.
//
//   - checkpoint: the new member loads the global checkpoint, then each
//     followed scope's (owner scope, then audit scope), and applies the
//     1,000 claims after them: caught up on every scope it follows;
//   - replay: a new member replays the global scope and its followed
//     scopes' entries, as it would without scope checkpoints.
//
// Both must reach the source's global digest, heads of every followed
// scope, and the rows (view and indexes) of the followed owners' records,
// as the source, which applied every entry, holds them (checked after the
// timing; that a scope loaded from its checkpoint has the ScopeDigest of a
// full replay is TestScopeCheckpointSignedByGroupMajority's). The entries of scopes the new member does not follow are
// counted in N but not built unless MEDMESH_JOIN_BUILD_ALL=1: no node
// involved in the join stores, sends or reads them (the global checkpoint
// holds none of their rows: TestCheckpointScopedGlobalOnly), so the join's
// cost does not depend on them; building them all takes an hour here.
//
//	go test ./sharing/ledger -run XXX -bench BenchmarkJoinMillionScoped -benchtime 1x -v -timeout 90m
func BenchmarkJoinMillionScoped(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("MEDMESH_JOIN_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	const members, readers, tail = 200, 8, 1000
	ctx := context.Background()
	t0 := time.Now()
	w := newWorld(b, members, WithScopes())
	byID := map[peer.ID]*ident{}
	for _, m := range w.members {
		byID[m.id] = m
	}
	// The new member: in the busiest owner's replica group.
	rms := make([]replication.Member, 0, members+1)
	for _, m := range w.members {
		rms = append(rms, replication.Member{Peer: m.id, Org: "clinic"})
	}
	var joiner *ident
	for joiner == nil {
		j := newIdent(b)
		if replication.InGroup(w.members[0].id, j.id, append(slices.Clone(rms), replication.Member{Peer: j.id, Org: "clinic"})) {
			joiner = j
		}
	}
	all := append(slices.Clone(rms), replication.Member{Peer: joiner.id, Org: "clinic"})
	var followed []int // owners (by rank-1) whose group the new member is in
	for i, m := range w.members {
		if replication.InGroup(m.id, joiner.id, all) {
			followed = append(followed, i)
		}
	}
	// Zipf shares of the history, by rank.
	h := 0.0
	for r := 1; r <= members; r++ {
		h += 1 / float64(r)
	}
	share := func(i int) int { return int(math.Round(float64(n) / (float64(i+1) * h))) }

	src, err := Open(ctx, Options{Store: NewMemStore(), Key: w.admin.key, Genesis: w.genesis, Logger: quietLogger(), Types: testTypes()})
	if err != nil {
		b.Fatal(err)
	}
	w.setup(b, src) // 200 admissions, keys, one record per member (on its owner scope)
	build := followed
	if os.Getenv("MEDMESH_JOIN_BUILD_ALL") == "1" {
		build = nil
		for i := range w.members {
			build = append(build, i)
		}
	}
	type ownerHist struct {
		grants []cid.Cid
		rec    cid.Cid
	}
	hist := map[int]*ownerHist{}
	for _, i := range build {
		o := w.members[i]
		oh := &ownerHist{rec: recordPayload(b, o, string(rune('a'+i))).Record}
		for k := 1; k <= readers; k++ {
			r := w.members[(i+k*7)%members]
			e := as(b, src, o, TypeGrant, GrantPayload{Record: oh.rec, Grantee: r.id, Envelope: envelopeFor(b, r, "bench"), Purpose: PurposeTreatment})
			oh.grants = append(oh.grants, e.cid)
		}
		hist[i] = oh
	}
	// claims appends count read claims on owner i's audit scope, chained,
	// in sync-sized batches.
	claims := func(i, count int) []*Entry {
		o, oh := w.members[i], hist[i]
		scope := wireScope(AuditScope(o.id))
		src.mu.Lock()
		base := src.core.closureHeads(scope)
		src.mu.Unlock()
		var clock HLC
		deps := base[:0:0]
		var prev []cid.Cid
		for _, p := range base {
			e, err := src.Entry(ctx, p)
			if err != nil {
				b.Fatal(err)
			}
			if clock.Less(e.Clock) {
				clock = e.Clock
			}
			if e.Scope == scope {
				prev = append(prev, p)
			} else {
				deps = append(deps, p)
			}
		}
		out := make([]*Entry, 0, count)
		batch := make([]*Entry, 0, 4000)
		flush := func() {
			res, err := src.ingest(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Applied) != len(batch) {
				b.Fatalf("applied %d of %d: %v", len(res.Applied), len(batch), res.Rejected)
			}
			batch = batch[:0]
		}
		for k := 0; k < count; k++ {
			g := k % readers
			reader := w.members[(i+(g+1)*7)%members]
			clock = HLC{Wall: clock.Wall + 1}
			pl, err := encodePayload(src.core.types, TypeAccess, AccessPayload{Record: oh.rec, Version: 1, Purpose: PurposeTreatment,
				Time: testEpoch.Add(time.Duration(k) * time.Millisecond), Grant: oh.grants[g]})
			if err != nil {
				b.Fatal(err)
			}
			e, err := signScoped(reader.key, src.net, scope, TypeAccess, pl, sortedCids(append(slices.Clone(deps), prev...)), clock)
			if err != nil {
				b.Fatal(err)
			}
			prev = []cid.Cid{e.cid}
			out = append(out, e)
			if batch = append(batch, e); len(batch) == cap(batch) {
				flush()
			}
		}
		flush()
		return out
	}
	built, inFollowed := 0, 0
	for _, i := range build {
		c := max(share(i)-readers-1, 0)
		claims(i, c)
		built += c + readers + 1
		if slices.Contains(followed, i) {
			inFollowed += c + readers + 1
		}
	}
	b.Logf("load average %s", loadAvg())
	b.Logf("history: %d entries over %d owners (Zipf), %d built (%d in the %d owners' scopes the new member follows: ranks %v) in %v",
		n, members, built, inFollowed, len(followed), ranks(followed), time.Since(t0).Round(time.Millisecond))

	// Each followed scope's checkpoint, signed by a majority of the
	// owner's replica group (the new member is not a member yet).
	t0 = time.Now()
	type scopeCkpt struct {
		ck     *Checkpoint
		blocks map[cid.Cid][]byte
	}
	var scopeCks []scopeCkpt
	var scopeSize uint64
	var scopeEntries uint64
	for _, i := range followed {
		for _, s := range []string{OwnerScope(w.members[i].id), AuditScope(w.members[i].id)} {
			ck, blocks, err := src.heldDraft(ctx, s)
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range ck.Signers[:Quorum(len(ck.Signers))] {
				if err := ck.Sign(byID[p].key); err != nil {
					b.Fatal(err)
				}
			}
			m := make(map[cid.Cid][]byte, len(blocks))
			for _, bl := range blocks {
				m[blockCID(bl)] = bl
			}
			scopeCks = append(scopeCks, scopeCkpt{ck, m})
			scopeSize += ck.Size
			scopeEntries += ck.Entries
		}
	}
	madeScopes := time.Since(t0)
	// The new member's admission, the global checkpoint, then more reads.
	// Signed after the history, as a node's clock would put them (as()
	// would give them the global head's clock plus one, before the
	// claims, and every claim would then be judged off the heads).
	later := func(who *ident, typ string, pl any) {
		raw, err := encodePayload(src.core.types, typ, pl)
		if err != nil {
			b.Fatal(err)
		}
		src.mu.Lock()
		heads, clock := src.core.closureHeads(""), HLC{Wall: src.core.Clock().Wall + 1}
		src.mu.Unlock()
		e, err := signScoped(who.key, src.net, "", typ, raw, heads, clock)
		if err != nil {
			b.Fatal(err)
		}
		if err := src.Ingest(ctx, e.raw); err != nil {
			b.Fatal(err)
		}
	}
	later(w.admin, TypeMemberAdd, MemberAddPayload{Peer: joiner.id, Org: "clinic"})
	later(joiner, TypeKeyAnnounce, KeyAnnouncePayload{Public: joiner.kem.Public()})
	gck, _, err := src.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil {
		b.Fatal(err)
	}
	gchain, err := src.CheckpointChain(ctx, ScopeGlobal)
	if err != nil {
		b.Fatal(err)
	}
	gblocks := map[cid.Cid][]byte{}
	for _, c := range gck.Blocks {
		if gblocks[c], err = src.StateBlock(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	after := claims(followed[0], tail)
	tailRaws := make([][]byte, len(after))
	for k, e := range after {
		tailRaws[k] = e.raw
	}
	b.Logf("checkpoints: global %d entries, %d bytes; %d scope checkpoints %d entries, %d bytes (made in %v)",
		gck.Entries, gck.Size, len(scopeCks), scopeEntries, scopeSize, madeScopes.Round(time.Millisecond))
	// What a replaying new member would fetch: the global scope and the
	// followed scopes, oldest first.
	var replayRaws [][]byte
	follow := map[string]bool{"": true}
	for _, i := range followed {
		follow[wireScope(OwnerScope(w.members[i].id))] = true
		follow[wireScope(AuditScope(w.members[i].id))] = true
	}
	logged, err := logCIDs(ctx, src.store)
	if err != nil {
		b.Fatal(err)
	}
	for k := len(logged) - 1; k >= 0; k-- {
		if logged[k] == src.net {
			continue
		}
		raw, err := src.store.GetEntry(ctx, logged[k])
		if err != nil {
			b.Fatal(err)
		}
		e, err := DecodeEntry(raw)
		if err != nil {
			b.Fatal(err)
		}
		if follow[e.Scope] {
			replayRaws = append(replayRaws, raw)
		}
	}
	wantDigest := src.Digest()
	wantHeads := map[string][]cid.Cid{}
	for s := range follow {
		wantHeads[s] = src.core.ScopeHeads(scopeName(s))
	}
	apply := func(l *Ledger, rs [][]byte) {
		for len(rs) > 0 {
			k := min(len(rs), maxRespEntries)
			es := decodeParallel(rs[:k], func(err error) { b.Fatal(err) })
			res, err := l.ingest(ctx, es)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Applied) != len(es) {
				b.Fatalf("applied %d of %d: %v", len(res.Applied), len(es), res.Rejected)
			}
			rs = rs[k:]
		}
	}
	check := func(j *Ledger, how string) {
		if !bytes.Equal(j.Digest(), wantDigest) {
			b.Fatalf("%s: global digest differs from the source's", how)
		}
		for s, hs := range wantHeads {
			if !sameCids(j.core.ScopeHeads(scopeName(s)), hs) {
				b.Fatalf("%s: heads of %s differ from the source's", how, scopeName(s))
			}
		}
	}
	// The followed owners' records' rows (view and indexes), as the source,
	// which applied every entry, holds them: a joiner must hold the same.
	var recPrefixes []string
	for _, i := range followed {
		rec := recordPayload(b, w.members[i], string(rune('a'+i))).Record.String()
		for _, p := range []string{"a/", "as/", "g/", "rc/", "sv/"} {
			recPrefixes = append(recPrefixes, pState+p+rec+"/")
		}
		for _, p := range []string{"as/", "g/", "r/", "rc/", "rv/"} {
			recPrefixes = append(recPrefixes, pIdx+p+rec+"/")
		}
	}
	rowsDigest := func(s Store) ([]byte, int) {
		hs, n := newStateHasher(), 0
		for _, p := range recPrefixes {
			if err := s.Scan(ctx, p, false, func(k string, v []byte) bool {
				hs.add(k, v)
				n++
				return true
			}); err != nil {
				b.Fatal(err)
			}
		}
		return hs.sum(), n
	}
	wantRows, nRows := rowsDigest(src.store)
	checkRows := func(j *Ledger, how string) {
		if d, n := rowsDigest(j.store); !bytes.Equal(d, wantRows) || n != nRows {
			b.Fatalf("%s: the followed owners' records' rows differ from the source's (%d rows, the source %d)", how, n, nRows)
		}
	}
	src.Close()
	runtime.GC()

	b.Run("checkpoint", func(b *testing.B) {
		for it := 0; it < b.N; it++ {
			j := openNode(b, joiner, w.genesis)
			start, cpu0 := time.Now(), cpuTime()
			get := func(m map[cid.Cid][]byte) func(context.Context, cid.Cid) ([]byte, error) {
				return func(_ context.Context, c cid.Cid) ([]byte, error) {
					if bl, ok := m[c]; ok {
						return bl, nil
					}
					return nil, fmt.Errorf("no block %s", c)
				}
			}
			if err := j.JoinFromCheckpoint(ctx, gchain, get(gblocks)); err != nil {
				b.Fatal(err)
			}
			global := time.Since(start)
			for _, sc := range scopeCks {
				if err := j.JoinFromCheckpoint(ctx, []*Checkpoint{sc.ck}, get(sc.blocks)); err != nil {
					b.Fatal(err)
				}
			}
			loaded := time.Since(start)
			apply(j, tailRaws)
			took, cpu := time.Since(start), cpuTime()-cpu0
			check(j, "joined from checkpoints")
			b.ReportMetric(took.Seconds(), "join-s")
			b.ReportMetric(cpu.Seconds(), "join-cpu-s")
			b.ReportMetric(float64(gck.Size+scopeSize)/(1<<20), "state-MiB")
			b.Logf("joined from the global checkpoint (%v) and %d scope checkpoints (%d entries, %d bytes) in %v wall, %v CPU (state loaded in %v, then %d entries applied)",
				global.Round(time.Millisecond), len(scopeCks), scopeEntries, gck.Size+scopeSize, took.Round(time.Millisecond), cpu.Round(time.Millisecond), loaded.Round(time.Millisecond), len(tailRaws))
			checkRows(j, "joined from checkpoints")
		}
	})
	if os.Getenv("MEDMESH_JOIN_REPLAY") == "0" {
		return
	}
	b.Run("replay", func(b *testing.B) {
		for it := 0; it < b.N; it++ {
			j := openNode(b, joiner, w.genesis)
			start, cpu0 := time.Now(), cpuTime()
			apply(j, replayRaws)
			took, cpu := time.Since(start), cpuTime()-cpu0
			check(j, "replayed")
			checkRows(j, "replayed")
			b.ReportMetric(took.Seconds(), "join-s")
			b.ReportMetric(cpu.Seconds(), "join-cpu-s")
			b.Logf("replayed the global scope and the followed scopes (%d entries) in %v wall, %v CPU", len(replayRaws), took.Round(time.Millisecond), cpu.Round(time.Millisecond))
		}
	})
}

func ranks(is []int) []int {
	out := make([]int, len(is))
	for k, i := range is {
		out[k] = i + 1
	}
	return out
}

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/replication"
)

// Report is what one run measured. Sizes are bytes, durations
// milliseconds or seconds as named.
type Report struct {
	Design       string `json:"design"`
	Config       Config `json:"config"`
	NodesStart   int    `json:"nodes_start"`
	NodesEnd     int    `json:"nodes_end"` // live at the end (joiners in, leavers out)
	NodesMeasure int    `json:"nodes_measured"`

	Entries int `json:"entries"` // distinct entries on the live nodes (setup included)
	// LostWithLeavers are entries only nodes that left had: written by a
	// leaver and not passed on before it went.
	LostWithLeavers int            `json:"entries_lost_with_leavers"`
	EntryBytes      int64          `json:"entry_bytes"`
	EntriesByType   map[string]int `json:"entries_by_type"`

	StoredEntries Dist `json:"stored_entries"` // per live node
	StoredShare   Dist `json:"stored_share"`   // of Entries
	// StoredScoped is the share of the network's non-global entries (those
	// about records and reads) a node stores: what grows with the network's
	// history, while the global ones grow with its membership.
	StoredScoped Dist `json:"stored_scoped_share"`
	StoredGlobal Dist `json:"stored_global_share"` // of the global entries: all, on every node, in both designs
	// StoredWhy splits each node's stored entries, as shares of all
	// entries, by why the node has them: "global" (the global scope),
	// "own" (its own owner and audit scopes), "group" (scopes of owners
	// whose replica group it is in at the end) and "other" (scopes it
	// follows as a grantee, or as a holder or escrow outside the group;
	// and groups it was in before a membership change). MedianWhy is the
	// same split for the node whose share is the median.
	StoredWhy   map[string]Dist    `json:"stored_why,omitempty"`
	MedianWhy   map[string]float64 `json:"median_node_why,omitempty"`
	StoredBytes Dist               `json:"stored_bytes"` // the entries' bytes
	StateBytes  Dist               `json:"state_bytes"`  // keys and values of state and indexes
	Sent        Dist               `json:"sent_bytes"`   // from the workload's start to the end of settling
	Received    Dist               `json:"received_bytes"`
	SyncSent    Dist               `json:"sync_sent_bytes"` // of Sent, the sync protocol's

	PropGlobal Lat `json:"propagation_global"` // publish -> applied, every (entry, other node) pair
	// PropGlobalByType splits PropGlobal by entry type (a joiner's key
	// announcement waits for its admission; a removal does not).
	PropGlobalByType map[string]Lat `json:"propagation_global_by_type"`
	// PropScoped is publish -> applied for every entry about records and
	// reads and every other node that followed its scope when it was
	// published; CatchUpScoped the same for the nodes that started
	// following the scope later (a grant to them, a change of replica
	// groups): history they pull, not propagation, timed from publication,
	// so it includes the time before such a node began to follow the scope.
	PropScoped    Lat `json:"propagation_scoped"`
	CatchUpScoped Lat `json:"catch_up_scoped"`
	// ScopedReach is, over those entries, the mean share of the nodes that
	// followed the scope at publication (and are live at the end) that
	// applied it.
	ScopedReach float64 `json:"scoped_reach"`
	// GlobalReach is, over the global entries of the workload, the mean
	// share of the nodes up when it was published (and live at the end)
	// that applied it.
	GlobalReach float64 `json:"global_reach"`
	// GrantSeen is a grant's publication -> its application at its
	// grantee (a grantee that does not follow the owner's scope yet must
	// catch the scope up first); GrantsUnseen counts the grants whose
	// grantee (live at the end) never applied them.
	GrantSeen    Lat `json:"grant_to_grantee"`
	GrantsUnseen int `json:"grants_unseen"`
	ReadAudit    Lat `json:"read_to_audit"`       // read -> its attestation applied at the owner
	ReadClaim    Lat `json:"read_to_owner_claim"` // read -> the reader's claim applied at the owner
	Reads        int `json:"reads"`
	Unaudited    int `json:"reads_unaudited"`

	// GossipRepairs counts, over the live nodes, the times a node found
	// its GossipSub had lost a connected member and repaired it
	// (sharing/ledger/net_gossip.go).
	GossipRepairs int64 `json:"gossip_repairs"`
	// GossipBroken counts the pairs the workload broke (-gossip-breaks)
	// with both ends live at the end; GossipRelisted is how long those
	// took to list each other again on the ledger's topic, GossipStillLost
	// how many had not by the end.
	GossipBroken    int `json:"gossip_broken,omitempty"`
	GossipRelisted  Lat `json:"gossip_relisted"`
	GossipStillLost int `json:"gossip_still_lost,omitempty"`
	// ScopeDrafts counts, over the live nodes, the scope checkpoint drafts
	// (replays) made to propose, co-sign or adopt checkpoints.
	ScopeDrafts int64 `json:"scope_drafts"`

	Ops    map[string]OpCount `json:"operations"`
	Errors map[string]int     `json:"errors,omitempty"`
	// Slowest are the slowest deliveries of scoped entries to the nodes
	// that followed their scope at publication: what makes the tail.
	Slowest []Slow `json:"slowest_scoped,omitempty"`

	Converged       bool    `json:"converged"`
	SetupSeconds    float64 `json:"setup_seconds"`
	WorkloadSeconds float64 `json:"workload_seconds"`
	SettleSeconds   float64 `json:"settle_seconds"`
	TrafficSeconds  float64 `json:"traffic_seconds"`
	WallSeconds     float64 `json:"wall_seconds"`
	CPUSeconds      float64 `json:"cpu_seconds"` // this process, workload and settling
	LoadBefore      string  `json:"load_before"`
	LoadAfter       string  `json:"load_after"`
}

// OpCount is what the workload's operations of one kind did.
type OpCount struct {
	OK      int64 `json:"ok"`
	Failed  int64 `json:"failed"`
	Skipped int64 `json:"skipped"`
}

// Dist summarizes a per-node quantity.
type Dist struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Mean   float64 `json:"mean"`
	Max    float64 `json:"max"`
}

func dist(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	slices.Sort(xs)
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return Dist{Min: xs[0], Median: xs[len(xs)/2], Mean: sum / float64(len(xs)), Max: xs[len(xs)-1]}
}

// Lat summarizes latencies, in milliseconds.
type Lat struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func lat(ds []time.Duration) Lat {
	if len(ds) == 0 {
		return Lat{}
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Lat{Count: len(ds), P50: ms(ds[len(ds)/2]), P99: ms(ds[min(len(ds)-1, len(ds)*99/100)]), Max: ms(ds[len(ds)-1])}
}

// GlobalType reports whether entries of type t concern the whole network
// (membership, keys: issue #16's global scope) rather than one owner's
// records or their reads.
func GlobalType(t string) bool {
	switch t {
	case ledger.TypeGenesis, ledger.TypeMemberAdd, ledger.TypeMemberRemove, ledger.TypeMemberOrg, ledger.TypeKeyAnnounce, "network.key":
		return true
	}
	return false
}

// measure fills rep from the nodes' stores, traffic counters and
// deliveries.
func (s *sim) measure(ctx context.Context, rep *Report, before []trafficSnap) {
	nodes := s.allNodes()
	rep.NodesStart = s.cfg.Nodes
	all := map[cid.Cid]entryInfo{}
	stored := make([]map[cid.Cid]entryInfo, len(nodes))
	gone := map[cid.Cid]bool{}
	for i, n := range nodes {
		stored[i] = n.st.stored()
		for c, e := range stored[i] {
			if n.alive.Load() {
				all[c] = e
			} else {
				gone[c] = true
			}
		}
	}
	rep.Entries = len(all)
	for c := range gone {
		if _, ok := all[c]; !ok {
			rep.LostWithLeavers++
		}
	}
	rep.EntriesByType = map[string]int{}
	scopedTotal := 0
	for _, e := range all {
		if !GlobalType(e.typ) {
			scopedTotal++
		}
		rep.EntryBytes += int64(e.size)
		rep.EntriesByType[e.typ]++
	}
	var ents, share, scopedShare, globalShare, byts, state, sent, recv, syncSent []float64
	why := map[string][]float64{}
	var whyOf []map[string]float64 // per measured node, in ents' order
	for i, n := range nodes {
		if !n.alive.Load() {
			continue
		}
		rep.NodesEnd++
		var b int64
		sc := 0
		rel := map[string]string{} // owner -> why, cached
		counts := map[string]int{}
		for _, e := range stored[i] {
			b += int64(e.size)
			if !GlobalType(e.typ) {
				sc++
			}
			r := "global"
			if _, o, err := ledger.ParseScope(e.scope); err == nil && o != "" {
				var ok bool
				if r, ok = rel[string(o)]; !ok {
					switch s.relation(i, o.String()) {
					case "owner":
						r = "own"
					case "group":
						r = "group"
					default:
						r = "other"
					}
					rel[string(o)] = r
				}
			}
			counts[r]++
		}
		w := map[string]float64{}
		for _, r := range []string{"global", "own", "group", "other"} {
			w[r] = float64(counts[r]) / float64(max(rep.Entries, 1))
			why[r] = append(why[r], w[r])
		}
		whyOf = append(whyOf, w)
		scopedShare = append(scopedShare, float64(sc)/float64(max(scopedTotal, 1)))
		globalShare = append(globalShare, float64(len(stored[i])-sc)/float64(max(rep.Entries-scopedTotal, 1)))
		ents = append(ents, float64(len(stored[i])))
		share = append(share, float64(len(stored[i]))/float64(rep.Entries))
		byts = append(byts, float64(b))
		if sb, err := n.st.stateBytes(ctx); err == nil {
			state = append(state, float64(sb))
		}
		tr := n.tr.snapshot()
		if i < len(before) {
			tr = tr.minus(before[i])
		}
		sent = append(sent, float64(tr.sent))
		recv = append(recv, float64(tr.recv))
		syncSent = append(syncSent, float64(tr.syncSent))
		if n.l != nil {
			rep.GossipRepairs += n.l.GossipRepairs()
			rep.ScopeDrafts += n.l.ScopeDrafts()
		}
	}
	rep.NodesMeasure = len(ents)
	if len(share) > 0 {
		// The node at the median share (before dist below sorts share).
		idx := make([]int, len(share))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return share[idx[a]] < share[idx[b]] })
		rep.MedianWhy = whyOf[idx[len(idx)/2]]
	}
	rep.StoredWhy = map[string]Dist{}
	for r, xs := range why {
		rep.StoredWhy[r] = dist(xs)
	}
	rep.StoredEntries, rep.StoredShare, rep.StoredBytes, rep.StateBytes = dist(ents), dist(share), dist(byts), dist(state)
	rep.StoredScoped, rep.StoredGlobal = dist(scopedShare), dist(globalShare)
	rep.Sent, rep.Received, rep.SyncSent = dist(sent), dist(recv), dist(syncSent)

	// Propagation: every (published entry, other node that applied it).
	s.pubMu.Lock()
	pub := s.published
	s.pubMu.Unlock()
	var glob, scoped, late []time.Duration
	globBy := map[string][]time.Duration{}
	type slowAt struct {
		Slow
		by, at int
		owner  string
	}
	var slow []slowAt
	applied := make([]map[cid.Cid]time.Time, len(s.ids)) // by node index
	for _, n := range nodes {
		applied[n.idx] = map[cid.Cid]time.Time{}
		for _, d := range n.deliveries() {
			applied[n.idx][d.c] = d.at
			p, ok := pub[d.c]
			if !ok || p.author == n.idx || p.at.Before(n.started) {
				continue
			}
			switch {
			case GlobalType(p.typ):
				glob = append(glob, d.at.Sub(p.at))
				globBy[p.typ] = append(globBy[p.typ], d.at.Sub(p.at))
			case p.followers[n.idx]:
				scoped = append(scoped, d.at.Sub(p.at))
				owner := ""
				if i := strings.IndexByte(p.scope, '/'); i > 0 {
					owner = p.scope[i+1:]
				}
				slow = append(slow, slowAt{Slow{Type: p.typ, Scope: p.scope[:max(strings.IndexByte(p.scope, '/'), 0)], MS: d.at.Sub(p.at).Milliseconds()},
					p.author, n.idx, owner})
			default:
				late = append(late, d.at.Sub(p.at))
			}
		}
	}
	rep.PropGlobal, rep.PropScoped, rep.CatchUpScoped = lat(glob), lat(scoped), lat(late)
	rep.PropGlobalByType = map[string]Lat{}
	for t, ds := range globBy {
		rep.PropGlobalByType[t] = lat(ds)
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i].MS > slow[j].MS })
	for _, x := range slow[:min(len(slow), 10)] {
		x.By, x.At = s.relation(x.by, x.owner), s.relation(x.at, x.owner)
		rep.Slowest = append(rep.Slowest, x.Slow)
	}
	// Reach: of the nodes an entry should reach (live at the end), the
	// share that applied it, averaged over the entries. A global entry
	// should reach every node up when it was published; a scoped one the
	// other nodes that followed its scope then.
	reach := func(global bool) float64 {
		var n int
		var sum float64
		for c, p := range pub {
			if GlobalType(p.typ) != global {
				continue
			}
			up, got := 0, 0
			for _, nd := range nodes {
				should := !nd.started.After(p.at)
				if !global {
					should = p.followers[nd.idx] && nd.idx != p.author
				}
				if !should || !nd.alive.Load() {
					continue
				}
				up++
				if _, ok := applied[nd.idx][c]; ok || nd.idx == p.author {
					got++
				}
			}
			if up > 0 {
				n++
				sum += float64(got) / float64(up)
			}
		}
		if n == 0 {
			return 0
		}
		return sum / float64(n)
	}
	rep.GlobalReach, rep.ScopedReach = reach(true), reach(false)

	// Reads: to the owner's audit (the attestation applied at the owner)
	// and to the owner's copy of the claim.
	w := s.w
	w.readMu.Lock()
	reads := append([]*readEvent(nil), w.reads...)
	grants := append([]*grant(nil), w.grants...)
	w.readMu.Unlock()
	var seen []time.Duration
	for _, g := range grants {
		p, ok := pub[g.cid]
		if !ok || applied[g.grantee] == nil {
			continue // the grantee left
		}
		if t, ok := applied[g.grantee][g.cid]; ok {
			seen = append(seen, t.Sub(p.at))
		} else {
			rep.GrantsUnseen++
		}
	}
	rep.GrantSeen = lat(seen)
	var audit, claim []time.Duration
	for _, ev := range reads {
		rep.Reads++
		owner := ev.rec.owner
		if t, ok := applied[owner][ev.claim]; ok {
			claim = append(claim, t.Sub(ev.t0))
		}
		switch {
		case !ev.served.Defined():
			rep.Unaudited++
		case ev.server == owner:
			audit = append(audit, ev.servedAt.Sub(ev.t0))
		default:
			if t, ok := applied[owner][ev.served]; ok {
				audit = append(audit, t.Sub(ev.t0))
			} else {
				rep.Unaudited++
			}
		}
	}
	rep.ReadAudit, rep.ReadClaim = lat(audit), lat(claim)
	var relisted []time.Duration
	rep.GossipBroken, relisted, rep.GossipStillLost = w.brokenReport()
	rep.GossipRelisted = lat(relisted)
	rep.Ops = map[string]OpCount{}
	for k, st := range w.stats {
		rep.Ops[k] = OpCount{OK: st.ok.Load(), Failed: st.failed.Load(), Skipped: st.skipped.Load()}
	}
	w.errMu.Lock()
	if len(w.errs) > 0 {
		rep.Errors = w.errs
	}
	w.errMu.Unlock()
}

// PrintTable writes the reports side by side as a Markdown table.
func PrintTable(out io.Writer, reps []*Report) {
	head := "| |"
	sep := "|---|"
	for _, r := range reps {
		head += " " + r.Design + " |"
		sep += "---:|"
	}
	fmt.Fprintln(out, head)
	fmt.Fprintln(out, sep)
	row := func(name string, f func(r *Report) string) {
		line := "| " + name + " |"
		for _, r := range reps {
			line += " " + f(r) + " |"
		}
		fmt.Fprintln(out, line)
	}
	pct := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
	row("clinics: at the start → live at the end", func(r *Report) string {
		return fmt.Sprintf("%d → %d", r.NodesStart, r.NodesEnd)
	})
	row("entries in the network (setup included)", func(r *Report) string {
		return fmt.Sprintf("%s (%s); %d left with leavers", commas(int64(r.Entries)), mib(float64(r.EntryBytes)), r.LostWithLeavers)
	})
	row("entries stored per node: median / max", func(r *Report) string {
		return fmt.Sprintf("%s / %s", commas(int64(r.StoredEntries.Median)), commas(int64(r.StoredEntries.Max)))
	})
	row("… as a share of all entries: median / max", func(r *Report) string {
		return fmt.Sprintf("%s / %s", pct(r.StoredShare.Median), pct(r.StoredShare.Max))
	})
	row("… of the entries about records and reads (non-global): median / max", func(r *Report) string {
		return fmt.Sprintf("%s / %s", pct(r.StoredScoped.Median), pct(r.StoredScoped.Max))
	})
	row("… of the global entries (membership, keys): min", func(r *Report) string { return pct(r.StoredGlobal.Min) })
	row("… the median node's share by why it has them: global / own scopes / group's / other (grants, holdings)", func(r *Report) string {
		if r.MedianWhy == nil {
			return "–"
		}
		w := r.MedianWhy
		return fmt.Sprintf("%s / %s / %s / %s", pct(w["global"]), pct(w["own"]), pct(w["group"]), pct(w["other"]))
	})
	row("… \"other\" (as grantee or holder outside the group), per node: median / mean / max", func(r *Report) string {
		d, ok := r.StoredWhy["other"]
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%s / %s / %s", pct(d.Median), pct(d.Mean), pct(d.Max))
	})
	row("entry bytes stored per node: median / max", func(r *Report) string {
		return fmt.Sprintf("%s / %s", mib(r.StoredBytes.Median), mib(r.StoredBytes.Max))
	})
	row("state and index bytes per node: median / max", func(r *Report) string {
		return fmt.Sprintf("%s / %s", mib(r.StateBytes.Median), mib(r.StateBytes.Max))
	})
	row("sent per node: median / max", func(r *Report) string {
		return fmt.Sprintf("%s / %s (%s/s median)", mib(r.Sent.Median), mib(r.Sent.Max), kib(r.Sent.Median/r.TrafficSeconds))
	})
	row("received per node: median / max", func(r *Report) string {
		return fmt.Sprintf("%s / %s (%s/s median)", mib(r.Received.Median), mib(r.Received.Max), kib(r.Received.Median/r.TrafficSeconds))
	})
	row("… of which sync protocol (sent, median)", func(r *Report) string { return mib(r.SyncSent.Median) })
	row("propagation of global entries: p50 / p99 / max", func(r *Report) string { return latString(r.PropGlobal) })
	row("… global entries reached (mean share of live nodes)", func(r *Report) string { return pct(r.GlobalReach) })
	row("propagation of scoped entries (to the scope's followers then): p50 / p99 / max", func(r *Report) string { return latString(r.PropScoped) })
	row("… scoped entries reached (mean share of those followers)", func(r *Report) string { return pct(r.ScopedReach) })
	row("catch-up of scoped entries by later followers, from publication: p50 / p99 / max", func(r *Report) string { return latString(r.CatchUpScoped) })
	row("read → owner's audit (attestation at the owner): p50 / p99 / max", func(r *Report) string {
		return latString(r.ReadAudit) + fmt.Sprintf(", %d of %d reads", r.ReadAudit.Count, r.Reads)
	})
	row("read → reader's claim at the owner: p50 / p99 / max", func(r *Report) string { return latString(r.ReadClaim) })
	row("grant → applied at its grantee: p50 / p99 / max", func(r *Report) string {
		return latString(r.GrantSeen) + fmt.Sprintf(", %d never", r.GrantsUnseen)
	})
	row("scope checkpoint drafts (replays to propose, co-sign or adopt; all nodes)", func(r *Report) string { return fmt.Sprint(r.ScopeDrafts) })
	row("GossipSub peers lost while connected, repaired (all nodes)", func(r *Report) string { return fmt.Sprint(r.GossipRepairs) })
	row("GossipSub pairs the workload broke: listed again after p50 / p99 / max; still lost at the end", func(r *Report) string {
		return fmt.Sprintf("%d: %s; %d", r.GossipBroken, latString(r.GossipRelisted), r.GossipStillLost)
	})
	row("operations ok / tried", func(r *Report) string {
		var parts []string
		for _, k := range opKinds() {
			o := r.Ops[k]
			if n := o.OK + o.Failed; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d/%d", k, o.OK, n))
			}
		}
		return strings.Join(parts, ", ")
	})
	row("every live node reached the same state", func(r *Report) string {
		return fmt.Sprintf("%v (settled in %.1f s)", r.Converged, r.SettleSeconds)
	})
	row("workload / wall time; CPU (2 cores shared)", func(r *Report) string {
		return fmt.Sprintf("%.0f s / %.0f s; %.0f CPU-s", r.WorkloadSeconds, r.WallSeconds, r.CPUSeconds)
	})
	row("… the cores this process got (CPU / traffic window)", func(r *Report) string {
		return fmt.Sprintf("%.2f", r.CPUSeconds/r.TrafficSeconds)
	})
	row("load average before → after", func(r *Report) string { return r.LoadBefore + " → " + r.LoadAfter })
	for _, r := range reps {
		if len(r.Slowest) > 0 {
			fmt.Fprintf(out, "\n%s: slowest scoped deliveries (ms, type, scope, published by → applied at, relative to the scope's owner):\n", r.Design)
			for _, x := range r.Slowest {
				fmt.Fprintf(out, "  %7d  %-16s %-6s %s → %s\n", x.MS, x.Type, x.Scope, x.By, x.At)
			}
		}
		if len(r.Errors) == 0 {
			continue
		}
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(out, "\n%s: failed operations:\n", r.Design)
		for _, k := range keys {
			fmt.Fprintf(out, "  %4d × %s\n", r.Errors[k], k)
		}
	}
}

func latString(l Lat) string {
	if l.Count == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s ms", fmtMs(l.P50), fmtMs(l.P99), fmtMs(l.Max))
}

func fmtMs(x float64) string {
	if x < 10 {
		return fmt.Sprintf("%.1f", x)
	}
	return commas(int64(math.Round(x)))
}

func mib(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/(1<<10)) }

func commas(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Slow is one slow delivery of a scoped entry: its type and scope kind,
// the time from publication to application, and who published it and who
// applied it, relative to the scope's owner ("owner", "group": in the
// owner's replica group, "other": a grantee or a holder outside it).
type Slow struct {
	Type  string `json:"type"`
	Scope string `json:"scope"`
	MS    int64  `json:"ms"`
	By    string `json:"by"`
	At    string `json:"at"`
}

// relation says what node i is to the owner (a peer ID string) of a scope.
func (s *sim) relation(i int, owner string) string {
	if i < 0 || i >= len(s.ids) {
		return "?"
	}
	if s.ids[i].id.String() == owner {
		return "owner"
	}
	if n := s.node(i); n != nil {
		o, err := peer.Decode(owner)
		var rms []replication.Member
		for _, m := range n.l.Members() {
			rms = append(rms, replication.Member{Peer: m.Peer, Org: m.Org})
		}
		if err == nil && slices.Contains(replication.Group(o, rms), s.ids[i].id) {
			return "group"
		}
	}
	return "other"
}

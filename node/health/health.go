// Package health is a node's view of its network for its operator: members
// connected, records it owns that lack reachable copies, records it holds
// for others, and whether its ledger agrees with its peers'
// (`medmesh health`, GET /api/v1/health); and the gauges operators graph
// (members, connected peers, disk use, under-replicated records, build
// info). It only reads: the ledger, the host's connections, the disk.
package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/internal/buildinfo"
	"github.com/medmesh/medmesh/internal/diskspace"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/replication"
	"github.com/prometheus/client_golang/prometheus"
)

// Ledger is what the checks read from the ledger (*ledger.Ledger).
type Ledger interface {
	IsMember(peer.ID) bool
	Members() []ledger.Member
	// OwnedRecords and HeldIDs read the ledger's involvement indexes: a
	// check counts this node's records, not the network's.
	OwnedRecords(ctx context.Context, p peer.ID) ([]ledger.RecordInfo, error)
	HeldIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error)
	Receipts(record cid.Cid) []ledger.Receipt
	Heads() []cid.Cid
	PendingCount() int
	Knows(cid.Cid) bool
	PeerHeads(ctx context.Context, h host.Host, p peer.ID) ([]cid.Cid, error)
	SyncWith(ctx context.Context, h host.Host, p peer.ID) error
	// GossipPeers lists the peers GossipSub knows on the ledger's topic.
	GossipPeers() []peer.ID
	// GossipRepairs counts the ledger's repairs of GossipSub's streams.
	GossipRepairs() int64
	// ClockAhead lists the authors of entries held back in the last hour
	// for clocks too far ahead of this node's (ledger.MaxClockAhead).
	ClockAhead() []peer.ID
}

// Config holds a Checker's dependencies.
type Config struct {
	Ledger Ledger
	Host   host.Host
	// Factor is the replica count of a record that states none
	// (replication.factor).
	Factor int
	// DataDir is the datastore directory (its disk use is a gauge).
	DataDir string
	// PeerTimeout bounds each heads exchange. Default 5s.
	PeerTimeout time.Duration
	// MaxCompared bounds how many connected members a check compares
	// heads with (chosen at random). Default 8.
	MaxCompared int
	// GossipGrace is how long a member must have been connected before a
	// check expects GossipSub to list it on the ledger's topic (the two
	// exchange their subscriptions when they connect). Default 30s.
	GossipGrace time.Duration
	// AuditRestoring, when set, reports whether the audit log holds its
	// appends for the segments of a restore (node/auditlog: the node was
	// restored from a backup and the leaves added after it are not back).
	AuditRestoring func() bool
}

// Checker computes a node's health.
type Checker struct {
	c    Config
	self peer.ID

	mu        sync.Mutex
	counted   time.Time // when owned/under were last counted (gauges)
	owned     int
	under     int
	countedOK bool
}

// New returns a checker.
func New(c Config) *Checker {
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 5 * time.Second
	}
	if c.MaxCompared <= 0 {
		c.MaxCompared = 8
	}
	if c.Factor <= 0 {
		c.Factor = 1
	}
	if c.GossipGrace <= 0 {
		c.GossipGrace = 30 * time.Second
	}
	return &Checker{c: c, self: c.Host.ID()}
}

func (k *Checker) connected(p peer.ID) bool {
	return k.c.Host.Network().Connectedness(p) == network.Connected
}

// connectedFor returns how long this node has been connected to p (its
// oldest open connection).
func (k *Checker) connectedFor(p peer.ID) time.Duration {
	var d time.Duration
	for _, c := range k.c.Host.Network().ConnsToPeer(p) {
		d = max(d, time.Since(c.Stat().Opened))
	}
	return d
}

// records counts the records this node owns, those short of reachable
// holders, and the records it holds for others. It reads only this node's
// records (the ledger's owner and holder indexes).
func (k *Checker) records(ctx context.Context) (owned int, under []string, held int, err error) {
	under = []string{}
	recs, err := k.c.Ledger.OwnedRecords(ctx, k.self)
	if err != nil {
		return 0, under, 0, err
	}
	heldIDs, err := k.c.Ledger.HeldIDs(ctx, k.self)
	if err != nil {
		return 0, under, 0, err
	}
	for _, r := range recs {
		want := int(r.Replicas)
		if want <= 0 {
			want = k.c.Factor
		}
		reach := map[peer.ID]bool{k.self: true}
		for _, rc := range k.c.Ledger.Receipts(r.ID) {
			if rc.Status == replication.StatusHeld && k.connected(rc.Holder) {
				reach[rc.Holder] = true
			}
		}
		if len(reach) < want {
			under = append(under, r.ID.String())
		}
	}
	sort.Strings(under)
	return len(recs), under, len(heldIDs), nil
}

// Check computes this node's health now. It asks up to MaxCompared
// connected members for their ledger heads.
func (k *Checker) Check(ctx context.Context) api.Health {
	h := api.Health{
		Peer: k.self.String(), Member: k.c.Ledger.IsMember(k.self),
		Problems: []string{}, Warnings: []string{}, Disconnected: []string{}, UnderReplicatedIDs: []string{},
		Ledger: api.HealthLedger{Ahead: []string{}, NoGossip: []string{}, ClockAhead: []string{}},
	}
	if !h.Member {
		h.Problems = append(h.Problems, "this node is not a member of its network yet: the admin runs `medmesh network invite --peer "+k.self.String()+"`, then this node `medmesh network join TOKEN`")
	}
	var connected []peer.ID
	for _, m := range k.c.Ledger.Members() {
		if m.Peer == k.self {
			continue
		}
		h.MemberCount++
		if k.connected(m.Peer) {
			connected = append(connected, m.Peer)
		} else {
			h.Disconnected = append(h.Disconnected, m.Peer.String())
		}
	}
	h.ConnectedCount = len(connected)
	sort.Strings(h.Disconnected)
	switch {
	case h.MemberCount > 0 && h.ConnectedCount == 0:
		h.Problems = append(h.Problems, fmt.Sprintf("connected to none of the %d other members: check this node's network (a firewall, addresses.announce behind NAT) and theirs (`medmesh members`)", h.MemberCount))
	case len(h.Disconnected) > 0:
		h.Warnings = append(h.Warnings, fmt.Sprintf("%d of the %d other members are not connected (disconnected lists them)", len(h.Disconnected), h.MemberCount))
	}

	owned, under, held, err := k.records(ctx)
	if err != nil {
		h.Problems = append(h.Problems, fmt.Sprintf("the ledger's state cannot be read (%v): see the daemon's log; `medmesh ledger verify` checks it", err))
	} else {
		k.setCounts(owned, len(under))
	}
	h.OwnedCount, h.UnderReplicatedIDs, h.UnderReplicatedCount, h.HeldCount = owned, under, len(under), held
	if len(under) > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("%d of the %d records this node owns have fewer reachable copies than they want (`medmesh status ID` shows each): repair places new copies on other members once a holder has been away for replication.grace; a network with fewer members than a record's replicas cannot", len(under), owned))
	}

	k.checkLedger(ctx, connected, &h.Ledger)
	if len(h.Ledger.Ahead) > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("the ledger lacks entries that %d connected members have, even after syncing with them: see the daemon's log for rejected entries", len(h.Ledger.Ahead)))
	}
	if n := len(h.Ledger.NoGossip); n > 0 {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%d connected members exchange no gossip with this node (ledger.no_gossip lists them): GossipSub lost their subscriptions while the connection stayed up, so entries between them and this node travel by the ledger's sync only (slower than gossip, nothing is lost); the ledger repairs this within about two minutes (medmesh_ledger_gossip_repairs_total counts repairs); if it stays, restart this daemon", n))
	}
	if n := len(h.Ledger.ClockAhead); n > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("entries of %d of the %d other members were held back in the last hour because their clocks are more than %s ahead of this node's (ledger.clock_ahead lists the authors; the daemon's log says by how much): they apply once this node's clock catches up. If that is most members, this node's clock is behind: check its time synchronisation (NTP); if it is one member, that member's clock is ahead", n, h.MemberCount, ledger.MaxClockAhead))
	}
	if h.Ledger.PendingCount > 0 {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%d ledger entries wait for their parents, which are being fetched from peers", h.Ledger.PendingCount))
	}
	if k.c.AuditRestoring != nil && k.c.AuditRestoring() {
		h.Warnings = append(h.Warnings, "this node was restored from a backup and its audit log waits for the segments of the leaves added after it (held by other members): until they are back no new audit tree head is signed; after ten minutes without them it appends without them and logs an error")
	}
	h.Healthy = len(h.Problems) == 0
	return h
}

// checkLedger compares this node's heads with connected members'. A member
// whose heads this node does not know is synced with, and counts as ahead
// only if it still has entries this node lacks afterwards: entries in
// flight are not a problem, a sync that does not work is.
func (k *Checker) checkLedger(ctx context.Context, connected []peer.ID, out *api.HealthLedger) {
	l := k.c.Ledger
	out.PendingCount = l.PendingCount()
	// Members connected for a while that GossipSub does not list: it
	// forgets a peer's subscriptions when its stream to the peer fails
	// and does not learn them again while the connection stays up
	// (libp2p/go-libp2p-pubsub#433; seen in the ledger's simulation).
	gossip := map[peer.ID]bool{}
	for _, p := range l.GossipPeers() {
		gossip[p] = true
	}
	for _, p := range connected {
		if !gossip[p] && k.connectedFor(p) >= k.c.GossipGrace {
			out.NoGossip = append(out.NoGossip, p.String())
		}
	}
	sort.Strings(out.NoGossip)
	out.GossipRepairs = l.GossipRepairs()
	for _, p := range l.ClockAhead() {
		out.ClockAhead = append(out.ClockAhead, p.String())
	}
	mine := l.Heads()
	out.HeadCount = len(mine)
	rand.Shuffle(len(connected), func(i, j int) { connected[i], connected[j] = connected[j], connected[i] })
	if len(connected) > k.c.MaxCompared {
		connected = connected[:k.c.MaxCompared]
	}
	type result struct {
		p              peer.ID
		ok, agree, fwd bool
	}
	results := make(chan result, len(connected))
	for _, p := range connected {
		go func() {
			pctx, cancel := context.WithTimeout(ctx, k.c.PeerTimeout)
			defer cancel()
			theirs, err := l.PeerHeads(pctx, k.c.Host, p)
			if err != nil {
				results <- result{p: p}
				return
			}
			r := result{p: p, ok: true, agree: sameCids(theirs, l.Heads())}
			if !r.agree && !knowsAll(l, theirs) {
				_ = l.SyncWith(pctx, k.c.Host, p)
				r.fwd = !knowsAll(l, theirs)
			}
			results <- r
		}()
	}
	for range connected {
		r := <-results
		if !r.ok {
			continue
		}
		out.ComparedCount++
		if r.agree {
			out.AgreeCount++
		}
		if r.fwd {
			out.Ahead = append(out.Ahead, r.p.String())
		}
	}
	sort.Strings(out.Ahead)
	out.InSync = len(out.Ahead) == 0
}

func knowsAll(l Ledger, cs []cid.Cid) bool {
	for _, c := range cs {
		if !l.Knows(c) {
			return false
		}
	}
	return true
}

func sameCids(a, b []cid.Cid) bool {
	if len(a) != len(b) {
		return false
	}
	set := make(map[cid.Cid]bool, len(a))
	for _, c := range a {
		set[c] = true
	}
	for _, c := range b {
		if !set[c] {
			return false
		}
	}
	return true
}

func (k *Checker) setCounts(owned, under int) {
	k.mu.Lock()
	k.owned, k.under, k.counted, k.countedOK = owned, under, time.Now(), true
	k.mu.Unlock()
}

// countsEvery bounds how often the record gauges recount (a scrape every
// few seconds must not walk the ledger's records each time).
const countsEvery = 30 * time.Second

func (k *Checker) counts() (owned, under int) {
	k.mu.Lock()
	fresh := k.countedOK && time.Since(k.counted) < countsEvery
	owned, under = k.owned, k.under
	k.mu.Unlock()
	if fresh {
		return owned, under
	}
	o, u, _, err := k.records(context.Background())
	if err != nil {
		return owned, under // the last counts; Check reports the failure
	}
	k.setCounts(o, len(u))
	return o, len(u)
}

// Register adds the gauges operators graph to reg: members and connected
// peers, records owned and under-replicated, the datastore's disk use and
// the free space beside it, and build information.
func (k *Checker) Register(reg prometheus.Registerer) {
	bi := buildinfo.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "medmesh_build_info", Help: "Always 1; the labels say which medmesh runs."}, []string{"version", "commit", "go"})
	build.WithLabelValues(bi.Version, bi.Commit, bi.Go).Set(1)
	reg.MustRegister(build,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medmesh_network_members", Help: "Members of the network on this node's ledger, itself included."},
			func() float64 { return float64(len(k.c.Ledger.Members())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medmesh_p2p_connected_peers", Help: "Peers (members: the gater admits no one else) connected now."},
			func() float64 { return float64(len(k.c.Host.Network().Peers())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medmesh_owned_records", Help: "Records (every version) this node owns. Recounted at most every 30 s."},
			func() float64 { o, _ := k.counts(); return float64(o) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medmesh_owned_under_replicated_records", Help: "Records this node owns with fewer reachable holders than the replicas they want. Recounted at most every 30 s."},
			func() float64 { _, u := k.counts(); return float64(u) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medmesh_datastore_disk_used_bytes", Help: "Disk space the datastore (blocks, ledger, indexes) occupies."},
			func() float64 { return float64(diskspace.Used(k.c.DataDir)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medmesh_datastore_disk_free_bytes", Help: "Free space on the datastore's filesystem (available to the daemon's user)."},
			func() float64 { f, _ := diskspace.Free(k.c.DataDir); return float64(f) }),
	)
}

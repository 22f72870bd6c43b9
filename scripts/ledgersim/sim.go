package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// Config is one simulation run.
type Config struct {
	Design       string
	Nodes        int           // clinics at the start (all members, keys announced)
	Seed         uint64        // the workload's RNG
	Duration     time.Duration // of the workload
	Tick         time.Duration // the driver's step
	Degree       int           // peers each clinic dials (the graph's mean degree is about twice this)
	Latency      time.Duration // one way, every link
	SyncInterval time.Duration // the ledger's periodic sync
	// ScopeCheckpointEvery is ledger.Options.ScopeCheckpointEvery: the
	// owners' replica groups checkpoint their scopes as they grow (0: off).
	ScopeCheckpointEvery int `json:",omitempty"`
	// GossipBreaks is how many times the workload breaks GossipSub between
	// two connected clinics (chaos.go); GossipRepairAfter is
	// ledger.Options.GossipRepairAfter (0: the ledger's default, negative:
	// no repair).
	GossipBreaks      int           `json:",omitempty"`
	GossipRepairAfter time.Duration `json:",omitempty"`
	// Rates across the whole network, per second of the workload.
	Records, Grants, Reads, Revokes float64
	Joins, Leaves                   int     // clinics joining and leaving during the workload
	Zipf                            float64 // exponent of the clinic-activity and record-popularity distributions
	Replicas                        int     // per record, the owner included
	Settle                          time.Duration
	// OpTimeout bounds how long an operation waits for what it needs (the
	// grant it reads under, the record it is to hold): long by default,
	// since 200 nodes on two shared cores can fall minutes behind.
	OpTimeout time.Duration
	Progress  io.Writer `json:"-"` // progress lines; nil for none
}

// DefaultConfig is the 200-node run of docs/BENCHMARKS.md. Its rates (about
// 5 entries a second network-wide) are a fifth of the region (200
// clinics reading 5,000 records a day: about 23 a second), because the 200
// nodes share two cores here instead of having one machine each: in
// today's design every node validates every entry, so the process does 200
// times the work of one node.
func DefaultConfig() Config {
	return Config{Design: DesignSingle, Nodes: 200, Seed: 16, Duration: 60 * time.Second, Tick: 100 * time.Millisecond,
		Degree: 8, Latency: 10 * time.Millisecond, SyncInterval: 10 * time.Second,
		Records: 0.4, Grants: 0.2, Reads: 1.6, Revokes: 0.05, Joins: 2, Leaves: 2, Zipf: 1.1, Replicas: 3,
		Settle: 3 * time.Minute, OpTimeout: 5 * time.Minute}
}

func (c Config) validate() error {
	switch {
	case !slices.Contains(Designs(), c.Design):
		return fmt.Errorf("unknown design %q (choices: %s)", c.Design, strings.Join(Designs(), ", "))
	case c.Nodes < 4:
		return fmt.Errorf("-nodes %d: at least 4", c.Nodes)
	case c.Duration < c.Tick || c.Tick <= 0:
		return fmt.Errorf("-duration %s must be at least one tick (%s)", c.Duration, c.Tick)
	case c.Degree < 1:
		return fmt.Errorf("-degree %d: at least 1", c.Degree)
	case c.Zipf <= 1:
		return fmt.Errorf("-zipf %g: must be greater than 1", c.Zipf)
	case c.OpTimeout <= 0:
		return fmt.Errorf("-op-timeout %s: must be positive", c.OpTimeout)
	case c.Replicas < 1:
		return fmt.Errorf("-replicas %d: at least 1", c.Replicas)
	case c.Leaves >= c.Nodes-1:
		return fmt.Errorf("-leaves %d: fewer than the clinics", c.Leaves)
	case c.Records < 0 || c.Grants < 0 || c.Reads < 0 || c.Revokes < 0:
		return fmt.Errorf("rates must not be negative")
	}
	return nil
}

// index returns the node index of peer p.
func (s *sim) index(p peer.ID) (int, bool) {
	i, ok := s.byPeer[p]
	return i, ok
}

// Run runs one simulation and measures it.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rep := &Report{Design: cfg.Design, Config: cfg, LoadBefore: loadavg()}
	wall := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &sim{cfg: cfg, mn: mocknet.New(), published: map[cid.Cid]pubInfo{}, byPeer: map[peer.ID]int{}}
	defer s.mn.Close()
	s.mn.SetLinkDefaults(mocknet.LinkOptions{Latency: cfg.Latency})
	for i := 0; i < cfg.Nodes+cfg.Joins; i++ {
		who, err := newIdent(i)
		if err != nil {
			return nil, err
		}
		s.ids = append(s.ids, who)
		s.byPeer[who.id] = i
	}
	s.nodes = make([]*node, len(s.ids))
	if err := s.buildSetup(ctx); err != nil {
		return nil, err
	}
	// A random graph: each clinic dials Degree others (a DHT-routed
	// network of clinics is not a full mesh).
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e7))
	defer func() {
		for _, n := range s.allNodes() {
			s.stopNode(n)
		}
	}()
	for i := 0; i < cfg.Nodes; i++ {
		var peers []int
		for _, j := range rng.Perm(i) {
			if len(peers) == cfg.Degree {
				break
			}
			peers = append(peers, j)
		}
		if _, err := s.addNode(ctx, i, true, peers); err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	// Clinics that dialled fewer than Degree (the first ones) get more
	// peers from later ones.
	for i := 0; i < cfg.Nodes && i < cfg.Degree; i++ {
		for _, j := range rng.Perm(cfg.Nodes)[:cfg.Degree-i] {
			if j != i {
				_, _ = s.mn.ConnectPeers(s.node(i).h.ID(), s.node(j).h.ID())
			}
		}
	}
	// GossipSub forms its mesh in a few heartbeats (1 s each).
	time.Sleep(3 * time.Second)
	rep.SetupSeconds = time.Since(wall).Seconds()
	s.progress(fmt.Sprintf("%d clinics up in %.1f s; workload for %s", cfg.Nodes, rep.SetupSeconds, cfg.Duration))

	before := make([]trafficSnap, 0, cfg.Nodes+cfg.Joins)
	for _, n := range s.allNodes() {
		before = append(before, n.tr.snapshot())
	}
	cpu0 := cpuTime()
	t0 := time.Now()
	w := newWorkload(ctx, s)
	s.w = w
	w.run()
	for _, n := range s.allNodes() {
		n.att.idle()
	}
	rep.WorkloadSeconds = time.Since(t0).Seconds()
	settle := time.Now()
	rep.Converged = s.waitConverged(ctx, cfg.Settle)
	rep.SettleSeconds = time.Since(settle).Seconds()
	rep.CPUSeconds = (cpuTime() - cpu0).Seconds()
	rep.TrafficSeconds = time.Since(t0).Seconds()
	rep.LoadAfter = loadavg()
	s.measure(ctx, rep, before)
	rep.WallSeconds = time.Since(wall).Seconds()
	return rep, nil
}

func (s *sim) progress(what string) {
	if s.cfg.Progress != nil {
		fmt.Fprintf(s.cfg.Progress, "ledgersim %s: %s; load %s\n", s.cfg.Design, what, loadavg())
	}
}

// waitConverged waits until every live clinic has the same heads and digest
// (today's design: every node holds the whole ledger).
func (s *sim) waitConverged(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		var live []*node
		for _, n := range s.allNodes() {
			if n.alive.Load() {
				live = append(live, n)
			}
		}
		if s.converged(live) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			s.progress("settling: waiting for every clinic to reach the same ledger")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// converged reports whether the nodes agree: the same heads and digest.
func (s *sim) converged(live []*node) bool {
	h0, d0 := live[0].l.Heads(), live[0].l.Digest()
	for _, n := range live[1:] {
		if !slices.EqualFunc(h0, n.l.Heads(), func(a, b cid.Cid) bool { return a.Equals(b) }) || !bytes.Equal(d0, n.l.Digest()) {
			return false
		}
	}
	return true
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package main

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mrand "math/rand/v2"
)

// Breaking GossipSub between two connected clinics (-gossip-breaks N):
// during the first half of the workload, N times, a random clinic's outbound GossipSub stream
// to one of its connected peers is reset each time GossipSub reopens it,
// until GossipSub gives the peer up (the fifth time: MaxBackoffAttempts),
// as it does when a stream keeps failing (sharing/ledger/net_gossip.go).
// The ledger repairs such a pair a minute later (-gossip-repair-after; a
// negative value turns the repair off, as before it existed); the report
// says how many pairs were broken, how long each took to list each other
// again on the ledger's topic, and how many never did. The breaks draw
// from an RNG of their own, so the rest of the workload is the same with
// and without them.

// brokenPair is a broken pair: clinic a's GossipSub gave b up at at; the
// two listed each other again after relisted (0: not yet).
type brokenPair struct {
	a, b     int
	at       time.Time
	relisted atomic.Int64 // nanoseconds
}

// chaosRNG is the RNG of the breaks for a seed.
func chaosRNG(seed uint64) *mrand.Rand { return mrand.New(mrand.NewPCG(seed, 0xb7ea4)) }

// breakGossip picks a live clinic and one of its connected live peers and
// breaks GossipSub between them in the background.
func (w *workload) breakGossip() {
	var cands []int
	for i, ok := range w.usable {
		if ok {
			cands = append(cands, i)
		}
	}
	slices.Sort(cands)
	if len(cands) < 2 {
		return
	}
	a := w.s.node(cands[w.chaos.IntN(len(cands))])
	if a == nil || !a.alive.Load() {
		return
	}
	var peers []int
	for _, p := range a.h.Network().Peers() {
		if j, ok := w.s.index(p); ok && w.usable[j] && j != a.idx {
			peers = append(peers, j)
		}
	}
	slices.Sort(peers)
	if len(peers) == 0 {
		return
	}
	b := peers[w.chaos.IntN(len(peers))]
	to := w.s.ids[b].id
	w.launch(func() {
		if !loseGossip(w.ctx, a.h.Network(), to) {
			return
		}
		bp := &brokenPair{a: a.idx, b: b, at: time.Now()}
		w.brokenMu.Lock()
		w.broken = append(w.broken, bp)
		w.brokenMu.Unlock()
		// Watched until the run ends, not waited for by the workload.
		go func() {
			nb := w.s.node(b)
			for w.ctx.Err() == nil && a.alive.Load() && nb != nil && nb.alive.Load() {
				if slices.Contains(a.l.GossipPeers(), to) && slices.Contains(nb.l.GossipPeers(), a.who.id) {
					bp.relisted.Store(int64(max(time.Since(bp.at), 1)))
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	})
}

// loseGossip resets nw's outbound GossipSub streams to p until GossipSub
// opens none within two seconds (its backoff's longest wait before it
// gives up is about one), and reports whether it got there after at least
// one reset.
func loseGossip(ctx context.Context, nw network.Network, p peer.ID) bool {
	resets := 0
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		var out []network.Stream
		deadline := time.Now().Add(2 * time.Second)
		for len(out) == 0 && time.Now().Before(deadline) {
			for _, c := range nw.ConnsToPeer(p) {
				for _, s := range c.GetStreams() {
					if strings.HasPrefix(string(s.Protocol()), "/meshsub/") && s.Stat().Direction == network.DirOutbound {
						out = append(out, s)
					}
				}
			}
			if len(out) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if len(out) == 0 {
			return resets > 0
		}
		for _, s := range out {
			_ = s.Reset()
		}
		resets++
	}
	return false
}

// brokenReport returns, over the broken pairs whose ends are both live,
// how many there were, how long each took to be listed both ways again,
// and how many were not by now.
func (w *workload) brokenReport() (broken int, relisted []time.Duration, lost int) {
	w.brokenMu.Lock()
	pairs := slices.Clone(w.broken)
	w.brokenMu.Unlock()
	for _, bp := range pairs {
		a, b := w.s.node(bp.a), w.s.node(bp.b)
		if a == nil || b == nil || !a.alive.Load() || !b.alive.Load() {
			continue
		}
		broken++
		if d := bp.relisted.Load(); d > 0 {
			relisted = append(relisted, time.Duration(d))
		} else {
			lost++
		}
	}
	return broken, relisted, lost
}

package replication

import (
	"context"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
)

// Status is a record's replication as this node sees it.
type Status struct {
	Record cid.Cid
	// Replicas is the wanted number of copies (the owner's included).
	Replicas int
	// Holders are the owner and the peers with a "held" receipt; Reachable
	// those of them connected now (and this node).
	Holders   []peer.ID
	Reachable []peer.ID
	// Providers are the peers the DHT names for the record's manifest,
	// sorted by their string form.
	Providers []peer.ID
	// LastVerified is the last time one of the holders passed a proof of
	// storage this node asked for (zero: never).
	LastVerified time.Time
	// Erased: the owner erased the record; no node keeps it.
	Erased bool
}

// providerLookupTimeout bounds the DHT lookup of a status call.
const providerLookupTimeout = 2 * time.Second

// Status reports a record's replication as this node sees it.
func (m *Manager) Status(ctx context.Context, id cid.Cid) (Status, error) {
	if m.cfg.Erased != nil && m.cfg.Erased(id) {
		return Status{Record: id, Erased: true}, nil
	}
	info, ok := m.ledger.Record(id)
	if !ok {
		return Status{}, fault.NotFoundf("", "unknown record %s", id)
	}
	st := Status{Record: id, Replicas: int(info.Replicas), Holders: m.ledger.Holders(info)}
	if st.Replicas <= 0 {
		st.Replicas = m.cfg.Replicas
	}
	for _, h := range st.Holders {
		if h == m.self || m.host.Network().Connectedness(h) == network.Connected {
			st.Reachable = append(st.Reachable, h)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, providerLookupTimeout)
	defer cancel()
	seen := map[peer.ID]bool{}
	for _, p := range m.net.FindProviders(lctx, id, 20) {
		if !seen[p] {
			seen[p] = true
			st.Providers = append(st.Providers, p)
		}
	}
	sort.Slice(st.Providers, func(i, j int) bool { return st.Providers[i].String() < st.Providers[j].String() })
	st.LastVerified = m.live.LastVerified(id, st.Holders)
	return st, nil
}

// ReprovideResult is one reprovide run.
type ReprovideResult struct {
	Blocks   int // announced
	Failed   int // in batches that failed
	Duration time.Duration
}

// PerSecond is the run's throughput in blocks announced per second.
func (r ReprovideResult) PerSecond() float64 {
	if s := r.Duration.Seconds(); s > 0 {
		return float64(r.Blocks) / s
	}
	return 0
}

// reprovideLoop re-announces every held block before DHT records expire.
func (m *Manager) reprovideLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.o.ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			if _, err := m.Reprovide(m.ctx); err != nil && m.ctx.Err() == nil {
				m.log.Warn("reprovide", "err", err)
			}
		}
	}
}

// Reprovide announces on the DHT every block of the records this node owns
// or pins, in batches (each batch runs on p2p's bounded provider pool).
func (m *Manager) Reprovide(ctx context.Context) (ReprovideResult, error) {
	var cids []cid.Cid
	keep := map[cid.Cid]bool{}
	for b, rec := range m.records.IndexedBlocks() {
		k, seen := keep[rec]
		if !seen {
			k = m.records.Owns(ctx, rec) || m.pins.Pinned(rec)
			keep[rec] = k
		}
		if k {
			cids = append(cids, b)
		}
	}
	return m.ProvideBatched(ctx, cids)
}

// ProvideBatched announces cids on the DHT in batches of ReprovideBatch,
// each on p2p's bounded provider pool, and measures the throughput.
func (m *Manager) ProvideBatched(ctx context.Context, cids []cid.Cid) (ReprovideResult, error) {
	var res ReprovideResult
	start := time.Now()
	for i := 0; i < len(cids); i += m.o.ReprovideBatch {
		batch := cids[i:min(i+m.o.ReprovideBatch, len(cids))]
		if err := m.net.Provide(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			res.Failed += len(batch) // counted coarsely; p2p logs and meters each failure
			m.log.Warn("reprovide batch", "n", len(batch), "err", err)
			continue
		}
		res.Blocks += len(batch)
		m.m.reprovided.Add(float64(len(batch)))
	}
	res.Duration = time.Since(start)
	m.m.reprovideBPS.Set(res.PerSecond())
	m.log.Info("reprovided blocks", "blocks", res.Blocks, "failed", res.Failed, "took", res.Duration.Round(time.Millisecond), "blocks_per_s", int(res.PerSecond()))
	return res, nil
}

package daemon

import (
	"context"
	"github.com/medmesh/medmesh/internal/fault"
	"net/http"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
)

func (d *Daemon) replicationRoutes() {
	d.api.HandleFunc("GET "+p+"/records/{id}/status", d.handleStatus)
	d.api.HandleFunc("POST "+p+"/reprovide", func(w http.ResponseWriter, r *http.Request) {
		res, err := d.Reprovide(r.Context())
		reply(w, res, err)
	})
}

// providerLookupTimeout bounds the DHT lookup of a status call.
const providerLookupTimeout = 2 * time.Second

// Status reports a record's replication as this node sees it.
func (d *Daemon) Status(ctx context.Context, id cid.Cid) (api.Status, error) {
	info, ok := d.Ledger.Record(id)
	if !ok {
		return api.Status{}, fault.NotFoundf("", "unknown record %s", id)
	}
	st := api.Status{ID: id.String(), Replicas: int(info.Replicas), Holders: []string{}, Reachable: []string{}, Providers: []string{}}
	if st.Replicas <= 0 {
		st.Replicas = d.Repo.Config.ReplicationFactor
	}
	holders := d.holders(info) // the owner and peers with a "held" receipt
	for _, h := range holders {
		st.Holders = append(st.Holders, h.String())
		if h == d.self || d.P2P.Host.Network().Connectedness(h) == network.Connected {
			st.Reachable = append(st.Reachable, h.String())
		}
	}
	lctx, cancel := context.WithTimeout(ctx, providerLookupTimeout)
	defer cancel()
	seen := map[peer.ID]bool{}
	for ai := range d.P2P.DHT.FindProvidersAsync(lctx, id, 20) {
		if !seen[ai.ID] {
			seen[ai.ID] = true
			st.Providers = append(st.Providers, ai.ID.String())
		}
	}
	sort.Strings(st.Providers)
	if r := d.repl.Load(); r != nil {
		st.LastVerified = api.Nullable(r.live.LastVerified(id, holders))
	}
	return st, nil
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	id, err := pathCID(r, "id")
	if err != nil {
		api.Fail(w, err)
		return
	}
	st, err := d.Status(r.Context(), id)
	reply(w, st, err)
}

// reprovideLoop re-announces every held block before DHT records expire.
func (r *replicator) reprovideLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.o.ReprovideInterval)
	defer t.Stop()
	for {
		select {
		case <-r.d.ctx.Done():
			return
		case <-t.C:
			if _, err := r.d.Reprovide(r.d.ctx); err != nil && r.d.ctx.Err() == nil {
				r.d.log.Warn("reprovide", "err", err)
			}
		}
	}
}

// Reprovide announces on the DHT every block of the records this node owns
// or pins, in batches (each batch runs on p2p's bounded provider pool).
func (d *Daemon) Reprovide(ctx context.Context) (api.ReprovideResult, error) {
	var res api.ReprovideResult
	r := d.repl.Load()
	if r == nil {
		return res, fault.Unavailablef("", "replication manager not running")
	}
	var cids []cid.Cid
	keep := map[cid.Cid]bool{}
	d.access.mu.RLock()
	idx := make(map[cid.Cid]cid.Cid, len(d.access.blocks))
	for b, rec := range d.access.blocks {
		idx[b] = rec
	}
	d.access.mu.RUnlock()
	for b, rec := range idx {
		k, seen := keep[rec]
		if !seen {
			k = r.owns(ctx, rec) || r.pinned(rec)
			keep[rec] = k
		}
		if k {
			cids = append(cids, b)
		}
	}
	return d.ProvideBatched(ctx, cids)
}

// ProvideBatched announces cids on the DHT in batches of ReprovideBatch,
// each on p2p's bounded provider pool, and measures the throughput.
func (d *Daemon) ProvideBatched(ctx context.Context, cids []cid.Cid) (api.ReprovideResult, error) {
	var res api.ReprovideResult
	r := d.repl.Load()
	if r == nil {
		return res, fault.Unavailablef("", "replication manager not running")
	}
	start := time.Now()
	for i := 0; i < len(cids); i += r.o.ReprovideBatch {
		batch := cids[i:min(i+r.o.ReprovideBatch, len(cids))]
		if err := d.P2P.Provide(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			res.Failed += len(batch) // counted coarsely; p2p logs and meters each failure
			d.log.Warn("reprovide batch", "n", len(batch), "err", err)
			continue
		}
		res.Blocks += len(batch)
		r.m.reprovided.Add(float64(len(batch)))
	}
	res.Duration = time.Since(start)
	res.Seconds = res.Duration.Seconds()
	if s := res.Duration.Seconds(); s > 0 {
		res.PerSec = float64(res.Blocks) / s
	}
	r.m.reprovideBPS.Set(res.PerSec)
	d.log.Info("reprovided blocks", "blocks", res.Blocks, "failed", res.Failed, "took", res.Duration.Round(time.Millisecond), "blocks_per_s", int(res.PerSec))
	return res, nil
}

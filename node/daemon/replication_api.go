package daemon

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
)

// GCResult is what `medmesh gc` removed.
type GCResult struct {
	RemovedBlocks int   `json:"removed_block_count"`
	RemovedBytes  int64 `json:"removed_size"`
	KeptRecords   int   `json:"kept_record_count"`
	// SkippedInProgress counts blocks of records being fetched or added.
	SkippedInProgress int `json:"skipped_block_count"`
}

// ReprovideResult is one reprovide run.
type ReprovideResult struct {
	Blocks   int           `json:"block_count"`
	Failed   int           `json:"failed_count"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	PerSec   float64       `json:"blocks_per_second"`
}

func (d *Daemon) replicationRoutes() {
	d.api.HandleFunc("GET "+p+"/records/{id}/status", d.handleStatus)
	d.api.HandleFunc("POST "+p+"/gc", func(w http.ResponseWriter, r *http.Request) {
		res, err := d.GC(r.Context())
		reply(w, res, err)
	})
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
		return api.Status{}, api.Errorf(http.StatusNotFound, "", "unknown record %s", id)
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

// keepsLocked reports whether gc must keep the blocks of rec because this
// node pins a replica of it or is fetching it now. Called with r.mu held.
func (r *replicator) keepsLocked(rec cid.Cid) bool {
	_, pinned := r.pins[rec]
	return pinned || r.inflight[rec] > 0
}

// GC removes the blocks that belong to no record this node owns, holds a
// replica of, or may read. Only blocks in the block→record index are
// considered: ledger entries and unindexed blocks are never touched.
func (d *Daemon) GC(ctx context.Context) (GCResult, error) {
	var res GCResult
	r := d.repl.Load()
	if r == nil {
		return res, api.Errorf(http.StatusServiceUnavailable, "", "replication manager not running")
	}
	byRec := map[cid.Cid][]cid.Cid{}
	d.access.mu.RLock()
	for b, rec := range d.access.blocks {
		byRec[rec] = append(byRec[rec], b)
	}
	d.access.mu.RUnlock()
	now := d.opts.Now()
	for rec, bs := range byRec {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if r.owns(ctx, rec) || d.readableBy(rec, now) {
			res.KeptRecords++
			continue
		}
		kept := false
		for _, b := range bs {
			// Under r.mu: a fetch that starts now registers first and then
			// finds the block gone (and fetches it), never the reverse.
			r.mu.Lock()
			if r.keepsLocked(rec) {
				if r.inflight[rec] > 0 {
					res.SkippedInProgress++
				}
				r.mu.Unlock()
				kept = true
				continue
			}
			size, err := d.Store.Blocks.GetSize(ctx, b)
			if err == nil {
				err = d.Store.Blocks.DeleteBlock(ctx, b)
				if err == nil {
					res.RemovedBlocks++
					res.RemovedBytes += int64(size)
				}
			}
			r.mu.Unlock()
			if err == nil || ipld.IsNotFound(err) {
				d.access.mu.Lock()
				if d.access.blocks[b] == rec {
					delete(d.access.blocks, b)
				}
				d.access.mu.Unlock()
				if err := d.local.Delete(ctx, blockIdxPrefix.ChildString(b.String())); err != nil {
					return res, err
				}
			}
		}
		if kept {
			res.KeptRecords++
		}
	}
	if err := d.Store.DS.Sync(ctx, datastore.NewKey("/")); err != nil {
		return res, err
	}
	r.m.gcBlocks.Add(float64(res.RemovedBlocks))
	r.m.gcBytes.Add(float64(res.RemovedBytes))
	d.log.Info("gc done", "removed_blocks", res.RemovedBlocks, "removed_bytes", res.RemovedBytes, "kept_records", res.KeptRecords, "skipped_in_progress", res.SkippedInProgress)
	return res, nil
}

// readableBy reports whether this node holds a current grant for rec.
func (d *Daemon) readableBy(rec cid.Cid, now time.Time) bool {
	for _, g := range d.Ledger.Grants(rec) {
		if g.Grantee == d.self && grantLive(g, now) {
			return true
		}
	}
	return false
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
func (d *Daemon) Reprovide(ctx context.Context) (ReprovideResult, error) {
	var res ReprovideResult
	r := d.repl.Load()
	if r == nil {
		return res, api.Errorf(http.StatusServiceUnavailable, "", "replication manager not running")
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
func (d *Daemon) ProvideBatched(ctx context.Context, cids []cid.Cid) (ReprovideResult, error) {
	var res ReprovideResult
	r := d.repl.Load()
	if r == nil {
		return res, api.Errorf(http.StatusServiceUnavailable, "", "replication manager not running")
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

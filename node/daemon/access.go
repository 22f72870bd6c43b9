package daemon

import (
	"context"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// accessIndex maps block CIDs to the record they belong to, and decides
// whether bitswap may serve a block to a peer: only to the record's owner,
// a current grantee, or a replica holder. Blocks of records a peer may not
// read are never sent to it.
type accessIndex struct {
	d  *Daemon
	mu sync.RWMutex
	// block -> record
	blocks map[cid.Cid]cid.Cid
	// record -> peers allowed (cached; dropped when the ledger changes)
	allowed map[cid.Cid]map[peer.ID]bool
}

func newAccessIndex(d *Daemon) *accessIndex {
	return &accessIndex{d: d, blocks: map[cid.Cid]cid.Cid{}, allowed: map[cid.Cid]map[peer.ID]bool{}}
}

var blockIdxPrefix = datastore.NewKey("/blockidx")

// load reads the persisted block index.
func (a *accessIndex) load(ctx context.Context) error {
	res, err := a.d.local.Query(ctx, query.Query{Prefix: blockIdxPrefix.String()})
	if err != nil {
		return err
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return r.Error
		}
		b, err := cid.Decode(strings.TrimPrefix(r.Key, blockIdxPrefix.String()+"/"))
		if err != nil {
			continue
		}
		rec, err := cid.Cast(r.Value)
		if err != nil {
			continue
		}
		a.blocks[b] = rec
	}
	return nil
}

// addBlocks records that blocks belong to record rec.
func (a *accessIndex) addBlocks(ctx context.Context, rec cid.Cid, bs []cid.Cid) {
	batch, err := a.d.local.Batch(ctx)
	if err != nil {
		a.d.log.Warn("block index", "err", err)
		return
	}
	a.mu.Lock()
	for _, b := range bs {
		if old, ok := a.blocks[b]; ok && old == rec {
			continue
		}
		a.blocks[b] = rec
		batch.Put(ctx, blockIdxPrefix.ChildString(b.String()), rec.Bytes())
	}
	a.mu.Unlock()
	if err := batch.Commit(ctx); err != nil {
		a.d.log.Warn("block index", "err", err)
	}
}

// recordOf returns the record a block belongs to.
func (a *accessIndex) recordOf(b cid.Cid) (cid.Cid, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	r, ok := a.blocks[b]
	return r, ok
}

// onEntry drops cached decisions when the ledger changes who may read what.
func (a *accessIndex) onEntry(e *ledger.Entry) {
	switch e.Type {
	case ledger.TypeGrant, ledger.TypeRevoke, ledger.TypeReceipt, ledger.TypeMemberRemove, ledger.TypeRecordAnnounce:
		a.mu.Lock()
		a.allowed = map[cid.Cid]map[peer.ID]bool{}
		a.mu.Unlock()
	}
}

// allow is bitswap's peer block request filter.
func (a *accessIndex) allow(p peer.ID, c cid.Cid) bool {
	rec, ok := a.recordOf(c)
	if !ok {
		// Every block this node stores for a record is indexed before it
		// arrives (add, Open, replication), and ledger entries travel over
		// the ledger's own sync protocol. A block of no known record is
		// refused: serving it would bypass the rules for the record it
		// belongs to. (Not counted as a refusal: peers broadcast wants for
		// blocks this node does not have at all.)
		return false
	}
	a.mu.RLock()
	set, cached := a.allowed[rec]
	a.mu.RUnlock()
	if !cached {
		set = a.compute(rec)
		a.mu.Lock()
		a.allowed[rec] = set
		a.mu.Unlock()
	}
	if set[p] {
		return true
	}
	a.d.m.refused.Inc()
	return false
}

// compute lists the peers that may have a record's blocks.
func (a *accessIndex) compute(rec cid.Cid) map[peer.ID]bool {
	set := map[peer.ID]bool{}
	info, ok := a.d.Ledger.Record(rec)
	if !ok {
		return set
	}
	set[info.Owner] = true
	now := a.d.opts.Now()
	for _, g := range a.d.Ledger.Grants(rec) {
		if grantLive(g, now) {
			set[g.Grantee] = true
		}
	}
	for _, p := range a.d.replicaPeers(info) {
		set[p] = true
	}
	return set
}

// replicaPeers are the peers that hold or are assigned a replica of a record:
// placement's targets may fetch before their receipt exists.
func (a *Daemon) replicaPeers(info ledger.RecordInfo) []peer.ID {
	var out []peer.ID
	for _, rc := range a.Ledger.Receipts(info.ID) {
		if rc.Status == ReceiptHeld {
			out = append(out, rc.Holder)
		}
	}
	if r := a.repl.Load(); r != nil {
		out = append(out, r.assigned(info)...)
	}
	return out
}

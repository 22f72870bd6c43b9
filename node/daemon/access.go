package daemon

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// accessIndex maps block CIDs to the record they belong to, and applies the
// access policy (sharing/access) to every block request: a block is served
// only to a peer the policy allows for its record. Decisions are cached per
// record and dropped when an entry about that record arrives (or, for
// membership, all of them), or when a grant expires.
type accessIndex struct {
	d  *Daemon
	mu sync.RWMutex
	// block -> record
	blocks map[cid.Cid]cid.Cid
	// record -> its policy now (cached)
	policies map[cid.Cid]access.Record
}

func newAccessIndex(d *Daemon) *accessIndex {
	return &accessIndex{d: d, blocks: map[cid.Cid]cid.Cid{}, policies: map[cid.Cid]access.Record{}}
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

// onEntry drops cached decisions an entry may change: those of the record
// it is about, or every one when membership or keys change.
func (a *accessIndex) onEntry(e *ledger.Entry) {
	if rec, ok := ledger.RecordOf(e); ok {
		if e.Type == ledger.TypeAccess || e.Type == ledger.TypeServed {
			return // reads change nobody's rights
		}
		a.mu.Lock()
		delete(a.policies, rec)
		a.mu.Unlock()
		return
	}
	switch e.Type {
	case ledger.TypeMemberAdd, ledger.TypeMemberRemove, ledger.TypeKeyAnnounce:
		a.mu.Lock()
		clear(a.policies)
		a.mu.Unlock()
	}
}

// policy returns record rec's access policy now, from the cache while it
// holds.
func (a *accessIndex) policy(rec cid.Cid) (access.Record, bool) {
	now := a.d.opts.Now()
	a.mu.RLock()
	rp, ok := a.policies[rec]
	a.mu.RUnlock()
	if ok && !rp.Stale(now) {
		return rp, true
	}
	rp, ok = access.Evaluate(a.d.Ledger, rec, now)
	if !ok {
		return rp, false
	}
	a.mu.Lock()
	a.policies[rec] = rp
	a.mu.Unlock()
	return rp, true
}

// decide applies the policy to a request of block c by peer p.
func (a *accessIndex) decide(p peer.ID, c cid.Cid) (cid.Cid, access.Decision) {
	rec, ok := a.recordOf(c)
	if !ok {
		// Every block this node stores for a record is indexed before it
		// arrives (add, Open, replication), and ledger entries travel over
		// the ledger's own sync protocol. A block of no known record is
		// refused: serving it would bypass the rules for the record it
		// belongs to.
		return cid.Undef, access.Decision{}
	}
	rp, ok := a.policy(rec)
	if !ok {
		return rec, access.Decision{}
	}
	return rec, rp.Decide(p)
}

// allow is the block filter of bitswap and the bulk protocol.
func (a *accessIndex) allow(p peer.ID, c cid.Cid) bool {
	rec, d := a.decide(p, c)
	if d.Allowed() {
		return true
	}
	if rec.Defined() {
		// (Blocks of no known record are not counted: peers broadcast
		// wants for blocks this node does not have at all.)
		a.d.m.refused.Inc()
	}
	return false
}

// served hears of every block this node sent (p2p.Config.Served): blocks a
// grantee fetched are counted for the read attestations.
func (a *accessIndex) served(p peer.ID, c cid.Cid) {
	rec, d := a.decide(p, c)
	if d.Role != access.Grantee || d.Grant == nil {
		return // the owner, a holder placing a replica, or refused
	}
	a.d.attest.count(rec, p, d.Grant.Entry, c == rec, a.d.opts.Now())
}

// readGrants lists this node's live grants of a record, best first.
func (d *Daemon) readGrants(rec cid.Cid, now time.Time) []ledger.Grant {
	return access.ReadGrants(d.Ledger, rec, d.self, now)
}

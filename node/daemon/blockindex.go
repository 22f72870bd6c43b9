package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore/query"
)

// The records service's side of node/replication.Records and
// node/gc.Records: the block index and the records this node owns. They
// move to node/records with the block index; keep the names and
// signatures.

// AddBlocks indexes bs as blocks of record rec.
func (d *Daemon) AddBlocks(ctx context.Context, rec cid.Cid, bs []cid.Cid) {
	d.access.addBlocks(ctx, rec, bs)
}

// RecordOf returns the record block b belongs to.
func (d *Daemon) RecordOf(b cid.Cid) (cid.Cid, bool) { return d.access.recordOf(b) }

// BlocksOf lists the indexed blocks of record rec.
func (d *Daemon) BlocksOf(rec cid.Cid) []cid.Cid {
	var out []cid.Cid
	d.access.mu.RLock()
	defer d.access.mu.RUnlock()
	for b, r := range d.access.blocks {
		if r == rec {
			out = append(out, b)
		}
	}
	return out
}

// IndexedBlocks returns a copy of the block index (block -> record).
func (d *Daemon) IndexedBlocks() map[cid.Cid]cid.Cid {
	d.access.mu.RLock()
	defer d.access.mu.RUnlock()
	idx := make(map[cid.Cid]cid.Cid, len(d.access.blocks))
	for b, rec := range d.access.blocks {
		idx[b] = rec
	}
	return idx
}

// Unindex drops a removed block's entry from the block index.
func (d *Daemon) Unindex(ctx context.Context, b cid.Cid) error {
	d.access.mu.Lock()
	_, ok := d.access.blocks[b]
	delete(d.access.blocks, b)
	d.access.mu.Unlock()
	if !ok {
		return nil
	}
	return d.local.Delete(ctx, blockIdxPrefix.ChildString(b.String()))
}

// Forget removes what an add stored about a record besides its blocks:
// its wrapped key and block index entries. gc calls it for a record that
// never reached the ledger (a failed or interrupted add).
func (d *Daemon) Forget(ctx context.Context, rec cid.Cid) error {
	if err := d.local.Delete(ctx, keyKey(rec)); err != nil {
		return err
	}
	var stale []cid.Cid
	d.access.mu.Lock()
	for b, r := range d.access.blocks {
		if r == rec {
			stale = append(stale, b)
			delete(d.access.blocks, b)
		}
	}
	d.access.mu.Unlock()
	for _, b := range stale {
		if err := d.local.Delete(ctx, blockIdxPrefix.ChildString(b.String())); err != nil {
			return err
		}
	}
	return nil
}

// Owns reports whether this node owns rec, or is adding it (its wrapped
// key is stored before its blocks are indexed).
func (d *Daemon) Owns(ctx context.Context, rec cid.Cid) bool {
	if info, ok := d.Ledger.Record(rec); ok && info.Owner == d.self {
		return true
	}
	has, _ := d.local.Has(ctx, keyKey(rec))
	return has
}

// Owned lists the records whose keys this node stores: those it owns, and
// one it is adding.
func (d *Daemon) Owned(ctx context.Context) ([]cid.Cid, error) {
	res, err := d.local.Query(ctx, query.Query{Prefix: "/keys", KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list owned records: %w", err)
	}
	defer res.Close()
	var out []cid.Cid
	for e := range res.Next() {
		if e.Error != nil {
			return out, fmt.Errorf("list owned records: %w", e.Error)
		}
		if c, err := cid.Decode(strings.TrimPrefix(e.Key, "/keys/")); err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// indexKey holds the version of the /i/ indexes a store has; every batch
// writes the current one.
const indexKey = "/c/index"

// indexVersion 1: /i/own values carry the record's listing row (ownedRow)
// and /i/oh/<owner>/<record>/<holder> indexes the holders of each owner's
// records.
const indexVersion = 1

// upgradeIndexes builds the indexes of indexVersion from the state of a
// store written before them, once, at open. The state (/s/) and the digest
// do not change: indexes are derived from it.
func (c *Core) upgradeIndexes(ctx context.Context) error {
	if len(c.heads) == 0 {
		return nil // empty: the genesis batch writes the version
	}
	v, ok, err := c.store.Get(ctx, indexKey)
	if err != nil {
		return err
	}
	if ok && len(v) == 1 && v[0] >= indexVersion {
		return nil
	}
	var puts []kv
	owners := map[string]peer.ID{} // record ID string -> owner
	owner := func(rec string) (peer.ID, bool, error) {
		if o, ok := owners[rec]; ok {
			return o, o != "", nil
		}
		id, err := cid.Decode(rec)
		if err != nil {
			return "", false, corrupt("receipt of record "+rec, err)
		}
		r, ok, err := c.State().Record(ctx, id)
		if err != nil {
			return "", false, err
		}
		owners[rec] = r.Owner
		return r.Owner, ok, nil
	}
	// Holders by owner, from each holder's latest receipt.
	var ferr error
	err = c.store.Scan(ctx, pState+"rc/", false, func(k string, b []byte) bool {
		var s receiptStored
		if err := decMode.Unmarshal(b, &s); err != nil {
			ferr = corrupt(k, err)
			return false
		}
		if s.Receipt.Status != replication.StatusHeld {
			return true
		}
		rec, err := cid.Cast(s.Receipt.Record)
		if err != nil {
			ferr = corrupt(k, err)
			return false
		}
		h, err := peer.IDFromBytes(s.Holder)
		if err != nil {
			ferr = corrupt(k, err)
			return false
		}
		o, known, err := owner(rec.String())
		if err != nil {
			ferr = err
			return false
		}
		if known {
			puts = append(puts, kv{ownerHeldKey(o, rec, h), nil})
		}
		return true
	})
	if err := errors.Join(err, ferr); err != nil {
		return fmt.Errorf("ledger: upgrade indexes: %w", err)
	}
	// Listing rows of owned records.
	var keys []string
	err = c.store.Scan(ctx, pIdx+"own/", false, func(k string, b []byte) bool {
		if len(b) == 0 {
			keys = append(keys, k)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("ledger: upgrade indexes: %w", err)
	}
	for _, k := range keys {
		id, err := cid.Decode(lastSeg(k))
		if err != nil {
			return fmt.Errorf("ledger: upgrade indexes: %w", corrupt(k, err))
		}
		var w recordWire
		ok, err := c.State().get(ctx, pState+"r/"+id.String(), &w)
		if err != nil {
			return fmt.Errorf("ledger: upgrade indexes: %w", err)
		}
		if !ok {
			continue
		}
		row := ownedRowOf(&w)
		b, err := encMode.Marshal(&row)
		if err != nil {
			return err
		}
		puts = append(puts, kv{k, b})
	}
	puts = append(puts, kv{indexKey, []byte{indexVersion}})
	for len(puts) > 0 {
		n := min(len(puts), 10000)
		b, err := c.store.Batch(ctx)
		if err != nil {
			return fmt.Errorf("ledger: upgrade indexes: %w", err)
		}
		for _, p := range puts[:n] {
			if err := b.Put(p.Key, p.Value); err != nil {
				return fmt.Errorf("ledger: upgrade indexes: %w", err)
			}
		}
		if err := b.Commit(ctx); err != nil {
			return fmt.Errorf("ledger: upgrade indexes: %w", err)
		}
		puts = puts[n:]
	}
	return nil
}

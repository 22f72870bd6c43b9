package ledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	dsq "github.com/ipfs/go-datastore/query"
)

// EachEntry calls fn with the CID of every applied entry, in no particular
// order, and stops at fn's first error. Each applied entry is a block in
// Options.Blocks: a collector of unreferenced blocks keeps these. (An entry
// is stored as a block just before it is recorded as applied, so a block
// may be an entry that this does not list yet; such a collector also keeps
// any block that DecodeEntry accepts.)
func (l *Ledger) EachEntry(ctx context.Context, fn func(cid.Cid) error) error {
	res, err := l.ds.Query(ctx, dsq.Query{Prefix: strings.TrimSuffix(pMeta, "/"), KeysOnly: true})
	if err != nil {
		return fmt.Errorf("ledger: list entries: %w", err)
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return fmt.Errorf("ledger: list entries: %w", r.Error)
		}
		c, err := cid.Decode(lastSeg(r.Key))
		if err != nil {
			return fmt.Errorf("ledger: entry key %q: %w", r.Key, err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

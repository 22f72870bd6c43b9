package console

import (
	"context"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// maxNames bounds the name cache (it is cleared when full).
const maxNames = 4096

// names caches what records are called, as the records service's Label
// tells (the owner's manifest, a grantee's sealed label): a record
// version's name never changes, and a label costs a key unwrap. A grantee
// keeps a name it was shown once its grant is revoked.
type names struct {
	rec Records
	mu  sync.Mutex
	m   map[cid.Cid]access.Label
}

func newNames(rec Records) *names { return &names{rec: rec, m: map[cid.Cid]access.Label{}} }

// label returns a record version's label, if this node may know it.
func (n *names) label(ctx context.Context, info ledger.RecordInfo) (access.Label, bool) {
	n.mu.Lock()
	l, ok := n.m[info.ID]
	n.mu.Unlock()
	if ok {
		return l, true
	}
	l, ok = n.rec.Label(ctx, info)
	if !ok {
		return l, false
	}
	n.mu.Lock()
	if len(n.m) >= maxNames {
		clear(n.m)
	}
	n.m[info.ID] = l
	n.mu.Unlock()
	return l, true
}

// learn remembers a name a read revealed (the manifest a download opened).
func (n *names) learn(id cid.Cid, l access.Label) {
	n.mu.Lock()
	if len(n.m) >= maxNames {
		clear(n.m)
	}
	n.m[id] = l
	n.mu.Unlock()
}

// of returns a record version's name, "" if unknown.
func (n *names) of(ctx context.Context, info ledger.RecordInfo) string {
	l, _ := n.label(ctx, info)
	return l.Name
}

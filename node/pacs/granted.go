package pacs

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Studies granted to this node: a node that is a DICOM AE (dicom.listen
// set) keeps the imaging records other clinics granted it in its index, so
// that its PACS users find them with C-FIND and pull them with C-MOVE or
// C-GET like the node's own. Indexing reads the study's metadata (the
// record's manifest: patient, study, series and instance attributes, no
// pixel data) under the grant, which is claimed on the ledger with the
// grant's purpose, so the owner's audit shows it. A revoked grant removes
// the study from the index; a new version granted replaces the old one.
// Work follows grant and revoke entries that name this node (not other
// nodes' grants, nor records announced: issue #16); at start, the records
// granted to this node (the ledger's grantee index).

const grantRetry = time.Minute

type grants struct {
	s    *Service
	mu   sync.Mutex
	todo map[cid.Cid]time.Time // records to reconcile, not before
	all  bool                  // look at every imaging record (start)
	wake chan struct{}
}

func newGrants(s *Service) *grants {
	return &grants{s: s, todo: map[cid.Cid]time.Time{}, all: true, wake: make(chan struct{}, 1)}
}

func (g *grants) onEntry(e *ledger.Entry) {
	if e.Type == ledger.TypeStateLoaded { // grants loaded from a checkpoint
		g.mu.Lock()
		g.all = true
		g.mu.Unlock()
		select {
		case g.wake <- struct{}{}:
		default:
		}
		return
	}
	// Only a grant or revoke naming this node changes what reconcile keeps
	// (the newest version of a chain with a live grant to it): a new
	// version's announcement changes nothing until it is granted, and
	// entries about other nodes' grants are none of this node's work.
	var rec cid.Cid
	switch e.Type {
	case ledger.TypeGrant:
		gr, ok := ledger.GrantOf(e)
		if !ok || gr.Grantee != g.s.cfg.Self {
			return
		}
		rec = gr.Record
	case ledger.TypeRevoke:
		rv, ok := ledger.RevokeOf(e)
		if !ok || rv.Grantee != g.s.cfg.Self {
			return
		}
		rec = rv.Record
	default:
		return
	}
	g.mu.Lock()
	g.todo[rec] = time.Time{}
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *grants) run(ctx context.Context) {
	t := time.NewTicker(grantRetry)
	defer t.Stop()
	for {
		g.mu.Lock()
		if g.all {
			g.all = false
			ids, err := g.s.led.GrantedIDs(ctx, g.s.cfg.Self)
			if err != nil {
				g.s.log.Warn("dicom: list the records granted to this node; trying again later", "err", err)
				g.all = true
			}
			for _, id := range ids {
				r, ok := g.s.led.Record(id)
				if ok && r.Class == ledger.ClassImaging && r.Owner != g.s.cfg.Self {
					if _, ok := g.todo[r.ID]; !ok {
						g.todo[r.ID] = time.Time{}
					}
				}
			}
		}
		now := time.Now()
		var due []cid.Cid
		for id, at := range g.todo {
			if !at.After(now) {
				due = append(due, id)
				delete(g.todo, id)
			}
		}
		if len(g.todo) == 0 && len(due) > 64 {
			g.todo = map[cid.Cid]time.Time{} // a map keeps its grown buckets
		}
		g.mu.Unlock()
		for _, id := range due {
			if ctx.Err() != nil {
				return
			}
			err := g.reconcile(ctx, id)
			if fault.Is(err, fault.Invalid) || fault.Is(err, fault.Forbidden) || fault.Is(err, fault.NotFound) {
				// not a DICOM study, or no longer readable: nothing to index
				g.s.log.Info("dicom: granted imaging record not indexed", "record", id, "err", err)
				continue
			}
			if err != nil {
				g.s.log.Warn("dicom: index a study granted to this node; trying again later", "record", id, "in", grantRetry, "err", err)
				g.mu.Lock()
				g.todo[id] = time.Now().Add(grantRetry)
				g.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		case <-t.C:
		}
	}
}

// reconcile makes the index hold the newest version of rec's chain that
// is granted to this node now, and no other version of it.
func (g *grants) reconcile(ctx context.Context, rec cid.Cid) error {
	info, ok := g.s.led.Record(rec)
	if !ok || info.Owner == g.s.cfg.Self || info.Class != ledger.ClassImaging {
		return nil
	}
	chain := g.s.led.Versions(rec)
	if len(chain) == 0 {
		chain = []ledger.RecordInfo{info}
	}
	now := time.Now()
	var newest *ledger.RecordInfo
	for i := range chain {
		for _, gr := range g.s.led.Grants(chain[i].ID) {
			if gr.Grantee == g.s.cfg.Self && gr.LiveAt(now) && (newest == nil || chain[i].Version > newest.Version) {
				newest = &chain[i]
			}
		}
	}
	keep := cid.Undef
	if newest != nil {
		have, err := g.s.img.Indexed(ctx, newest.ID)
		if err != nil {
			return err
		}
		keep = newest.ID
		if !have {
			if keep, err = g.s.img.IndexGranted(ctx, newest.ID); err != nil {
				return err
			}
			g.s.log.Info("dicom: indexed a study granted to this node", "record", keep)
		}
	}
	for _, v := range chain {
		if v.ID == keep {
			continue
		}
		if have, err := g.s.img.Indexed(ctx, v.ID); err == nil && have {
			if err := g.s.img.Unindex(ctx, v.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

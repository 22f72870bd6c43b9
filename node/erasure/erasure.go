// Package erasure is the erasure service: `medmesh delete` (an owner's
// record.erase entry, sharing/erasure) and what every node does when a
// record version is erased: it stops serving and reading it at once (the
// other services see the ledger through Hide, where an erased version does
// not exist), and deletes what it keeps of it: its blocks (an owner's or a
// holder's), its wrapped key and block index entries (node/records), its
// pin (node/replication) and its rows in the DICOM index (node/imaging).
// At start it finishes what a crash interrupted.
package erasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/erasure"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Ledger is what the service reads and appends (*ledger.Ledger).
type Ledger interface {
	Record(id cid.Cid) (ledger.RecordInfo, bool)
	Records() []ledger.RecordInfo
	Versions(id cid.Cid) []ledger.RecordInfo
	Ext(typ, prefix string) ([]ledger.ExtRow, error)
	Subscribe() (<-chan *ledger.Entry, func())
	Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error)
}

// Blocks is the blockstore.
type Blocks interface {
	DeleteBlock(ctx context.Context, c cid.Cid) error
}

// Records is what the service asks of the records service.
type Records interface {
	// BlocksOf lists the indexed blocks of a record version.
	BlocksOf(rec cid.Cid) []cid.Cid
	// Forget removes its wrapped key and block index entries.
	Forget(ctx context.Context, rec cid.Cid) error
}

// Pins is the replication pinset.
type Pins interface {
	Unpin(ctx context.Context, rec cid.Cid) error
}

// Imaging drops a record's studies from the DICOM index.
type Imaging interface {
	Unindex(ctx context.Context, id cid.Cid) error
}

// Config is what the service needs; Imaging may be set after New (the
// imaging service is built over the records service, which reads the
// ledger through Hide).
type Config struct {
	Self    peer.ID
	Ledger  Ledger
	Blocks  Blocks
	Records Records
	Pins    Pins
	// Reclaim, when set, gives back the disk space of deleted blocks
	// (storage/blockstore.Store.Reclaim: badger's value-log GC).
	Reclaim func(ctx context.Context) error
	Now     func() time.Time
	Logger  *slog.Logger
}

// Service is the erasure service.
type Service struct {
	cfg     Config
	log     *slog.Logger
	imaging Imaging

	mu     sync.RWMutex
	erased map[cid.Cid]bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New loads the erased record versions from the ledger.
func New(c Config) (*Service, error) {
	if c.Ledger == nil || c.Blocks == nil || c.Pins == nil {
		return nil, errors.New("erasure: Config needs Ledger, Blocks and Pins")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	ids, err := erasure.Erased(c.Ledger)
	if err != nil {
		return nil, fmt.Errorf("erasure: load the erased records: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: c, log: c.Logger, erased: map[cid.Cid]bool{}, ctx: ctx, cancel: cancel}
	for _, id := range ids {
		s.erased[id] = true
	}
	return s, nil
}

// Start purges what this node still keeps of erased versions and follows
// the ledger for new erasures. records and imaging are the services
// built over Hide.
func (s *Service) Start(records Records, imaging Imaging) {
	s.cfg.Records, s.imaging = records, imaging
	ch, unsubscribe := s.cfg.Ledger.Subscribe()
	s.wg.Go(func() {
		defer unsubscribe()
		// Subscribed first: an erasure applied meanwhile is not missed.
		for _, id := range s.list() {
			s.purge(id)
		}
		for {
			select {
			case <-s.ctx.Done():
				return
			case e, ok := <-ch:
				if !ok {
					return
				}
				if e.Type == ledger.TypeStateLoaded {
					s.reload() // erasures loaded from a checkpoint
					continue
				}
				if e.Type != erasure.Type {
					continue
				}
				p, err := erasure.Decode(e)
				if err != nil {
					s.log.Error("an applied record.erase does not decode", "entry", e.CID(), "err", err)
					continue
				}
				for _, b := range p.Records {
					id, err := cid.Cast(b)
					if err != nil {
						continue
					}
					s.mu.Lock()
					s.erased[id] = true
					s.mu.Unlock()
					s.purge(id)
				}
			}
		}
	})
}

// reload reads the erased versions from the ledger again and carries out
// those this node did not know of: erasures that arrived in state loaded
// from a checkpoint, not as entries.
func (s *Service) reload() {
	ids, err := erasure.Erased(s.cfg.Ledger)
	if err != nil {
		s.log.Error("erasure: read the erased records after the ledger loaded a checkpoint; they are carried out at the next start", "err", err)
		return
	}
	for _, id := range ids {
		s.mu.Lock()
		known := s.erased[id]
		s.erased[id] = true
		s.mu.Unlock()
		if !known {
			s.purge(id)
		}
	}
}

// Close stops following the ledger.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Service) list() []cid.Cid {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]cid.Cid, 0, len(s.erased))
	for id := range s.erased {
		out = append(out, id)
	}
	return out
}

// Erased reports whether record version id was erased.
func (s *Service) Erased(id cid.Cid) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.erased[id]
}

// purge deletes what this node keeps of an erased version. Idempotent.
func (s *Service) purge(id cid.Cid) {
	ctx := s.ctx
	info, _ := s.cfg.Ledger.Record(id)
	todo := append(s.cfg.Records.BlocksOf(id), id)
	if info.Blocklist.Defined() {
		todo = append(todo, info.Blocklist)
	}
	if err := s.cfg.Pins.Unpin(ctx, id); err != nil {
		s.log.Warn("erasure: unpin", "record", id, "err", err)
	}
	n := 0
	for _, b := range todo {
		err := s.cfg.Blocks.DeleteBlock(ctx, b)
		switch {
		case err == nil:
			n++
		case ipld.IsNotFound(err):
		default:
			s.log.Error("erasure: delete a block", "record", id, "block", b, "err", err)
		}
	}
	if err := s.cfg.Records.Forget(ctx, id); err != nil {
		s.log.Error("erasure: forget the record's key and block index", "record", id, "err", err)
	}
	if s.imaging != nil {
		if err := s.imaging.Unindex(ctx, id); err != nil {
			s.log.Error("erasure: drop the record from the DICOM index", "record", id, "err", err)
		}
	}
	if n > 0 {
		s.log.Info("erased a record version: its blocks are deleted", "record", id, "blocks", n)
		if s.cfg.Reclaim != nil {
			if err := s.cfg.Reclaim(ctx); err != nil {
				s.log.Warn("erasure: reclaim the deleted blocks' space", "err", err)
			}
		}
	}
}

// Erase erases a record this node owns: every version (version 0), or
// one. It returns the versions erased and the entry.
func (s *Service) Erase(ctx context.Context, id cid.Cid, version int) (*api.DeleteResult, error) {
	if version < 0 {
		return nil, fault.Invalidf("versions are numbered from 1", "bad version %d", version)
	}
	info, ok := s.cfg.Ledger.Record(id)
	if !ok {
		if s.Erased(id) {
			return nil, fault.Conflictf("", "record %s is already erased", id)
		}
		return nil, fault.NotFoundf("check the record ID", "unknown record %s", id)
	}
	if info.Owner != s.cfg.Self {
		return nil, fault.Forbiddenf("only the record's owner can erase it", "record %s belongs to %s", id, info.Owner)
	}
	var ids []cid.Cid
	res := &api.DeleteResult{ID: id.String(), Versions: []int{}, Erased: []string{}}
	for _, v := range s.cfg.Ledger.Versions(id) {
		if v.Owner != s.cfg.Self || (version > 0 && int(v.Version) != version) || s.Erased(v.ID) {
			continue
		}
		ids = append(ids, v.ID)
		res.Versions = append(res.Versions, int(v.Version))
		res.Erased = append(res.Erased, v.ID.String())
	}
	if len(ids) == 0 {
		if version == 0 {
			return nil, fault.Conflictf("", "every version of record %s is already erased", id)
		}
		return nil, fault.NotFoundf("`medmesh ls` shows the versions", "record %s has no version %d left to erase", id, version)
	}
	if len(ids) > erasure.MaxVersions {
		return nil, fault.TooLargef("erase versions in batches with --version", "record %s has %d versions, at most %d are erased at once", id, len(ids), erasure.MaxVersions)
	}
	e, err := s.cfg.Ledger.Append(ctx, erasure.Type, erasure.NewPayload(ids))
	if err != nil {
		return nil, fmt.Errorf("sign the erasure: %w", err)
	}
	res.Entry = e.CID().String()
	res.Time = s.cfg.Now().UTC()
	return res, nil
}

// Hide is the ledger as the other services see it: erased record versions
// do not exist there (no read, no serving, no placement, no listing).
type Hide struct {
	*ledger.Ledger
	S *Service
}

// Record implements the services' Ledger.
func (h Hide) Record(id cid.Cid) (ledger.RecordInfo, bool) {
	if h.S.Erased(id) {
		return ledger.RecordInfo{}, false
	}
	return h.Ledger.Record(id)
}

// Records implements the services' Ledger.
func (h Hide) Records() []ledger.RecordInfo {
	all := h.Ledger.Records()
	out := all[:0]
	for _, r := range all {
		if !h.S.Erased(r.ID) {
			out = append(out, r)
		}
	}
	return out
}

// OwnedRecords implements the services' Ledger.
func (h Hide) OwnedRecords(ctx context.Context, p peer.ID) ([]ledger.RecordInfo, error) {
	all, err := h.Ledger.OwnedRecords(ctx, p)
	out := all[:0]
	for _, r := range all {
		if !h.S.Erased(r.ID) {
			out = append(out, r)
		}
	}
	return out, err
}

// OwnedListing implements the services' Ledger.
func (h Hide) OwnedListing(ctx context.Context, p peer.ID) ([]ledger.Listing, error) {
	all, err := h.Ledger.OwnedListing(ctx, p)
	out := all[:0]
	for _, r := range all {
		if !h.S.Erased(r.ID) {
			out = append(out, r)
		}
	}
	return out, err
}

// Versions implements the services' Ledger.
func (h Hide) Versions(id cid.Cid) []ledger.RecordInfo {
	all := h.Ledger.Versions(id)
	out := all[:0]
	for _, r := range all {
		if !h.S.Erased(r.ID) {
			out = append(out, r)
		}
	}
	return out
}

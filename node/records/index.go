package records

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Local datastore keys.
var (
	// blockIdxPrefix maps a block to its record: /blockidx/<block> = record.
	blockIdxPrefix = datastore.NewKey("/blockidx")
	// keysPrefix holds the owner's wrapped key of each record it owns or
	// is adding: /keys/<record> = envelope.
	keysPrefix = datastore.NewKey("/keys")
	// hiddenPrefix marks the records this node keeps for itself, which
	// `ls` does not list (AddRequest.Hidden): /hidden/<record>.
	hiddenPrefix = datastore.NewKey("/hidden")
)

func keyKey(id cid.Cid) datastore.Key { return keysPrefix.ChildString(id.String()) }

// blockIndex maps block CIDs to the record they belong to, and applies the
// access policy (sharing/access) to every block request: a block is served
// only to a peer the policy allows for its record. Decisions are cached per
// record and dropped when an entry about that record arrives (or, for
// membership, all of them), or when a grant expires.
type blockIndex struct {
	s  *Service
	mu sync.RWMutex
	// block -> record
	blocks map[cid.Cid]cid.Cid
	// record -> how many of its blocks are in blocks: the records with
	// blocks in the index, without a walk of every block (`ls`)
	counts map[cid.Cid]int
	// record -> its policy now (cached)
	policies map[cid.Cid]access.Record
}

func newBlockIndex(s *Service) *blockIndex {
	return &blockIndex{s: s, blocks: map[cid.Cid]cid.Cid{}, counts: map[cid.Cid]int{}, policies: map[cid.Cid]access.Record{}}
}

// set indexes block b as rec's; x.mu is held.
func (x *blockIndex) set(b, rec cid.Cid) {
	if old, ok := x.blocks[b]; ok {
		x.uncount(old)
	}
	x.blocks[b] = rec
	x.counts[rec]++
}

// unset drops block b from the index; x.mu is held. It reports whether b
// was indexed.
func (x *blockIndex) unset(b cid.Cid) bool {
	rec, ok := x.blocks[b]
	if ok {
		delete(x.blocks, b)
		x.uncount(rec)
	}
	return ok
}

func (x *blockIndex) uncount(rec cid.Cid) {
	if x.counts[rec]--; x.counts[rec] <= 0 {
		delete(x.counts, rec)
	}
}

// load reads the persisted block index.
func (x *blockIndex) load(ctx context.Context) error {
	res, err := x.s.local.Query(ctx, query.Query{Prefix: blockIdxPrefix.String()})
	if err != nil {
		return fmt.Errorf("load the block index: %w", err)
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return fmt.Errorf("load the block index: %w", r.Error)
		}
		b, err := cid.Decode(strings.TrimPrefix(r.Key, blockIdxPrefix.String()+"/"))
		if err != nil {
			continue
		}
		rec, err := cid.Cast(r.Value)
		if err != nil {
			continue
		}
		x.set(b, rec)
	}
	return nil
}

// AddBlocks indexes bs as blocks of record rec. Every block this node
// stores for a record is indexed before it arrives (add, OpenFor,
// replication): the block filter refuses blocks of no known record.
func (s *Service) AddBlocks(ctx context.Context, rec cid.Cid, bs []cid.Cid) {
	x := s.index
	batch, err := s.local.Batch(ctx)
	if err != nil {
		s.log.Warn("block index", "err", err)
		return
	}
	x.mu.Lock()
	for _, b := range bs {
		if old, ok := x.blocks[b]; ok && old == rec {
			continue
		}
		x.set(b, rec)
		batch.Put(ctx, blockIdxPrefix.ChildString(b.String()), rec.Bytes())
	}
	x.mu.Unlock()
	if err := batch.Commit(ctx); err != nil {
		s.log.Warn("block index", "err", err)
	}
}

// RecordOf returns the record block b belongs to.
func (s *Service) RecordOf(b cid.Cid) (cid.Cid, bool) {
	s.index.mu.RLock()
	defer s.index.mu.RUnlock()
	r, ok := s.index.blocks[b]
	return r, ok
}

// BlocksOf lists the indexed blocks of record rec.
func (s *Service) BlocksOf(rec cid.Cid) []cid.Cid {
	s.index.mu.RLock()
	defer s.index.mu.RUnlock()
	var out []cid.Cid
	for b, r := range s.index.blocks {
		if r == rec {
			out = append(out, b)
		}
	}
	return out
}

// records returns the records that have blocks in the index.
func (x *blockIndex) records() []cid.Cid {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]cid.Cid, 0, len(x.counts))
	for r := range x.counts {
		out = append(out, r)
	}
	return out
}

// IndexedBlocks returns a copy of the block index (block -> record).
func (s *Service) IndexedBlocks() map[cid.Cid]cid.Cid {
	s.index.mu.RLock()
	defer s.index.mu.RUnlock()
	out := make(map[cid.Cid]cid.Cid, len(s.index.blocks))
	for b, r := range s.index.blocks {
		out[b] = r
	}
	return out
}

// Unindex drops a removed block's entry from the block index.
func (s *Service) Unindex(ctx context.Context, b cid.Cid) error {
	s.index.mu.Lock()
	ok := s.index.unset(b)
	s.index.mu.Unlock()
	if !ok {
		return nil
	}
	if err := s.local.Delete(ctx, blockIdxPrefix.ChildString(b.String())); err != nil {
		return fmt.Errorf("block index: %w", err)
	}
	return nil
}

// Forget removes what an add stored about a record besides its blocks:
// its wrapped key and block index entries. The garbage collector calls it
// for a record that never reached the ledger (a failed or interrupted
// add).
func (s *Service) Forget(ctx context.Context, rec cid.Cid) error {
	if err := s.local.Delete(ctx, keyKey(rec)); err != nil {
		return fmt.Errorf("forget the key of record %s: %w", rec, err)
	}
	var stale []cid.Cid
	s.index.mu.Lock()
	for b, r := range s.index.blocks {
		if r == rec {
			stale = append(stale, b)
		}
	}
	for _, b := range stale {
		s.index.unset(b)
	}
	s.index.mu.Unlock()
	for _, b := range stale {
		if err := s.local.Delete(ctx, blockIdxPrefix.ChildString(b.String())); err != nil {
			return fmt.Errorf("block index: %w", err)
		}
	}
	return nil
}

// Owns reports whether this node owns rec, or is adding it (its wrapped
// key is stored before its blocks are indexed).
func (s *Service) Owns(ctx context.Context, rec cid.Cid) bool {
	if info, ok := s.ledger.Record(rec); ok && info.Owner == s.self {
		return true
	}
	has, _ := s.local.Has(ctx, keyKey(rec))
	return has
}

// RestoreOwnedKeys writes back the local key rows of the records this node
// owns on the ledger (their owner envelopes, which the ledger carries), as
// after a restore from a backup that held the node's keys but not its
// datastore. It reports how many it wrote.
func (s *Service) RestoreOwnedKeys(ctx context.Context) (int, error) {
	n := 0
	owned, err := s.ledger.OwnedRecords(ctx, s.self)
	if err != nil {
		return 0, fmt.Errorf("restore owned keys: %w", err)
	}
	for _, r := range owned {
		if len(r.OwnerEnvelope) == 0 {
			continue
		}
		has, err := s.local.Has(ctx, keyKey(r.ID))
		if err != nil {
			return n, fmt.Errorf("restore owned keys: %w", err)
		}
		if has {
			continue
		}
		if err := s.local.Put(ctx, keyKey(r.ID), r.OwnerEnvelope); err != nil {
			return n, fmt.Errorf("restore owned keys: %w", err)
		}
		n++
	}
	return n, nil
}

// Hide keeps an owned record out of List (a record found again after a
// restore, whose hidden mark the backup did not hold).
func (s *Service) Hide(ctx context.Context, id cid.Cid) error {
	if err := s.local.Put(ctx, hiddenPrefix.ChildString(id.String()), nil); err != nil {
		return fmt.Errorf("hide record %s: %w", id, err)
	}
	return nil
}

// Hidden lists the records List leaves out.
func (s *Service) Hidden(ctx context.Context) (map[cid.Cid]bool, error) {
	res, err := s.local.Query(ctx, query.Query{Prefix: hiddenPrefix.String(), KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list hidden records: %w", err)
	}
	defer res.Close()
	out := map[cid.Cid]bool{}
	for e := range res.Next() {
		if e.Error != nil {
			return out, fmt.Errorf("list hidden records: %w", e.Error)
		}
		if c, err := cid.Decode(strings.TrimPrefix(e.Key, hiddenPrefix.String()+"/")); err == nil {
			out[c] = true
		}
	}
	return out, nil
}

// Owned lists the records whose keys this node stores: those it owns, and
// any it is adding.
func (s *Service) Owned(ctx context.Context) ([]cid.Cid, error) {
	res, err := s.local.Query(ctx, query.Query{Prefix: keysPrefix.String(), KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list owned records: %w", err)
	}
	defer res.Close()
	var out []cid.Cid
	for e := range res.Next() {
		if e.Error != nil {
			return out, fmt.Errorf("list owned records: %w", e.Error)
		}
		if c, err := cid.Decode(strings.TrimPrefix(e.Key, keysPrefix.String()+"/")); err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// onEntry drops cached decisions an entry may change: those of the record
// it is about, or every one when membership or keys change.
func (x *blockIndex) onEntry(e *ledger.Entry) {
	if rec, ok := ledger.RecordOf(e); ok {
		if e.Type == ledger.TypeAccess || e.Type == ledger.TypeServed {
			return // reads change nobody's rights
		}
		x.mu.Lock()
		delete(x.policies, rec)
		x.mu.Unlock()
		return
	}
	switch e.Type {
	case ledger.TypeMemberAdd, ledger.TypeMemberRemove, ledger.TypeKeyAnnounce, ledger.TypeStateLoaded:
		x.mu.Lock()
		clear(x.policies)
		x.mu.Unlock()
	}
}

// policy returns record rec's access policy now, from the cache while it
// holds.
func (x *blockIndex) policy(rec cid.Cid) (access.Record, bool) {
	now := x.s.cfg.Now()
	x.mu.RLock()
	rp, ok := x.policies[rec]
	x.mu.RUnlock()
	if ok && !rp.Stale(now) {
		return rp, true
	}
	rp, ok = access.Evaluate(x.s.ledger, rec, now)
	if !ok {
		return rp, false
	}
	x.mu.Lock()
	x.policies[rec] = rp
	x.mu.Unlock()
	return rp, true
}

// decide applies the policy to a request of block c by peer p.
func (x *blockIndex) decide(p peer.ID, c cid.Cid) (cid.Cid, access.Decision) {
	rec, ok := x.s.RecordOf(c)
	if !ok {
		// Every block this node stores for a record is indexed before it
		// arrives (add, OpenFor, replication), and ledger entries travel
		// over the ledger's own sync protocol. A block of no known
		// record is refused: serving it would bypass the rules for the
		// record it belongs to.
		return cid.Undef, access.Decision{}
	}
	rp, ok := x.policy(rec)
	if !ok {
		return rec, access.Decision{}
	}
	return rec, rp.Decide(p)
}

// Allow is the block filter of bitswap and the bulk protocol
// (p2p.Config.BlockFilter): it says whether peer p may receive block c.
func (s *Service) Allow(p peer.ID, c cid.Cid) bool {
	rec, d := s.index.decide(p, c)
	if d.Allowed() {
		return true
	}
	if rec.Defined() {
		// (Blocks of no known record are not counted: peers broadcast
		// wants for blocks this node does not have at all.)
		s.m.refused.Inc()
	}
	return false
}

// Served hears of every block this node sent (p2p.Config.Served): blocks
// a grantee fetched are counted for the read attestations.
func (s *Service) Served(p peer.ID, c cid.Cid) {
	rec, d := s.index.decide(p, c)
	if d.Role != access.Grantee || d.Grant == nil {
		return // the owner, a holder placing a replica, or refused
	}
	s.attest.count(rec, p, d.Grant.Entry, c == rec, s.cfg.Now())
}

package records

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// LatestVersion follows the version chain of id to its newest version.
func (s *Service) LatestVersion(id cid.Cid) ledger.RecordInfo {
	best, _ := s.ledger.Record(id)
	for _, v := range s.ledger.Versions(id) {
		if v.Version > best.Version {
			best = v
		}
	}
	return best
}

// ReadKey finds this node's data key for a record: its own envelope if it
// owns the record, else a current grant to it (and that grant).
func (s *Service) ReadKey(ctx context.Context, info ledger.RecordInfo) (record.Key, *ledger.Grant, error) {
	if info.Owner == s.self {
		raw, err := s.local.Get(ctx, keyKey(info.ID))
		if errors.Is(err, datastore.ErrNotFound) {
			raw, err = info.OwnerEnvelope, nil
		}
		if err != nil {
			return record.Key{}, nil, fmt.Errorf("read the key of record %s: %w", info.ID, err)
		}
		k, err := s.unwrap(access.OwnerRecipient(info.ID), raw)
		return k, nil, err
	}
	// Try the grants in the order the holders' policy prefers them, so the
	// claim names the grant the holders attest.
	for _, g := range access.ReadGrants(s.ledger, info.ID, s.self, s.cfg.Now()) {
		k, err := s.unwrap(access.GrantRecipient(info.ID, s.self, g.Purpose), g.Envelope)
		if err != nil {
			s.log.Warn("grant envelope does not open", "record", info.ID, "entry", g.Entry, "err", err)
			continue
		}
		return k, &g, nil
	}
	return record.Key{}, nil, fault.Forbiddenf(
		fmt.Sprintf("ask the owner (%s) for a grant: `medmesh grant %s --to %s`", info.Owner, info.ID, s.self),
		"no key for this record: this node has no current grant for %s", info.ID)
}

// unwrap opens an envelope of this node's.
func (s *Service) unwrap(r access.Recipient, envelope []byte) (record.Key, error) {
	var key record.Key
	k, err := r.UnwrapWith(s.kem, envelope)
	if err != nil {
		return key, err
	}
	copy(key[:], k)
	return key, nil
}

// Resolve finds which version of a record the caller reads (version 0:
// the newest this node has a key for), its key, and the grant it reads
// under (nil for the owner).
func (s *Service) Resolve(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, record.Key, *ledger.Grant, error) {
	if s.cfg.Erased != nil && s.cfg.Erased(id) {
		return ledger.RecordInfo{}, record.Key{}, nil, erasedError(id)
	}
	info, ok := s.ledger.Record(id)
	if !ok {
		return info, record.Key{}, nil, fault.NotFoundf("check the record ID; if it was just added, wait for the ledger to sync", "unknown record %s: not announced on this node's ledger", id)
	}
	chain := s.ledger.Versions(id)
	sort.Slice(chain, func(i, j int) bool { return chain[i].Version > chain[j].Version })
	var firstErr error
	for _, v := range chain {
		if version > 0 && int(v.Version) != version {
			continue
		}
		key, g, err := s.ReadKey(ctx, v)
		if err == nil {
			return v, key, g, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fault.NotFoundf("", "record %s has no version %d", id, version)
	}
	return info, record.Key{}, nil, firstErr
}

// Open fetches and decrypts a record's manifest, for the purpose of its
// grant (see OpenFor).
func (s *Service) Open(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	return s.OpenFor(ctx, id, version, "")
}

// OpenFor fetches and decrypts a record's manifest. Opening another
// node's record is a read: this node claims it on the ledger with the
// purpose it states (purpose, or the grant's when empty), and the holder
// that serves the manifest attests it (unless this node had kept a copy,
// which the owner's audit then shows as reported by the reader only).
func (s *Service) OpenFor(ctx context.Context, id cid.Cid, version int, purpose string) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	info, key, g, err := s.Resolve(ctx, id, version)
	if err != nil {
		return info, nil, key, nil, err
	}
	// Where the grant was live: the claim goes there if a revoke
	// overtakes it while the manifest is fetched.
	var pos *ledger.Position
	if g != nil {
		pos = s.position()
	}
	// A read keeps no copy of what it fetches (p2p.NoKeep): the nodes that
	// hold a record are the owner and the replicas placed on the ledger.
	fctx, cancel := context.WithTimeout(p2p.NoKeep(ctx), s.cfg.FetchTimeout)
	defer cancel()
	fctx, stop := s.untilErased(fctx, info.ID)
	defer stop()
	mg := &manifestGetter{net: s.net, holders: s.readHolders(info)}
	m, err := record.OpenManifest(fctx, mg, info.ID, key)
	if err != nil {
		if errors.Is(context.Cause(fctx), errErasedWhileRead) {
			return info, nil, key, nil, erasedError(info.ID)
		}
		if fctx.Err() != nil {
			return info, nil, key, nil, fault.Unavailablef("check that a node holding it is up and reachable", "record %s could not be found on the network within %v", info.ID, s.cfg.FetchTimeout)
		}
		return info, nil, key, nil, err
	}
	// Index the record's blocks here too: should any of them be or come
	// to be stored on this node, the block filter serves them only to
	// peers allowed to read the record (it refuses blocks of no known
	// record).
	s.AddBlocks(ctx, info.ID, m.Blocks(info.ID))
	s.claim(ctx, info, purpose, g, pos)
	return info, m, key, g, nil
}

// manifestGetter fetches a record's manifest from one holder at a time
// (p2p.GetFrom): each read fetches it once, and the holder that serves it
// attests the read.
type manifestGetter struct {
	net     Network
	holders []peer.ID
}

func (g *manifestGetter) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	return g.net.GetFrom(ctx, c, g.holders)
}

// readHolders are the record's holders in the order a read asks them for
// its manifest: connected ones first, so a read does not wait on a dial.
func (s *Service) readHolders(info ledger.RecordInfo) []peer.ID {
	hs := s.Holders(info)
	sort.SliceStable(hs, func(i, j int) bool { return s.net.Connected(hs[i]) && !s.net.Connected(hs[j]) })
	return hs
}

// Holders are where a record's blocks are: its owner and the peers with a
// current "held" receipt (ledger.Holders).
func (s *Service) Holders(info ledger.RecordInfo) []peer.ID { return s.ledger.Holders(info) }

// ReadFiles streams files of an opened record into w, in order.
func (s *Service) ReadFiles(ctx context.Context, m *record.Manifest, key record.Key, which []int, w io.Writer) error {
	for _, i := range which {
		if i < 0 || i >= len(m.Files) {
			return fault.NotFoundf("", "record has no file %d", i)
		}
		if err := s.readFile(ctx, key, m.Files[i], i, w); err != nil {
			return err
		}
	}
	return nil
}

// readConcurrency is how many chunks a file read verifies and decrypts at
// once (and holds, decrypted, until they are written in order), and
// readAhead how many more the file's fetch may deliver before the reader
// takes them.
const (
	readConcurrency = 32
	readAhead       = 32
)

// readFile reads one file from one network session that yields its
// chunks in order (p2p's GetBlocks: local blocks, bulk streams from the
// holders, bitswap), not one fetch per chunk.
func (s *Service) readFile(ctx context.Context, key record.Key, f record.File, i int, w io.Writer) error {
	ctx, cancel := context.WithCancel(p2p.NoKeep(ctx)) // a read keeps no copy (see OpenFor)
	defer cancel()
	cids := make([]cid.Cid, len(f.Chunks))
	for j, c := range f.Chunks {
		cids[j] = c.CID
	}
	st := &blockStream{ch: s.net.GetBlocks(ctx, cids, readAhead)}
	// GetBlocks verifies each block against its CID.
	return record.ReadFileStream(ctx, st, key, f, i, w, record.ReadOptions{Concurrency: readConcurrency, GetterVerifies: true})
}

// blockStream is a GetBlocks channel as record.ReadFileStream takes it.
type blockStream struct{ ch <-chan p2p.Fetched }

func (b *blockStream) Next(ctx context.Context) (blocks.Block, error) {
	select {
	case r, ok := <-b.ch:
		switch {
		case !ok:
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("the fetch ended before the file did")
		case r.Err != nil:
			return nil, r.Err
		}
		return r.Block, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// claim records on the ledger that this node read someone else's record
// under grant g, with the purpose it states (the grant's if empty): the
// claimer batches it with the node's other reads of the record under the
// grant and purpose. The nodes that served the read attest it too; the
// owner's audit shows where the two disagree.
func (s *Service) claim(_ context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant, pos *ledger.Position) {
	if info.Owner == s.self || g == nil {
		return
	}
	if purpose == "" {
		purpose = g.Purpose
	}
	s.claims.count(info, g, purpose, s.cfg.Now(), pos)
}

// ReadDone counts a completed read of an opened record (the claim was
// made when its manifest was fetched: OpenFor).
func (s *Service) ReadDone(_ context.Context, info ledger.RecordInfo, _ string, _ *ledger.Grant) {
	if info.Owner != s.self {
		s.m.recordsRead.Inc()
	}
}

// Get streams a record's plaintext into w.
func (s *Service) Get(ctx context.Context, id cid.Cid, req GetRequest, w io.Writer) error {
	info, m, key, g, err := s.OpenFor(ctx, id, req.Version, req.Purpose)
	if err != nil {
		return err
	}
	// The owner and replica holders are where the blocks are: the fetch
	// streams from them without a DHT lookup first.
	ctx = p2p.WithHolders(ctx, s.Holders(info)...)
	which := []int{}
	var size int64
	if req.File >= 0 {
		which = append(which, req.File)
		if req.File < len(m.Files) {
			size = m.Files[req.File].Size
		}
	} else {
		for i := range m.Files {
			which = append(which, i)
		}
		size = m.Size()
	}
	if req.Opened != nil {
		req.Opened(size)
	}
	if req.Named != nil {
		req.Named(m.Name)
	}
	rctx, stop := s.untilErased(ctx, info.ID)
	defer stop()
	if err := s.ReadFiles(rctx, m, key, which, w); err != nil {
		if errors.Is(context.Cause(rctx), errErasedWhileRead) {
			return erasedError(info.ID)
		}
		return err
	}
	s.ReadDone(ctx, info, req.Purpose, g)
	return nil
}

// erasedError is what reading an erased record answers.
func erasedError(id cid.Cid) error {
	return fault.NotFoundf("its owner erased it: no node keeps it any more", "record %s was erased", id)
}

// errErasedWhileRead cancels a read whose record its owner erased.
var errErasedWhileRead = errors.New("records: the record was erased while being read")

// erasedPoll is how often a read in progress checks whether its record
// was erased.
const erasedPoll = 250 * time.Millisecond

// untilErased returns a context that is cancelled (cause
// errErasedWhileRead) if record version id is erased before stop is
// called: a read waiting for blocks no holder keeps any more ends at once
// with "erased", not after the fetch timeout.
func (s *Service) untilErased(ctx context.Context, id cid.Cid) (context.Context, func()) {
	if s.cfg.Erased == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(erasedPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if s.cfg.Erased(id) {
					cancel(errErasedWhileRead)
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

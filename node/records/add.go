package records

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

var rawPrefix = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}

// Add encrypts and stores a record, announces it on the ledger and the DHT.
func (s *Service) Add(ctx context.Context, req AddRequest) (*AddResult, error) {
	if !s.ledger.IsMember(s.self) {
		return nil, fault.Conflictf("wait until the ledger has synced this node's admission, or ask the admin to invite it", "this node is not (yet) a member of the network")
	}
	if len(req.Files) == 0 {
		return nil, fault.Invalidf("", "a record needs at least one file")
	}
	if req.Kind == "" {
		req.Kind = "file"
	}
	if req.Class == "" {
		req.Class = ledger.ClassDocument
	}
	if err := ledger.CheckClass(req.Class); err != nil {
		return nil, fault.Invalidf("choose one of: "+strings.Join(ledger.Classes(), ", "), "unknown record class %q: the class is announced in clear, so it comes from a fixed set", req.Class)
	}
	if req.Replicas <= 0 {
		req.Replicas = s.cfg.Replicas
	}
	version := 1
	if req.Prev.Defined() {
		prev, ok := s.ledger.Record(req.Prev)
		if !ok {
			return nil, fault.NotFoundf("", "unknown record %s", req.Prev)
		}
		if prev.Owner != s.self {
			return nil, fault.Forbiddenf("only the record's owner can store a new version", "record %s belongs to %s", req.Prev, prev.Owner)
		}
		latest := s.LatestVersion(req.Prev)
		req.Prev = latest.ID
		version = int(latest.Version) + 1
	}
	key, err := record.NewKey()
	if err != nil {
		return nil, err
	}
	// The add's blocks go through the garbage collector's add protocol
	// (node/gc): a sweep keeps them meanwhile, and a failed or killed add
	// leaves nothing.
	tp, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() { tp.End(ok) }()
	start := time.Now()
	b := record.NewBuilder(tp, key, record.Options{})
	for _, f := range req.Files {
		r, err := f.Open()
		if err != nil {
			return nil, err
		}
		_, err = b.AddFile(ctx, f.Path, r)
		if c, isCloser := r.(io.Closer); isCloser {
			c.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", f.Path, err)
		}
	}
	res, err := b.Finish(ctx, record.Header{
		Kind: req.Kind, Name: req.Name, MediaType: req.MediaType,
		Created: s.cfg.Now(), Version: version, Prev: req.Prev, Meta: req.Meta,
	})
	if err != nil {
		return nil, err
	}
	blRaw, err := record.EncodeBlockList(res.Blocks)
	if err != nil {
		return nil, err
	}
	blCID, err := rawPrefix.Sum(blRaw)
	if err != nil {
		return nil, err
	}
	blBlock, _ := blocks.NewBlockWithCid(blRaw, blCID)
	if err := tp.Put(ctx, blBlock); err != nil {
		return nil, err
	}
	envBytes, err := access.OwnerRecipient(res.ID).Wrap(s.kem.Public(), key[:])
	if err != nil {
		return nil, err
	}
	ann := ledger.RecordAnnouncePayload{
		Record: res.ID, Blocklist: blCID, Size: uint64(res.Size), Replicas: uint32(req.Replicas),
		Class: req.Class, Version: uint64(version), Prev: req.Prev, OwnerEnvelope: envBytes,
	}
	if req.Emergency {
		if ann.Escrow, err = s.escrowEnvelopes(res.ID, key); err != nil {
			return nil, err
		}
	}
	if err := tp.Named(ctx, res.ID); err != nil {
		return nil, err
	}
	if err := s.local.Put(ctx, keyKey(res.ID), envBytes); err != nil {
		return nil, err
	}
	s.AddBlocks(ctx, res.ID, append(res.Blocks, blCID))
	sealed := time.Now()
	// Make every block durable before the ledger says the record exists.
	if err := s.durable.Sync(ctx, datastore.NewKey("/")); err != nil {
		return nil, fmt.Errorf("sync datastore: %w", err)
	}
	synced := time.Now()
	if _, err := s.ledger.Append(ctx, ledger.TypeRecordAnnounce, ann); err != nil {
		return nil, fmt.Errorf("announce record on the ledger: %w", err)
	}
	announced := time.Now()
	ok = true
	s.m.recordsAdded.Inc()
	s.m.bytesAdded.Add(float64(res.Size))
	chunks := len(res.Blocks) - 1
	// The manifest and block list are announced before we return, so a peer
	// can find the record at once; the chunks follow in the background.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := s.net.Provide(pctx, []cid.Cid{res.ID, blCID}); err != nil {
		s.log.Warn("provide record", "record", res.ID, "err", err)
	}
	cancel()
	s.ProvideLater(res.Blocks[:chunks])
	s.log.Info("record added", "record", res.ID.String(), "bytes", res.Size, "chunks", chunks,
		"seal_store", sealed.Sub(start).Round(time.Millisecond), "sync", synced.Sub(sealed).Round(time.Millisecond),
		"announce", announced.Sub(synced).Round(time.Millisecond), "provide", time.Since(announced).Round(time.Millisecond))
	return &AddResult{ID: res.ID, Manifest: res.Manifest, Size: res.Size, Chunks: chunks, Version: version}, nil
}

// ProvideLater announces cids on the DHT in the background (up to ten
// minutes; Close stops it).
func (s *Service) ProvideLater(cids []cid.Cid) {
	if len(cids) == 0 {
		return
	}
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Minute)
		defer cancel()
		if err := s.net.Provide(ctx, cids); err != nil && s.ctx.Err() == nil {
			s.log.Warn("provide chunks", "n", len(cids), "err", err)
		}
	})
}

// Update stores a new version of a record under a fresh key, wrapped to the
// owner and the current grantees only: a revoked peer never gets it.
func (s *Service) Update(ctx context.Context, req AddRequest) (*AddResult, error) {
	chain, err := s.OwnedChain(req.Prev)
	if err != nil {
		return nil, err
	}
	latest := chain[len(chain)-1]
	prevInfo, _ := s.ledger.Record(latest.ID)
	if req.Class == "" {
		req.Class = prevInfo.Class
	}
	if req.Replicas == 0 {
		req.Replicas = int(prevInfo.Replicas)
	}
	// A record opted into break-glass access stays opted in.
	req.Emergency = req.Emergency || len(prevInfo.Escrow) > 0
	grants := s.ledger.Grants(latest.ID)
	res, err := s.Add(ctx, req)
	if err != nil {
		return nil, err
	}
	key, _, err := s.ReadKey(ctx, ledger.RecordInfo{ID: res.ID, Owner: s.self})
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	for _, g := range grants {
		if !g.LiveAt(now) {
			continue
		}
		pub, ok := s.ledger.KEMKey(g.Grantee)
		if !ok {
			continue
		}
		if _, err := s.GrantVersion(ctx, res.ID, key[:], g.Grantee, pub, g.Purpose, g.Expires); err != nil {
			return nil, fmt.Errorf("re-grant new version to %s: %w", g.Grantee, err)
		}
	}
	return res, nil
}

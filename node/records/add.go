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
	if len(req.Files) == 0 {
		return nil, fault.Invalidf("", "a record needs at least one file")
	}
	st, err := s.stream(ctx, req)
	if err != nil {
		return nil, err
	}
	for _, f := range req.Files {
		r, err := f.Open()
		if err != nil {
			st.Abort()
			return nil, err
		}
		err = st.AddFile(ctx, f.Path, r)
		if c, isCloser := r.(io.Closer); isCloser {
			c.Close()
		}
		if err != nil {
			st.Abort()
			return nil, err
		}
	}
	return st.Finish(ctx, req.Meta)
}

// Stream is an add whose files are given one at a time, as they arrive
// (DICOM instances as a modality sends them): each is encrypted and
// stored at once, and Finish stores the record with the metadata known by
// then. Until Finish the record does not exist; Abort (or a failed call,
// or a killed daemon) leaves nothing (the garbage collector's add
// protocol). A Stream is used by one goroutine at a time.
type Stream struct {
	s       *Service
	req     AddRequest
	version int
	key     record.Key
	tp      Add
	b       *record.Builder
	start   time.Time
	files   int
	done    bool
}

// Stream starts a streamed add of a new record (req.Files and req.Meta
// are not used: files come with AddFile, the metadata with Finish; a new
// version goes through Update).
func (s *Service) Stream(ctx context.Context, req AddRequest) (*Stream, error) {
	if req.Prev.Defined() {
		return nil, fault.Invalidf("store new versions with Update", "a streamed add makes a new record, not a version of %s", req.Prev)
	}
	req.Files, req.Meta = nil, nil
	return s.stream(ctx, req)
}

func (s *Service) stream(ctx context.Context, req AddRequest) (*Stream, error) {
	if !s.ledger.IsMember(s.self) {
		return nil, fault.Conflictf("wait until the ledger has synced this node's admission, or ask the admin to invite it", "this node is not (yet) a member of the network")
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
	return &Stream{s: s, req: req, version: version, key: key, tp: tp, b: record.NewBuilder(tp, key, record.Options{}), start: time.Now()}, nil
}

// AddFile encrypts and stores the next file, read from r to its end.
func (st *Stream) AddFile(ctx context.Context, path string, r io.Reader) error {
	if st.done {
		return fault.Conflictf("", "the add has ended")
	}
	if _, err := st.b.AddFile(ctx, path, r); err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	st.files++
	return nil
}

// Abort ends the add without a record; its blocks go.
func (st *Stream) Abort() {
	if !st.done {
		st.done = true
		st.tp.End(false)
	}
}

// Finish stores the record (its manifest with meta, its block list, the
// owner's key envelope), makes it durable and announces it on the ledger
// and the DHT.
func (st *Stream) Finish(ctx context.Context, meta []byte) (res *AddResult, err error) {
	if st.done {
		return nil, fault.Conflictf("", "the add has ended")
	}
	if st.files == 0 {
		st.Abort()
		return nil, fault.Invalidf("", "a record needs at least one file")
	}
	st.done = true
	ok := false
	defer func() { st.tp.End(ok) }()
	s, req, tp, key, version, start := st.s, st.req, st.tp, st.key, st.version, st.start
	b := st.b
	rr, err := b.Finish(ctx, record.Header{
		Kind: req.Kind, Name: req.Name, MediaType: req.MediaType,
		Created: s.cfg.Now(), Version: version, Prev: req.Prev, Meta: meta,
	})
	if err != nil {
		return nil, err
	}
	blRaw, err := record.EncodeBlockList(rr.Blocks)
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
	envBytes, err := access.OwnerRecipient(rr.ID).Wrap(s.kem.Public(), key[:])
	if err != nil {
		return nil, err
	}
	ann := ledger.RecordAnnouncePayload{
		Record: rr.ID, Blocklist: blCID, Size: uint64(rr.Size), Replicas: uint32(req.Replicas),
		Class: req.Class, Version: uint64(version), Prev: req.Prev, OwnerEnvelope: envBytes,
	}
	if req.Emergency {
		if ann.Escrow, err = s.escrowEnvelopes(rr.ID, key); err != nil {
			return nil, err
		}
	}
	if err := tp.Named(ctx, rr.ID); err != nil {
		return nil, err
	}
	if err := s.local.Put(ctx, keyKey(rr.ID), envBytes); err != nil {
		return nil, err
	}
	if req.Hidden {
		if err := s.Hide(ctx, rr.ID); err != nil {
			return nil, err
		}
	}
	s.AddBlocks(ctx, rr.ID, append(rr.Blocks, blCID))
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
	s.m.bytesAdded.Add(float64(rr.Size))
	chunks := len(rr.Blocks) - 1
	// The manifest and block list are announced before we return, so a peer
	// can find the record at once; the chunks follow in the background. A
	// hidden record is read by its owner only and placed holders fetch it
	// from the owner, so it is announced in the background too: an audit
	// head, which waits for its segment's add, does not wait for the DHT.
	if req.Hidden {
		s.ProvideLater([]cid.Cid{rr.ID, blCID})
	} else {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := s.net.Provide(pctx, []cid.Cid{rr.ID, blCID}); err != nil {
			s.log.Warn("provide record", "record", rr.ID, "err", err)
		}
		cancel()
	}
	s.ProvideLater(rr.Blocks[:chunks])
	s.log.Info("record added", "record", rr.ID.String(), "bytes", rr.Size, "chunks", chunks,
		"seal_store", sealed.Sub(start).Round(time.Millisecond), "sync", synced.Sub(sealed).Round(time.Millisecond),
		"announce", announced.Sub(synced).Round(time.Millisecond), "provide", time.Since(announced).Round(time.Millisecond))
	return &AddResult{ID: rr.ID, Manifest: rr.Manifest, Size: rr.Size, Chunks: chunks, Version: version}, nil
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

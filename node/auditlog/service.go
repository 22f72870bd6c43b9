// Package auditlog runs an owner's Certificate-Transparency style audit
// log (sharing/auditlog) on a node: every access claim and access.served
// attestation the ledger accepts about a record this node owns is appended,
// in the order this node accepted it; the node signs tree heads with its
// identity and proves inclusion and consistency for auditors (`medmesh
// audit head|prove|consistency`; `audit verify-proof` checks them offline).
//
// The order of the leaves is the one thing about the log no other node
// has. A backup carries it up to when it was taken; for the heads signed
// after, each head beyond what is kept writes a segment (the leaves since
// the previous one, sharing/auditlog.WriteSegment) through Segments, which
// the daemon keeps as this node's own hidden encrypted records: replication
// holds them on other nodes like any record. A node restored from a backup
// holds every append (Config.Restoring) until RestoreSegments has brought
// the leaves after the backup back from them, in their order; then it
// catches up with the ledger as after any start.
package auditlog

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/sharing/auditlog"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Ledger is what the service reads (*ledger.Ledger).
type Ledger interface {
	Subscribe() (<-chan *ledger.Entry, func())
	Record(id cid.Cid) (ledger.RecordInfo, bool)
	Versions(id cid.Cid) []ledger.RecordInfo
	OwnedRecords(ctx context.Context, p peer.ID) ([]ledger.RecordInfo, error)
	Served(id cid.Cid) []ledger.Served
	Access(id cid.Cid) []ledger.AccessEvent
	Entry(ctx context.Context, c cid.Cid) (*ledger.Entry, error)
}

// Config is what a Service needs; Now, Logger and Metrics are optional.
type Config struct {
	Self peer.ID
	// Key is the node's identity: it signs the tree heads.
	Key    crypto.PrivKey
	Ledger Ledger
	// DS holds the log (a namespace of the node's datastore).
	DS      datastore.Batching
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics prometheus.Registerer

	// Segments keeps the leaves' order where a restore finds it again
	// (nil: only this datastore and backups keep it, and a head signed
	// after the last backup does not survive the loss of the disk).
	Segments Segments
	// Restoring holds every append until RestoreSegments (or ReleaseHold):
	// the node was restored from a backup, and the leaves after it come
	// back from the segments, in their order, before anything it syncs.
	Restoring bool
}

// SegmentRef names a stored segment: the leaves [From, To).
type SegmentRef struct {
	ID       cid.Cid
	From, To int64
}

// Segments stores the log's segments (node/daemon keeps them as this
// node's hidden records).
type Segments interface {
	// Put stores the segment of leaves [from, to) that write produces.
	Put(ctx context.Context, from, to int64, write func(io.Writer) error) (cid.Cid, error)
	// List returns the segments stored, in any order; an error when some
	// could not be looked at (yet).
	List(ctx context.Context) ([]SegmentRef, error)
	// Read streams a segment into w.
	Read(ctx context.Context, id cid.Cid, w io.Writer) error
}

// Keys of the service's own in the log's datastore (the log's are /size,
// /h, /l, /e, /r and /sth).
var (
	// keySegEnd is where the segments written so far end.
	keySegEnd = datastore.NewKey("/seg/end")
)

// segmentKey names the segment that ends at size to.
func segmentKey(to int64) datastore.Key { return datastore.NewKey(fmt.Sprintf("/seg/at/%016x", to)) }

// Service keeps the log.
type Service struct {
	cfg Config
	log *auditlog.Log
	lg  *slog.Logger

	headMu sync.Mutex // one head signed per size

	entries <-chan *ledger.Entry
	unsub   func()
	caught  chan struct{} // closed when the catch-up is done
	// hold is closed when appends may run (at once unless Restoring).
	hold     chan struct{}
	holdOnce sync.Once
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	size     prometheus.Gauge
	appended prometheus.Counter
	segments prometheus.Counter
}

// New opens the log. It follows the ledger from Start.
func New(ctx context.Context, c Config) (*Service, error) {
	if c.Self == "" || c.Key == nil || c.Ledger == nil || c.DS == nil {
		return nil, errors.New("auditlog: Config needs Self, Key, Ledger and DS")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	l, err := auditlog.Open(ctx, c.DS)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: c, log: l, lg: c.Logger, caught: make(chan struct{}), hold: make(chan struct{}),
		size:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_auditlog_size", Help: "Entries in this node's audit log (claims and attestations about the records it owns)."}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_auditlog_appended_total", Help: "Entries appended to this node's audit log."}),
		segments: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_auditlog_segments_total", Help: "Segments of this node's audit log written (its leaves' order since the previous segment, kept for a restore), one per tree head signed beyond the last."}),
	}
	if !c.Restoring {
		close(s.hold)
	}
	for _, m := range []prometheus.Collector{s.size, s.appended, s.segments} {
		if err := c.Metrics.Register(m); err != nil {
			return nil, err
		}
	}
	s.size.Set(float64(l.Size()))
	return s, nil
}

// Start subscribes to the ledger (call it before the ledger syncs, so no
// entry is applied unseen), catches up with the audit entries already on
// the ledger that the log lacks (a first start, or a crash between the
// ledger's commit and the log's), then appends as entries are applied.
func (s *Service) Start() {
	s.entries, s.unsub = s.cfg.Ledger.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.run(ctx) })
}

// Close stops following the ledger.
func (s *Service) Close() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.unsub()
	s.wg.Wait()
}

// maxBatch bounds the entries one append commits.
const maxBatch = 256

func (s *Service) run(ctx context.Context) {
	// Restored from a backup: what is applied meanwhile is left to the
	// catch-up below, after the segments.
	for held := s.holding(); held; {
		select {
		case <-ctx.Done():
			return
		case <-s.entries:
		case <-s.hold:
			held = false
		}
	}
	if err := s.catchUp(ctx); err != nil && ctx.Err() == nil {
		s.lg.Error("audit log: catching up with the ledger failed; entries already applied may be missing until the next start", "err", err)
	}
	close(s.caught)
	for {
		var batch []*ledger.Entry
		select {
		case <-ctx.Done():
			return
		case e, ok := <-s.entries:
			if !ok {
				return
			}
			batch = append(batch, e)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case e, ok := <-s.entries:
				if !ok {
					break more
				}
				batch = append(batch, e)
			default:
				break more
			}
		}
		if err := s.add(ctx, batch); err != nil && ctx.Err() == nil {
			s.lg.Error("audit log: append failed; the next start catches up", "err", err)
		}
		if slices.ContainsFunc(batch, s.mayBringOwnAudit) {
			// Audit entries that arrived in a checkpoint's state, not
			// applied one by one.
			if err := s.catchUp(ctx); err != nil && ctx.Err() == nil {
				s.lg.Error("audit log: catching up after the ledger loaded a checkpoint failed; the next start catches up", "err", err)
			}
		}
	}
}

// mayBringOwnAudit reports whether e says the ledger loaded, from a
// checkpoint, state that may hold audit entries of this node's records:
// its own audit scope's, or the global scope's (in a network without
// scopes, the whole state). Another owner's scope, loaded when this node
// starts following it (a grant, a replica group), holds none, and the
// catch-up reads every claim and attestation of this node's records.
func (s *Service) mayBringOwnAudit(e *ledger.Entry) bool {
	return e.Type == ledger.TypeStateLoaded && (e.Scope == "" || e.Scope == ledger.AuditScope(s.cfg.Self))
}

// mine reports whether e is an audit entry about a record this node owns.
func (s *Service) mine(e *ledger.Entry) (cid.Cid, bool) {
	if e.Type != ledger.TypeAccess && e.Type != ledger.TypeServed {
		return cid.Undef, false
	}
	rec, ok := ledger.RecordOf(e)
	if !ok {
		return cid.Undef, false
	}
	info, ok := s.cfg.Ledger.Record(rec)
	return rec, ok && info.Owner == s.cfg.Self
}

func (s *Service) add(ctx context.Context, es []*ledger.Entry) error {
	var leaves []auditlog.Leaf
	for _, e := range es {
		if rec, ok := s.mine(e); ok {
			leaves = append(leaves, auditlog.Leaf{Data: e.Bytes(), Entry: e.CID(), Record: rec})
		}
	}
	if len(leaves) == 0 {
		return nil
	}
	n, err := s.log.Append(ctx, leaves)
	s.appended.Add(float64(n))
	s.size.Set(float64(s.log.Size()))
	return err
}

// catchUp appends the audit entries of this node's records that the log
// lacks, in the ledger's (clock, CID) order. It reads this node's own
// records only: its cost follows what the node owns.
func (s *Service) catchUp(ctx context.Context) error {
	recs, err := s.cfg.Ledger.OwnedRecords(ctx, s.cfg.Self)
	if err != nil {
		return err
	}
	var missing []*ledger.Entry
	bodiless := 0
	for _, r := range recs {
		var ids []cid.Cid
		for _, sv := range s.cfg.Ledger.Served(r.ID) {
			ids = append(ids, sv.Entry)
		}
		for _, a := range s.cfg.Ledger.Access(r.ID) {
			ids = append(ids, a.Entry)
		}
		for _, c := range ids {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if _, ok, err := s.log.Has(ctx, c); err != nil {
				return err
			} else if ok {
				continue
			}
			e, err := s.cfg.Ledger.Entry(ctx, c)
			if ipld.IsNotFound(err) {
				bodiless++ // known from a checkpoint's state only
				continue
			}
			if err != nil {
				return fmt.Errorf("read entry %s: %w", c, err)
			}
			missing = append(missing, e)
		}
	}
	if bodiless > 0 {
		s.lg.Warn("audit log: some claims and attestations about this node's records are known only from a checkpoint, without their signed entries, and cannot be logged", "entries", bodiless)
	}
	if len(missing) == 0 {
		return nil
	}
	slices.SortFunc(missing, func(a, b *ledger.Entry) int {
		if a.Clock != b.Clock {
			if a.Clock.Less(b.Clock) {
				return -1
			}
			return 1
		}
		return compareBytes(a.CID().Bytes(), b.CID().Bytes())
	})
	for len(missing) > 0 {
		n := min(len(missing), maxBatch)
		if err := s.add(ctx, missing[:n]); err != nil {
			return err
		}
		missing = missing[n:]
	}
	s.lg.Info("audit log caught up with the ledger", "size", s.log.Size())
	return nil
}

func compareBytes(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return len(a) - len(b)
}

// Head is the log's tree head at its current size, signed.
func (s *Service) Head(ctx context.Context) (auditlog.TreeHead, []byte, error) {
	s.waitCaughtUp(ctx)
	return s.headAt(ctx, s.log.Size())
}

// waitCaughtUp waits (a little) for the start's catch-up, so a head right
// after a start covers what the ledger had.
func (s *Service) waitCaughtUp(ctx context.Context) {
	if s.holding() {
		return // the catch-up waits for the restore's segments
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-s.caught:
	case <-ctx.Done():
	case <-t.C:
	}
}

// headAt returns the signed head of the tree of size leaves: the one
// signed before, or a new one.
func (s *Service) headAt(ctx context.Context, size int64) (auditlog.TreeHead, []byte, error) {
	s.headMu.Lock()
	defer s.headMu.Unlock()
	if b, ok, err := s.log.Head(ctx, size); err != nil {
		return auditlog.TreeHead{}, nil, err
	} else if ok {
		h, err := auditlog.OpenHead(b, s.cfg.Self)
		if err != nil {
			return h, nil, fmt.Errorf("audit log: the stored tree head of size %d does not verify: %w", size, err)
		}
		return h, b, nil
	}
	if s.holding() {
		return auditlog.TreeHead{}, nil, fault.Unavailablef("wait until the restore is complete (the daemon logs \"restore complete\"), then ask again",
			"the audit log is bringing back, from its segments, the leaves added after the backup this node was restored from: no new tree head until then")
	}
	root, err := s.log.Root(ctx, size)
	if err != nil {
		return auditlog.TreeHead{}, nil, err
	}
	h := auditlog.TreeHead{Owner: s.cfg.Self, Size: size, Root: root, Time: s.cfg.Now().UTC().Truncate(time.Millisecond)}
	b, err := auditlog.Sign(h, s.cfg.Key)
	if err != nil {
		return h, nil, err
	}
	// No head goes out whose leaves' order a restore could not rebuild.
	if err := s.keepOrder(ctx, size, b); err != nil {
		return h, nil, err
	}
	if err := s.log.PutHead(ctx, size, b); err != nil {
		return h, nil, err
	}
	return h, b, nil
}

// Prove proves entries about record id (every version) in the log, under
// one signed tree head: the one entry named, or all of them.
func (s *Service) Prove(ctx context.Context, id, entry cid.Cid) (*auditlog.ProofFile, error) {
	info, ok := s.cfg.Ledger.Record(id)
	if !ok {
		return nil, fault.NotFoundf("check the record ID", "unknown record %s", id)
	}
	if info.Owner != s.cfg.Self {
		return nil, fault.Forbiddenf("ask its owner, "+info.Owner.String()+", for the proof", "record %s belongs to %s: its audit log is there", id, info.Owner)
	}
	s.waitCaughtUp(ctx)
	versions := map[cid.Cid]bool{id: true}
	for _, v := range s.cfg.Ledger.Versions(id) {
		versions[v.ID] = true
	}
	var idx []int64
	if entry.Defined() {
		n, ok, err := s.log.Has(ctx, entry)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fault.NotFoundf("the log holds the access claims and access.served attestations of this node's records as they arrive: `medmesh ledger log --type access.served --json` lists entries",
				"entry %s is not in this node's audit log", entry)
		}
		idx = []int64{n}
	} else {
		for v := range versions {
			ns, err := s.log.RecordLeaves(ctx, v)
			if err != nil {
				return nil, err
			}
			idx = append(idx, ns...)
		}
		slices.Sort(idx)
	}
	head, note, err := s.headAt(ctx, s.log.Size())
	if err != nil {
		return nil, err
	}
	f := &auditlog.ProofFile{Kind: auditlog.KindInclusion, Owner: s.cfg.Self.String(), ID: id.String(),
		TreeHead: string(note), TreeSize: head.Size, Root: auditlog.EncodeHash(head.Root), Proofs: []auditlog.Inclusion{}}
	for _, n := range idx {
		lf, err := s.log.Leaf(ctx, n)
		if err != nil {
			return nil, err
		}
		if !versions[lf.Record] {
			return nil, fault.Invalidf("`medmesh audit prove` takes the record the entry is about", "entry %s is about record %s, not %s", lf.Entry, lf.Record, id)
		}
		e, err := ledger.DecodeEntry(lf.Data)
		if err != nil {
			return nil, fmt.Errorf("audit log: leaf %d does not decode: %w", n, err)
		}
		path, err := s.log.ProveInclusion(ctx, n, head.Size)
		if err != nil {
			return nil, err
		}
		f.Proofs = append(f.Proofs, auditlog.Inclusion{ID: lf.Record.String(), Entry: lf.Entry.String(), Type: e.Type,
			EntryData: base64.StdEncoding.EncodeToString(lf.Data), Index: n, Path: auditlog.EncodeHashes(path)})
	}
	return f, nil
}

// Consistency proves that the log of old leaves is a prefix of the log of
// new leaves (new 0: the current size), each under a signed head.
func (s *Service) Consistency(ctx context.Context, old, new int64) (*auditlog.ProofFile, error) {
	s.waitCaughtUp(ctx)
	size := s.log.Size()
	if new == 0 {
		new = size
	}
	if old < 1 || old > new || new > size {
		return nil, fault.Invalidf("`medmesh audit head` shows the current size", "no consistency proof from size %d to %d: the log has %d entries (1 ≤ OLD ≤ NEW ≤ %d)", old, new, size, size)
	}
	oh, on, err := s.headAt(ctx, old)
	if err != nil {
		return nil, err
	}
	nh, nn, err := s.headAt(ctx, new)
	if err != nil {
		return nil, err
	}
	path, err := s.log.ProveConsistency(ctx, old, new)
	if err != nil {
		return nil, err
	}
	return &auditlog.ProofFile{Kind: auditlog.KindConsistency, Owner: s.cfg.Self.String(),
		OldTreeHead: string(on), OldSize: oh.Size, OldRoot: auditlog.EncodeHash(oh.Root),
		NewTreeHead: string(nn), NewSize: nh.Size, NewRoot: auditlog.EncodeHash(nh.Root), Path: auditlog.EncodeHashes(path)}, nil
}

// Restoring reports whether the log holds its appends for the segments of
// a restore (`medmesh health` warns).
func (s *Service) Restoring() bool { return s.holding() }

// holding reports whether appends wait for RestoreSegments.
func (s *Service) holding() bool {
	select {
	case <-s.hold:
		return false
	default:
		return true
	}
}

// segEnd is where the segments written so far end (0: none).
func (s *Service) segEnd(ctx context.Context) (int64, error) {
	b, err := s.cfg.DS.Get(ctx, keySegEnd)
	if errors.Is(err, datastore.ErrNotFound) {
		return 0, nil
	}
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("audit log: read where its segments end: %v (%d bytes)", err, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// setSegEnd records that the segments end at to, written by segment id.
func (s *Service) setSegEnd(ctx context.Context, to int64, id cid.Cid) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(to))
	if err := s.cfg.DS.Put(ctx, segmentKey(to), id.Bytes()); err != nil {
		return err
	}
	return s.cfg.DS.Put(ctx, keySegEnd, b[:])
}

// keepOrder writes the segment of the leaves since the last one up to
// size, ending with head (called with headMu held).
func (s *Service) keepOrder(ctx context.Context, size int64, head []byte) error {
	if s.cfg.Segments == nil {
		return nil
	}
	from, err := s.segEnd(ctx)
	if err != nil || size <= from {
		return err
	}
	id, err := s.cfg.Segments.Put(ctx, from, size, func(w io.Writer) error {
		_, err := s.log.WriteSegment(ctx, from, size, head, w)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit log: keep the order of leaves %d to %d for a restore before signing a head of them: %w", from, size-1, err)
	}
	if err := s.setSegEnd(ctx, size, id); err != nil {
		return fmt.Errorf("audit log: record segment %s: %w", id, err)
	}
	s.segments.Inc()
	s.lg.Info("audit log: the order of its leaves is kept for a restore", "from", from, "to", size, "segment", id)
	return nil
}

// Segment returns the record that keeps the leaves' order up to a head of
// size size, when a segment ends there.
func (s *Service) Segment(ctx context.Context, size int64) (cid.Cid, bool) {
	b, err := s.cfg.DS.Get(ctx, segmentKey(size))
	if err != nil {
		return cid.Undef, false
	}
	c, err := cid.Cast(b)
	return c, err == nil
}

// RestoreSegments brings back, from the stored segments and in their
// order, the leaves a restored log lacks past its backup, then lets
// appends run (the catch-up with the ledger follows). It returns how many
// leaves it appended; on an error (a segment missing or not readable yet)
// appends stay held and the caller tries again, or gives up (ReleaseHold).
func (s *Service) RestoreSegments(ctx context.Context) (int64, error) {
	if !s.holding() {
		return 0, nil
	}
	if s.cfg.Segments == nil {
		s.ReleaseHold(nil)
		return 0, nil
	}
	refs, err := s.cfg.Segments.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit log: list its segments: %w", err)
	}
	slices.SortFunc(refs, func(a, b SegmentRef) int { // by start, the longest first
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(b.To, a.To))
	})
	end, err := s.segEnd(ctx)
	if err != nil {
		return 0, err
	}
	var appended int64
	used := 0
	// Where the segments end, so the next head's segment follows on.
	ended := func(r SegmentRef) error {
		if r.To <= end {
			return nil
		}
		end = r.To
		return s.setSegEnd(ctx, r.To, r.ID)
	}
	for _, r := range refs {
		size := s.log.Size()
		if r.To <= size {
			if err := ended(r); err != nil {
				return appended, err
			}
			continue
		}
		if r.From > size {
			return appended, fmt.Errorf("audit log: no segment found yet for leaves %d to %d (the next starts at %d): %w", size, r.From-1, r.From, auditlog.ErrSegmentGap)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(s.cfg.Segments.Read(ctx, r.ID, pw)) }()
		_, n, err := s.log.ImportSegment(ctx, pr, s.cfg.Self)
		pr.CloseWithError(io.ErrClosedPipe)
		if err != nil {
			return appended, fmt.Errorf("audit log: segment %s (leaves %d to %d): %w", r.ID, r.From, r.To-1, err)
		}
		appended += n
		used++
		s.size.Set(float64(s.log.Size()))
		if err := ended(r); err != nil {
			return appended, err
		}
	}
	s.lg.Info("audit log: the leaves added after the backup are back in their order", "segments", used, "leaves", appended, "size", s.log.Size())
	s.ReleaseHold(nil)
	return appended, nil
}

// ReleaseHold lets appends run without (all) the segments: err says why
// the leaves past the log's size are not brought back in their order.
func (s *Service) ReleaseHold(err error) {
	s.holdOnce.Do(func() {
		if err != nil {
			s.lg.Error("audit log: appending without the segments of the leaves added after the backup; a tree head signed after the backup and past this log's size will not be consistent with it", "size", s.log.Size(), "err", err)
		}
		close(s.hold)
	})
}

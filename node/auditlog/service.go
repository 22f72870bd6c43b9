// Package auditlog runs an owner's Certificate-Transparency style audit
// log (sharing/auditlog) on a node: every access claim and access.served
// attestation the ledger accepts about a record this node owns is appended,
// in the order this node accepted it; the node signs tree heads with its
// identity and proves inclusion and consistency for auditors (`medmesh
// audit head|prove|consistency`; `audit verify-proof` checks them offline).
package auditlog

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
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
}

// Service keeps the log.
type Service struct {
	cfg Config
	log *auditlog.Log
	lg  *slog.Logger

	headMu sync.Mutex // one head signed per size

	entries <-chan *ledger.Entry
	unsub   func()
	caught  chan struct{} // closed when the catch-up is done
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	size     prometheus.Gauge
	appended prometheus.Counter
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
	s := &Service{cfg: c, log: l, lg: c.Logger, caught: make(chan struct{}),
		size:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_auditlog_size", Help: "Entries in this node's audit log (claims and attestations about the records it owns)."}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_auditlog_appended_total", Help: "Entries appended to this node's audit log."}),
	}
	for _, m := range []prometheus.Collector{s.size, s.appended} {
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
		if slices.ContainsFunc(batch, func(e *ledger.Entry) bool { return e.Type == ledger.TypeStateLoaded }) {
			// Audit entries that arrived in a checkpoint's state, not
			// applied one by one.
			if err := s.catchUp(ctx); err != nil && ctx.Err() == nil {
				s.lg.Error("audit log: catching up after the ledger loaded a checkpoint failed; the next start catches up", "err", err)
			}
		}
	}
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
	root, err := s.log.Root(ctx, size)
	if err != nil {
		return auditlog.TreeHead{}, nil, err
	}
	h := auditlog.TreeHead{Owner: s.cfg.Self, Size: size, Root: root, Time: s.cfg.Now().UTC().Truncate(time.Millisecond)}
	b, err := auditlog.Sign(h, s.cfg.Key)
	if err != nil {
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

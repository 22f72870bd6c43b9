// Package keys is the key rotation service: `medmesh keys rotate` replaces
// this node's key-wrapping (HPKE) key, and every owner's node keeps the
// grants it issued working across its grantees' rotations.
//
// A rotation generates a new key, keeps the previous one in the repo
// (store.go), announces the new one (key.announce) and re-seals what this
// node owns under it: the wrapped data key it keeps of each of its records.
// The owners of records this node was granted notice the key.announce and
// issue, for every live grant to it, a new grant of the same record,
// purpose and expiry sealed to the new key (Regrant). That is idempotent: a
// grant already sealed to the grantee's current key with the same purpose
// and expiry is not issued again, so a replayed entry or a restart issues
// nothing twice; and it does not stampede: each record's grants are
// re-issued by its owner's node alone, after a short pause that gathers a
// burst of announcements.
//
// The previous key stays until nothing needs it. With --destroy-old it is
// marked, and the node destroys it once (a) none of its own records' keys
// is sealed to it (they are re-sealed at once), (b) every live grant to it
// has a re-issued grant sealed to a key it keeps (or expired, or was
// revoked), and (c) no emergency escrow envelope of a record it can still
// read is sealed to it. What the ledger's record announcements carry
// (each record's owner envelope, sealed to the key the record was added
// under) is not needed while the node keeps its local copies; a node
// restored from a backup taken before the rotation has the old key.
package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// Ledger is what the service reads and appends (the ledger as the other
// services see it: node/erasure.Hide).
type Ledger interface {
	IsMember(p peer.ID) bool
	KEMKey(p peer.ID) ([]byte, bool)
	Record(id cid.Cid) (ledger.RecordInfo, bool)
	Records() []ledger.RecordInfo
	Grants(id cid.Cid) []ledger.Grant
	Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error)
	Subscribe() (<-chan *ledger.Entry, func())
}

// Records is what the service asks of the records service.
type Records interface {
	Owned(ctx context.Context) ([]cid.Cid, error)
	ReadKey(ctx context.Context, info ledger.RecordInfo) (record.Key, *ledger.Grant, error)
	GrantVersion(ctx context.Context, rec cid.Cid, key []byte, grantee peer.ID, pub []byte, purpose string, expires time.Time) (*ledger.Entry, error)
	RewrapOwnerKeys(ctx context.Context) (rewrapped, unopened int, err error)
	OwnerKeysSealedTo(ctx context.Context, id keywrap.KeyID) (int, error)
}

// Config is what the service needs.
type Config struct {
	Self    peer.ID
	Ring    *keywrap.Keyring
	Repo    *repo.Repo
	Ledger  Ledger
	Records Records
	Now     func() time.Time
	Logger  *slog.Logger
	// RegrantDelay gathers a burst of key announcements before re-issuing
	// grants. Default 500 ms.
	RegrantDelay time.Duration
}

// Service is the key rotation service.
type Service struct {
	cfg Config
	log *slog.Logger

	rotateMu sync.Mutex // one rotation at a time

	mu      sync.Mutex
	pending map[peer.ID]bool // grantees whose grants to re-issue
	wake    chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the service.
func New(c Config) (*Service, error) {
	if c.Self == "" || c.Ring == nil || c.Repo == nil || c.Ledger == nil || c.Records == nil {
		return nil, errors.New("keys: Config needs Self, Ring, Repo, Ledger and Records")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RegrantDelay <= 0 {
		c.RegrantDelay = 500 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: c, log: c.Logger, pending: map[peer.ID]bool{}, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel}, nil
}

// Start follows the ledger: key announcements of grantees (re-issue their
// grants) and grants to this node (a marked key may now be destroyed).
func (s *Service) Start() {
	ch, unsubscribe := s.cfg.Ledger.Subscribe()
	s.wg.Go(func() {
		defer unsubscribe()
		s.follow(ch)
	})
	s.wg.Go(s.work)
}

// Close stops the background work.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) follow(ch <-chan *ledger.Entry) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			switch e.Type {
			case ledger.TypeKeyAnnounce:
				if e.Author != s.cfg.Self {
					s.mu.Lock()
					s.pending[e.Author] = true
					s.mu.Unlock()
					s.poke()
				}
			case ledger.TypeGrant, ledger.TypeRevoke, ledger.TypeStateLoaded:
				if len(s.cfg.Ring.Old()) > 0 {
					s.poke()
				}
			}
		}
	}
}

// work re-issues grants to grantees that rotated and destroys the marked
// keys nothing needs any more, after a pause that gathers a burst of
// entries, and once a minute while a key waits to be destroyed.
func (s *Service) work() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	s.destroyUnneeded()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(s.cfg.RegrantDelay):
		}
		s.mu.Lock()
		grantees := s.pending
		s.pending = map[peer.ID]bool{}
		s.mu.Unlock()
		for p := range grantees {
			if n, err := s.Regrant(s.ctx, p); err != nil {
				s.log.Warn("re-issue grants to a grantee that rotated its key", "grantee", p.String(), "err", err)
			} else if n > 0 {
				s.log.Info("re-issued grants sealed to a grantee's new key", "grantee", p.String(), "grants", n)
			}
		}
		s.destroyUnneeded()
	}
}

// Regrant re-issues the live grants of the records this node owns to
// grantee that are not sealed to its current key: same record, purpose
// and expiry. It returns how many it issued. Idempotent.
func (s *Service) Regrant(ctx context.Context, grantee peer.ID) (int, error) {
	pub, ok := s.cfg.Ledger.KEMKey(grantee)
	if !ok || !s.cfg.Ledger.IsMember(grantee) {
		return 0, nil
	}
	cur := keywrap.IDOf(pub)
	owned, err := s.cfg.Records.Owned(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now()
	n := 0
	for _, rec := range owned {
		info, ok := s.cfg.Ledger.Record(rec)
		if !ok || info.Owner != s.cfg.Self {
			continue
		}
		type use struct {
			purpose string
			expires int64
		}
		sealed, stale := map[use]bool{}, map[use]ledger.Grant{}
		for _, g := range s.cfg.Ledger.Grants(rec) {
			if g.Grantee != grantee || !g.LiveAt(now) {
				continue
			}
			u := use{g.Purpose, g.Expires.UnixMilli()}
			var env keywrap.Envelope
			if env.UnmarshalBinary(g.Envelope) == nil && env.KeyID == cur {
				sealed[u] = true
			} else {
				stale[u] = g
			}
		}
		for u, g := range stale {
			if sealed[u] {
				continue
			}
			key, _, err := s.cfg.Records.ReadKey(ctx, info)
			if err != nil {
				return n, fmt.Errorf("the key of record %s: %w", rec, err)
			}
			if _, err := s.cfg.Records.GrantVersion(ctx, rec, key[:], grantee, pub, g.Purpose, g.Expires); err != nil {
				return n, fmt.Errorf("re-issue the grant of %s: %w", rec, err)
			}
			n++
		}
	}
	return n, nil
}

// Rotate replaces this node's key-wrapping key: see the package comment.
// With destroyOld, every previous key is marked to be destroyed once
// nothing needs it.
func (s *Service) Rotate(ctx context.Context, destroyOld bool) (*api.KeyRotateResult, error) {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	if !s.cfg.Ledger.IsMember(s.cfg.Self) {
		return nil, fault.Conflictf("wait until this node's admission reaches its ledger", "this node is not a member yet: its key would reach nobody")
	}
	prev := s.cfg.Ring.Current()
	next, err := keywrap.Generate()
	if err != nil {
		return nil, err
	}
	if err := saveRotation(s.cfg.Repo, prev, next); err != nil {
		return nil, err
	}
	s.cfg.Ring.Rotate(next)
	e, err := s.cfg.Ledger.Append(ctx, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: next.Public()})
	if err != nil {
		// The new key is in use locally; the membership service announces
		// it again as soon as the ledger takes entries.
		return nil, fmt.Errorf("announce the new key: %w", err)
	}
	rewrapped, unopened, err := s.cfg.Records.RewrapOwnerKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("re-seal this node's records' keys: %w", err)
	}
	res := &api.KeyRotateResult{KeyID: shortID(next.ID()), Entry: e.CID().String(), RewrappedCount: rewrapped, OldKeys: []api.OldKey{}}
	if unopened > 0 {
		s.log.Error("some owned records' keys could not be re-sealed", "count", unopened)
	}
	if destroyOld {
		for _, id := range s.cfg.Ring.Old() {
			if err := markDestroy(s.cfg.Repo, id); err != nil {
				return nil, err
			}
		}
	}
	s.log.Info("rotated the key-wrapping key", "key", res.KeyID, "owned_keys_resealed", rewrapped, "destroy_old", destroyOld)
	s.destroyUnneeded()
	res.OldKeys = s.OldKeys(ctx)
	return res, nil
}

// OldKeys describes the previous keys this node keeps.
func (s *Service) OldKeys(ctx context.Context) []api.OldKey {
	out := []api.OldKey{}
	for _, id := range s.cfg.Ring.Old() {
		needs := s.needs(ctx, id)
		ok := api.OldKey{KeyID: shortID(id), NeededBy: needs, Destroy: marked(s.cfg.Repo, id)}
		if ok.NeededBy == nil {
			ok.NeededBy = []string{}
		}
		out = append(out, ok)
	}
	return out
}

// needs says what still needs key id: owned records' keys sealed to it,
// records this node reads only through a grant sealed to it, escrow
// envelopes sealed to it.
func (s *Service) needs(ctx context.Context, id keywrap.KeyID) []string {
	var out []string
	if n, err := s.cfg.Records.OwnerKeysSealedTo(ctx, id); err != nil || n > 0 {
		out = append(out, fmt.Sprintf("%d owned records' keys (re-sealed by the next rotation)", n))
	}
	now := s.cfg.Now()
	grants, escrows := 0, 0
	for _, info := range s.cfg.Ledger.Records() {
		if info.Owner == s.cfg.Self {
			continue
		}
		if raw, ok := info.EscrowFor(s.cfg.Self); ok {
			var env keywrap.Envelope
			if env.UnmarshalBinary(raw) == nil && env.KeyID == id {
				escrows++
			}
		}
		usesOld, hasOther := false, false
		for _, g := range s.cfg.Ledger.Grants(info.ID) {
			if g.Grantee != s.cfg.Self || !g.LiveAt(now) {
				continue
			}
			var env keywrap.Envelope
			if env.UnmarshalBinary(g.Envelope) != nil {
				continue
			}
			if env.KeyID == id {
				usesOld = true
			} else if _, ok := s.cfg.Ring.Key(env.KeyID); ok {
				hasOther = true
			}
		}
		if usesOld && !hasOther {
			grants++
		}
	}
	if grants > 0 {
		out = append(out, fmt.Sprintf("%d records granted to this node whose owners have not re-issued the grant yet", grants))
	}
	if escrows > 0 {
		out = append(out, fmt.Sprintf("%d emergency escrow envelopes", escrows))
	}
	return out
}

// destroyUnneeded destroys the marked previous keys nothing needs.
func (s *Service) destroyUnneeded() {
	for _, id := range s.cfg.Ring.Old() {
		if !marked(s.cfg.Repo, id) {
			continue
		}
		if needs := s.needs(s.ctx, id); len(needs) > 0 {
			s.log.Debug("a previous key is still needed", "key", shortID(id), "by", needs)
			continue
		}
		if err := destroyFile(s.cfg.Repo, id); err != nil {
			s.log.Error("destroy a previous key-wrapping key", "key", shortID(id), "err", err)
			continue
		}
		s.cfg.Ring.Drop(id)
		s.log.Info("destroyed a previous key-wrapping key: nothing needs it any more", "key", shortID(id))
	}
}

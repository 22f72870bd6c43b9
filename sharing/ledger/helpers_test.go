package ledger

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// ident is a test participant: libp2p key plus HPKE key.
type ident struct {
	key crypto.PrivKey
	id  peer.ID
	kem *keywrap.PrivateKey
}

func newIdent(t testing.TB) *ident {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kem, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return &ident{key: k, id: id, kem: kem}
}

var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openAt opens a ledger on a badger store in dir.
func openAt(t testing.TB, dir string, who *ident, genesis []byte) (*Ledger, *blockstore.Store) {
	return openAtEvery(t, dir, who, genesis, 500*time.Millisecond)
}

// openAtEvery is openAt with the ledger syncing every syncInterval.
func openAtEvery(t testing.TB, dir string, who *ident, genesis []byte, syncInterval time.Duration, opts ...func(*Options)) (*Ledger, *blockstore.Store) {
	t.Helper()
	st, err := blockstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{DS: st.DS, Blocks: st.Blocks, Key: who.key, Genesis: genesis, Logger: quietLogger(), Types: testTypes(),
		SyncInterval: syncInterval}
	for _, f := range opts {
		f(&o)
	}
	l, err := Open(context.Background(), o)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return l, st
}

func openNode(t testing.TB, who *ident, genesis []byte) *Ledger {
	t.Helper()
	l, st := openAt(t, t.TempDir(), who, genesis)
	t.Cleanup(func() { l.Close(); st.Close() })
	return l
}

// forge signs an entry as who on top of the given parents (the ledger's
// heads if nil) without applying it anywhere.
func forge(t testing.TB, l *Ledger, who *ident, typ string, payload any, parents []cid.Cid) *Entry {
	t.Helper()
	pl, err := encodePayload(l.core.types, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	scope := ""
	l.mu.Lock()
	if l.core.scoped {
		if scope, err = l.core.scopeFor(context.Background(), who.key, typ, pl); err != nil {
			l.mu.Unlock()
			t.Fatal(err)
		}
	}
	if parents == nil {
		parents = l.core.closureHeads(scope)
	}
	var maxc HLC
	for _, p := range parents {
		if n, _ := l.core.d.get(context.Background(), p); n != nil && maxc.Less(n.clock) {
			maxc = n.clock
		}
	}
	l.mu.Unlock()
	clock := HLC{Wall: maxc.Wall, Counter: maxc.Counter + 1}
	e, err := signScoped(who.key, l.net, scope, typ, pl, parents, clock)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// as forges an entry as who on l's heads and ingests it into l.
func as(t testing.TB, l *Ledger, who *ident, typ string, payload any) *Entry {
	t.Helper()
	e := forge(t, l, who, typ, payload, nil)
	if err := l.Ingest(context.Background(), e.raw); err != nil {
		t.Fatalf("%s by %s: %v", typ, who.id, err)
	}
	return e
}

func fakeCid(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

func envelopeFor(t testing.TB, to *ident, info string) []byte {
	t.Helper()
	dk := make([]byte, keywrap.KeySize)
	rand.Read(dk)
	env, err := keywrap.Wrap(to.kem.Public(), dk, keywrap.Info(info))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := env.MarshalBinary()
	return b
}

func recordPayload(t testing.TB, owner *ident, name string) RecordAnnouncePayload {
	return RecordAnnouncePayload{Record: fakeCid("rec " + name), Blocklist: fakeCid("bl " + name), Size: 1000, Replicas: 3,
		Class: "document", Version: 1, OwnerEnvelope: envelopeFor(t, owner, name)}
}

// world is a small network's identities and genesis.
type world struct {
	admin   *ident
	members []*ident // members[0] == admin
	genesis []byte
	netID   cid.Cid
	// grants[[2]int{owner, reader}] is the grant of the owner's setup
	// record to the reader (grantAll).
	grants map[[2]int]cid.Cid
}

// grantAll has every member grant its setup record to every other member
// (no expiry), built on l, and returns the entries.
func (w *world) grantAll(t testing.TB, l *Ledger) []*Entry {
	t.Helper()
	w.grants = map[[2]int]cid.Cid{}
	var out []*Entry
	for i, o := range w.members {
		rec := recordPayload(t, o, string(rune('a'+i))).Record
		for j, r := range w.members {
			if i == j {
				continue
			}
			e := as(t, l, o, TypeGrant, GrantPayload{Record: rec, Grantee: r.id, Envelope: envelopeFor(t, r, "all"), Purpose: PurposeTreatment})
			w.grants[[2]int{i, j}] = e.CID()
			out = append(out, e)
		}
	}
	return out
}

// claim is reader's valid read claim on owner's setup record (grantAll).
func (w *world) claim(t testing.TB, owner, reader int, at time.Time) AccessPayload {
	t.Helper()
	g, ok := w.grants[[2]int{owner, reader}]
	if !ok {
		t.Fatalf("no grant from member %d to %d (call grantAll)", owner, reader)
	}
	// recordPayload(...).Record, without sealing an envelope per claim.
	return AccessPayload{Record: fakeCid("rec " + string(rune('a'+owner))), Version: 1, Purpose: PurposeTreatment, Time: at, Grant: g}
}

func newWorld(t testing.TB, n int, opts ...GenesisOption) *world {
	t.Helper()
	w := &world{admin: newIdent(t)}
	var err error
	w.genesis, w.netID, err = NewGenesis(w.admin.key, "test", testEpoch, testTypes(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	w.members = []*ident{w.admin}
	for i := 1; i < n; i++ {
		w.members = append(w.members, newIdent(t))
	}
	return w
}

// setup returns the entries that admit every member, announce every key and
// one record per member, built on l (which applies them).
func (w *world) setup(t testing.TB, l *Ledger) []*Entry {
	t.Helper()
	var out []*Entry
	for i, m := range w.members {
		if i > 0 {
			out = append(out, as(t, l, w.admin, TypeMemberAdd, MemberAddPayload{Peer: m.id, Org: "clinic", Roles: []string{RoleEmergency}}))
		}
	}
	for _, m := range w.members {
		out = append(out, as(t, l, m, TypeKeyAnnounce, KeyAnnouncePayload{Public: m.kem.Public()}))
	}
	for i, m := range w.members {
		out = append(out, as(t, l, m, TypeRecordAnnounce, recordPayload(t, m, string(rune('a'+i)))))
	}
	return out
}

func ingestAll(t testing.TB, l *Ledger, es []*Entry) {
	t.Helper()
	for _, e := range es {
		if err := l.Ingest(context.Background(), e.raw); err != nil {
			t.Fatal(err)
		}
	}
}

// heldDraft drafts a checkpoint of scope at l's heads (scopeCheckpointDraft)
// and returns it with its state blocks in memory, the draft closed.
func (l *Ledger) heldDraft(ctx context.Context, scope string) (*Checkpoint, [][]byte, error) {
	d, err := l.scopeCheckpointDraft(ctx, scope)
	if err != nil {
		return nil, nil, err
	}
	defer d.close()
	var blocks [][]byte
	for _, c := range d.ck.Blocks {
		b, err := d.block(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		blocks = append(blocks, b)
	}
	return d.ck, blocks, nil
}

// claimHistory returns a three-member world and the admin's node holding
// its setup, every grant and n read claims after them: a history a peer
// that has only the genesis is n entries behind.
func claimHistory(t testing.TB, n int) (*world, *Ledger) {
	t.Helper()
	w := newWorld(t, 3)
	src := openNode(t, w.admin, w.genesis)
	w.setup(t, src)
	w.grantAll(t, src)
	for i := range n {
		as(t, src, w.admin, TypeAccess, w.claim(t, 1, 0, testEpoch.Add(time.Duration(i)*time.Second)))
	}
	return w, src
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/records"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/replication"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
	mh "github.com/multiformats/go-multihash"
)

var rawPrefix = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}

// ownerInfo binds the owner's own envelope to the record.
func ownerInfo(id cid.Cid) []byte { return keywrap.Info("owner", id.String()) }

// grantInfo binds a grant envelope to record, grantee and purpose.
func grantInfo(id cid.Cid, grantee peer.ID, purpose string) []byte {
	return keywrap.Info("grant", id.String(), grantee.String(), purpose)
}

// Add encrypts and stores a record, announces it on the ledger and the DHT.
func (d *Daemon) Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	if !d.Ledger.IsMember(d.self) {
		return nil, fault.Conflictf("wait until the ledger has synced this node's admission, or ask the admin to invite it", "this node is not (yet) a member of the network")
	}
	if len(req.Files) == 0 {
		return nil, errors.New("a record needs at least one file")
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
		req.Replicas = d.Repo.Config.ReplicationFactor
	}
	version := 1
	if req.Prev.Defined() {
		prev, ok := d.Ledger.Record(req.Prev)
		if !ok {
			return nil, fault.NotFoundf("", "unknown record %s", req.Prev)
		}
		if prev.Owner != d.self {
			return nil, fault.Forbiddenf("only the record's owner can store a new version", "record %s belongs to %s", req.Prev, prev.Owner)
		}
		latest := d.latestVersion(req.Prev)
		req.Prev = latest.ID
		version = int(latest.Version) + 1
	}
	key, err := record.NewKey()
	if err != nil {
		return nil, err
	}
	// The add's blocks go through gc's add protocol (node/gc): a sweep
	// keeps them meanwhile, and a failed or killed add leaves nothing.
	tp, err := d.gc.BeginAdd(ctx)
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
		Created: d.opts.Now(), Version: version, Prev: req.Prev, Meta: req.Meta,
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
	env, err := keywrap.Wrap(d.kem.Public(), key[:], ownerInfo(res.ID))
	if err != nil {
		return nil, err
	}
	envBytes, _ := env.MarshalBinary()
	ann := ledger.RecordAnnouncePayload{
		Record: res.ID, Blocklist: blCID, Size: uint64(res.Size), Replicas: uint32(req.Replicas),
		Class: req.Class, Version: uint64(version), Prev: req.Prev, OwnerEnvelope: envBytes,
	}
	if req.Emergency {
		if ann.Escrow, err = d.escrowEnvelopes(res.ID, key); err != nil {
			return nil, err
		}
	}
	if err := tp.Named(ctx, res.ID); err != nil {
		return nil, err
	}
	if err := d.local.Put(ctx, keyKey(res.ID), envBytes); err != nil {
		return nil, err
	}
	d.access.addBlocks(ctx, res.ID, append(res.Blocks, blCID))
	sealed := time.Now()
	// Make every block durable before the ledger says the record exists.
	if err := d.Store.DS.Sync(ctx, datastore.NewKey("/")); err != nil {
		return nil, fmt.Errorf("sync datastore: %w", err)
	}
	synced := time.Now()
	if _, err := d.Ledger.Append(ctx, ledger.TypeRecordAnnounce, ann); err != nil {
		return nil, fmt.Errorf("announce record on the ledger: %w", err)
	}
	announced := time.Now()
	ok = true
	d.m.recordsAdded.Inc()
	d.m.bytesAdded.Add(float64(res.Size))
	chunks := len(res.Blocks) - 1
	// The manifest and block list are announced before we return, so a peer
	// can find the record at once; the chunks follow in the background.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := d.P2P.Provide(pctx, []cid.Cid{res.ID, blCID}); err != nil {
		d.log.Warn("provide record", "record", res.ID, "err", err)
	}
	cancel()
	d.provideLater(res.Blocks[:chunks])
	d.log.Info("record added", "record", res.ID.String(), "bytes", res.Size, "chunks", chunks,
		"seal_store", sealed.Sub(start).Round(time.Millisecond), "sync", synced.Sub(sealed).Round(time.Millisecond),
		"announce", announced.Sub(synced).Round(time.Millisecond), "provide", time.Since(announced).Round(time.Millisecond))
	return &records.AddResult{ID: res.ID, Manifest: res.Manifest, Size: res.Size, Chunks: chunks, Version: version}, nil
}

func (d *Daemon) provideLater(cids []cid.Cid) {
	if len(cids) == 0 {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.ctx, 10*time.Minute)
		defer cancel()
		if err := d.P2P.Provide(ctx, cids); err != nil && d.ctx.Err() == nil {
			d.log.Warn("provide chunks", "n", len(cids), "err", err)
		}
	}()
}

func keyKey(id cid.Cid) datastore.Key { return datastore.NewKey("/keys/" + id.String()) }

// latestVersion follows the version chain of id to its newest version.
func (d *Daemon) latestVersion(id cid.Cid) ledger.RecordInfo {
	vs := d.Ledger.Versions(id)
	best, _ := d.Ledger.Record(id)
	for _, v := range vs {
		if v.Version > best.Version {
			best = v
		}
	}
	return best
}

// readKey finds this node's data key for a record: its own envelope if it
// owns the record, else a current grant to it.
func (d *Daemon) readKey(ctx context.Context, info ledger.RecordInfo) (record.Key, *ledger.Grant, error) {
	var key record.Key
	if info.Owner == d.self {
		raw, err := d.local.Get(ctx, keyKey(info.ID))
		if errors.Is(err, datastore.ErrNotFound) {
			raw, err = info.OwnerEnvelope, nil
		}
		if err != nil {
			return key, nil, err
		}
		k, err := d.unwrap(raw, ownerInfo(info.ID))
		return k, nil, err
	}
	// Try the grants in the order the holders' policy prefers them, so the
	// claim names the grant the holders attest.
	for _, g := range d.readGrants(info.ID, d.opts.Now()) {
		k, err := d.unwrap(g.Envelope, grantInfo(info.ID, d.self, g.Purpose))
		if err != nil {
			d.log.Warn("grant envelope does not open", "record", info.ID, "entry", g.Entry, "err", err)
			continue
		}
		g := g
		return k, &g, nil
	}
	return key, nil, api.Errorf(http.StatusForbidden,
		fmt.Sprintf("ask the owner (%s) for a grant: `medmesh grant %s --to %s`", info.Owner, info.ID, d.self),
		"no key for this record: this node has no current grant for %s", info.ID)
}

// ClockSkew is the margin by which a grant is honoured past its expiry
// (ledger.ClockSkew: the ledger's rules and every node's policy use it).
const ClockSkew = ledger.ClockSkew

func grantLive(g ledger.Grant, now time.Time) bool { return g.LiveAt(now) }

func (d *Daemon) unwrap(raw []byte, info []byte) (record.Key, error) {
	var key record.Key
	var env keywrap.Envelope
	if err := env.UnmarshalBinary(raw); err != nil {
		return key, err
	}
	k, err := keywrap.Unwrap(d.kem, &env, info)
	if err != nil {
		return key, err
	}
	copy(key[:], k)
	return key, nil
}

// resolve finds which version of a record the caller reads, and its key.
func (d *Daemon) resolve(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, record.Key, *ledger.Grant, error) {
	info, ok := d.Ledger.Record(id)
	if !ok {
		return info, record.Key{}, nil, fault.NotFoundf("check the record ID; if it was just added, wait for the ledger to sync", "unknown record %s: not announced on this node's ledger", id)
	}
	chain := d.Ledger.Versions(id)
	sort.Slice(chain, func(i, j int) bool { return chain[i].Version > chain[j].Version })
	var firstErr error
	for _, v := range chain {
		if version > 0 && int(v.Version) != version {
			continue
		}
		key, g, err := d.readKey(ctx, v)
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
func (d *Daemon) Open(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	return d.OpenFor(ctx, id, version, "")
}

// OpenFor fetches and decrypts a record's manifest. Opening another
// node's record is a read: this node claims it on the ledger with the
// purpose it states (purpose, or the grant's when empty), and the holder
// that serves the manifest attests it (unless this node had kept a copy,
// which the owner's audit then shows as reported by the reader only).
func (d *Daemon) OpenFor(ctx context.Context, id cid.Cid, version int, purpose string) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	info, key, g, err := d.resolve(ctx, id, version)
	if err != nil {
		return info, nil, key, nil, err
	}
	// A read keeps no copy of what it fetches (p2p.NoKeep): the nodes that
	// hold a record are the owner and the replicas placed on the ledger.
	fctx, cancel := context.WithTimeout(p2p.NoKeep(ctx), d.opts.FetchTimeout)
	defer cancel()
	mg := &manifestGetter{d: d, holders: d.readHolders(info)}
	m, err := record.OpenManifest(fctx, mg, info.ID, key)
	if err != nil {
		if fctx.Err() != nil {
			return info, nil, key, nil, fault.Unavailablef("check that a node holding it is up and reachable", "record %s could not be found on the network within %v", info.ID, d.opts.FetchTimeout)
		}
		return info, nil, key, nil, err
	}
	// Index the record's blocks here too: should any of them be or come
	// to be stored on this node, the block filter serves them only to
	// peers allowed to read the record (it refuses blocks of no known
	// record).
	d.access.addBlocks(ctx, info.ID, m.Blocks(info.ID))
	d.claim(ctx, info, purpose, g)
	return info, m, key, g, nil
}

// manifestGetter fetches a record's manifest from one holder at a time
// (p2p.GetFrom): each read fetches it once, and the holder that serves it
// attests the read.
type manifestGetter struct {
	d       *Daemon
	holders []peer.ID
}

func (g *manifestGetter) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	return g.d.P2P.GetFrom(ctx, c, g.holders)
}

// readHolders are the record's holders in the order a read asks them for
// its manifest: connected ones first, so a read does not wait on a dial.
func (d *Daemon) readHolders(info ledger.RecordInfo) []peer.ID {
	hs := d.holders(info)
	sort.SliceStable(hs, func(i, j int) bool {
		return d.P2P.Host.Network().Connectedness(hs[i]) == network.Connected && d.P2P.Host.Network().Connectedness(hs[j]) != network.Connected
	})
	return hs
}

// ReadFiles streams files of an opened record into w, in order.
func (d *Daemon) ReadFiles(ctx context.Context, m *record.Manifest, key record.Key, which []int, w io.Writer) error {
	for _, i := range which {
		if i < 0 || i >= len(m.Files) {
			return fault.NotFoundf("", "record has no file %d", i)
		}
		if err := d.readFile(ctx, key, m.Files[i], i, w); err != nil {
			return err
		}
	}
	return nil
}

// readConcurrency is how many chunks ReadFile fetches and decrypts at once,
// and readAhead how many more the file's fetch may deliver before the
// reader asks for them.
const (
	readConcurrency = 32
	readAhead       = 32
)

// readFile reads one file with one network fetch of all its chunks (so the
// p2p layer can stream them in bulk from their holders), not one per chunk.
func (d *Daemon) readFile(ctx context.Context, key record.Key, f record.File, i int, w io.Writer) error {
	ctx, cancel := context.WithCancel(p2p.NoKeep(ctx)) // a read keeps no copy (see Open)
	defer cancel()
	cids := make([]cid.Cid, len(f.Chunks))
	for j, c := range f.Chunks {
		cids[j] = c.CID
	}
	g := newFileGetter(d.P2P, len(cids))
	go g.fetch(ctx, cids)
	return record.ReadFile(ctx, g, key, f, i, w, record.ReadOptions{Concurrency: readConcurrency, GetterVerifies: true})
}

// blockGetter is what fileGetter falls back to: p2p.Node.
type blockGetter interface {
	Get(ctx context.Context, c cid.Cid) (blocks.Block, error)
	GetMany(ctx context.Context, cids []cid.Cid, fn func(blocks.Block) error) error
}

// fileGetter serves ReadFile's per-chunk Gets from one GetMany over the
// whole file. GetMany delivers blocks (verified) into ready; a Get takes its
// block from there, or registers as the waiter for its CID and is woken by
// that block alone. (Waking every waiting reader for every block, as a
// sync.Cond broadcast did, kept some 30 goroutines runnable per block: a
// scheduler trace of a 1 GiB get showed 6.5 s of run-queue waits in 2 s.)
// ready holds up to limit blocks nobody asked for yet; while a Get waits
// for a block that has not arrived (the fetch delivers out of order) it may
// grow to hard, and when it is that full, or the fetch ended, waiting Gets
// fetch their blocks themselves, so the reader never waits on a fetch that
// waits on the reader.
type fileGetter struct {
	net         blockGetter
	limit, hard int

	mu       sync.Mutex
	room     *sync.Cond // the fetch waits here for room in ready
	ready    map[cid.Cid]blocks.Block
	waiters  map[cid.Cid]chan struct{} // closed when the block is in ready, or the Get should fetch it itself
	finished bool                      // the fetch returned
}

func newFileGetter(net blockGetter, chunks int) *fileGetter {
	limit := min(readAhead, max(chunks, 1))
	g := &fileGetter{net: net, limit: limit, hard: 2 * limit, ready: map[cid.Cid]blocks.Block{}, waiters: map[cid.Cid]chan struct{}{}}
	g.room = sync.NewCond(&g.mu)
	return g
}

// full says the fetch must wait: ready is at the hard bound, or at limit
// with no reader waiting for a block still to come.
func (g *fileGetter) full() bool {
	return len(g.ready) >= g.hard || len(g.ready) >= g.limit && len(g.waiters) == 0
}

// release wakes every waiting Get; those whose block is not in ready
// fetch it themselves. Called with mu held.
func (g *fileGetter) release() {
	for c, ch := range g.waiters {
		close(ch)
		delete(g.waiters, c)
	}
}

// fetch runs the file's GetMany until it ends or ctx does.
func (g *fileGetter) fetch(ctx context.Context, cids []cid.Cid) {
	finish := func() {
		g.mu.Lock()
		g.finished = true // what is in ready stays there for its Get
		g.release()
		g.room.Broadcast()
		g.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, finish)
	defer stop()
	_ = g.net.GetMany(ctx, cids, func(b blocks.Block) error {
		g.mu.Lock()
		defer g.mu.Unlock()
		for !g.finished && g.full() {
			if len(g.ready) >= g.hard {
				g.release()
			}
			g.room.Wait()
		}
		if g.finished {
			return ctx.Err()
		}
		g.ready[b.Cid()] = b
		if ch, ok := g.waiters[b.Cid()]; ok {
			close(ch)
			delete(g.waiters, b.Cid())
		}
		return nil
	})
	finish()
}

// take removes c from ready. Called with mu held.
func (g *fileGetter) take(c cid.Cid) (blocks.Block, bool) {
	b, ok := g.ready[c]
	if ok {
		delete(g.ready, c)
		g.room.Signal() // the fetch may be waiting for room
	}
	return b, ok
}

// Get returns block c from the file's fetch, or fetches it directly.
func (g *fileGetter) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	g.mu.Lock()
	if b, ok := g.take(c); ok {
		g.mu.Unlock()
		return b, nil
	}
	_, dup := g.waiters[c]
	if g.finished || dup || len(g.ready) >= g.hard {
		g.mu.Unlock()
		return g.direct(ctx, c)
	}
	ch := make(chan struct{})
	g.waiters[c] = ch
	g.room.Signal() // a fetch held at limit may go on: someone waits
	g.mu.Unlock()

	select {
	case <-ch:
	case <-ctx.Done():
		g.mu.Lock()
		if g.waiters[c] == ch {
			delete(g.waiters, c)
		}
		g.mu.Unlock()
		return nil, ctx.Err()
	}
	g.mu.Lock()
	b, ok := g.take(c)
	g.mu.Unlock()
	if ok {
		return b, nil
	}
	return g.direct(ctx, c)
}

func (g *fileGetter) direct(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return g.net.Get(ctx, c)
}

// claim records on the ledger that this node read someone else's record
// under grant g, with the purpose it states (the grant's if empty). The
// nodes that served the read attest it too; the owner's audit shows where
// the two disagree.
func (d *Daemon) claim(ctx context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant) {
	if info.Owner == d.self || g == nil {
		return
	}
	if purpose == "" {
		purpose = g.Purpose
	}
	ev := ledger.AccessPayload{Record: info.ID, Version: info.Version, Purpose: purpose, Time: d.opts.Now(), Grant: g.Entry}
	if _, err := d.Ledger.Append(context.WithoutCancel(ctx), ledger.TypeAccess, ev); err != nil {
		d.log.Error("audit: could not record access on the ledger", "record", info.ID, "err", err)
	}
}

// audit counts a completed read of someone else's record (the claim was
// made when its manifest was fetched: OpenFor).
func (d *Daemon) audit(_ context.Context, info ledger.RecordInfo, _ string, _ *ledger.Grant) {
	if info.Owner != d.self {
		d.m.recordsRead.Inc()
	}
}

// Get streams a record's plaintext into w.
func (d *Daemon) Get(ctx context.Context, id cid.Cid, req records.GetRequest, w io.Writer) error {
	info, m, key, g, err := d.OpenFor(ctx, id, req.Version, req.Purpose)
	if err != nil {
		return err
	}
	// The owner and replica holders are where the blocks are: the fetch
	// streams from them without a DHT lookup first.
	ctx = p2p.WithHolders(ctx, d.holders(info)...)
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
	if err := d.ReadFiles(ctx, m, key, which, w); err != nil {
		return err
	}
	d.audit(ctx, info, req.Purpose, g)
	return nil
}

// List returns the records this node owns, holds or may read.
func (d *Daemon) List(ctx context.Context) ([]api.Record, error) {
	out := []api.Record{}
	now := d.opts.Now()
	for _, r := range d.Ledger.Records() {
		mine := r.Owner == d.self
		held, _ := d.Store.Blocks.Has(ctx, r.ID)
		readable := mine
		if !mine {
			for _, g := range d.Ledger.Grants(r.ID) {
				if g.Grantee == d.self && grantLive(g, now) {
					readable = true
				}
			}
		}
		if !mine && !held && !readable {
			continue
		}
		holders := d.holders(r)
		rec := api.Record{
			ID: r.ID.String(), Size: int64(r.Size), Owner: r.Owner.String(), Class: r.Class,
			Version: int(r.Version), Created: r.Announced, Mine: mine, Held: held, Readable: readable,
			Replicas: int(r.Replicas), Holders: peerStrings(holders), Under: len(holders) < int(r.Replicas),
		}
		if r.Prev.Defined() {
			rec.Prev = r.Prev.String()
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// holders are the peers with a current "held" receipt, plus the owner.
func (d *Daemon) holders(r ledger.RecordInfo) []peer.ID { return replication.Holders(d.Ledger, r) }

// peerStrings renders peer IDs for the API (an empty list, never nil).
func peerStrings(ps []peer.ID) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

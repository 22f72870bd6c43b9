package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"github.com/medmesh/medmesh/node/records"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/ledger"
	mh "github.com/multiformats/go-multihash"
)

// startOne starts a one-node network's daemon in dir, creating it first.
func startOne(t *testing.T, dir string) *Daemon {
	t.Helper()
	if _, err := repo.Open(dir); err != nil {
		r, err := repo.Init(dir, repo.InitOptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, API: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		key, err := r.Identity()
		if err != nil {
			t.Fatal(err)
		}
		gen, _, err := ledger.NewGenesis(key, "gc-test", time.Now(), LedgerTypes())
		if err != nil {
			t.Fatal(err)
		}
		psk, _ := repo.NewPSK()
		if err := r.SetNetwork(&repo.Network{Genesis: gen, PSK: psk}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Start(context.Background(), dir, Options{Logger: slog.New(slog.DiscardHandler), Replication: ReplicationOptions{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The records service's keys in the local datastore (node/records): a
// record's wrapped key, and a block's index entry.
func keyKey(rec cid.Cid) datastore.Key    { return datastore.NewKey("/keys/" + rec.String()) }
func blockIdxKey(b cid.Cid) datastore.Key { return datastore.NewKey("/blockidx/" + b.String()) }

var rawPrefix = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}

func rawBlock(t *testing.T, n int) blocks.Block {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	c, _ := rawPrefix.Sum(b)
	blk, _ := blocks.NewBlockWithCid(b, c)
	return blk
}

func has(t *testing.T, d *Daemon, c cid.Cid) bool {
	t.Helper()
	ok, err := d.Store.Blocks.Has(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func markers(t *testing.T, d *Daemon) int {
	t.Helper()
	n, err := d.gc.Markers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An add interrupted at each point of its protocol (here: the daemon
// stops without the add ending, as when it is killed) is cleaned up by the
// next start: before it knew its record, after it stored the record's key
// and block index entries, and after the record reached the ledger (then
// nothing of it may go). A start without an interrupted add sweeps nothing.
func TestInterruptedAddsCleanedAtStart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "n")
	d := startOne(t, dir)

	// A finished record, to survive everything below.
	data := make([]byte, 2<<20+7)
	rand.Read(data)
	res, err := d.Records.Add(ctx, records.AddRequest{Name: "keep.bin", Files: []records.FileSource{{Path: "keep.bin", Open: func() (io.Reader, error) { return bytes.NewReader(data), nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	if markers(t, d) != 0 {
		t.Fatal("a finished add left its marker")
	}

	// (a) Killed while storing chunks.
	tpA, err := d.gc.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var blocksA []cid.Cid
	for i := 0; i < 3; i++ {
		b := rawBlock(t, 1<<20)
		if err := tpA.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
		blocksA = append(blocksA, b.Cid())
	}
	// (b) Killed after storing the record's key and index, before the ledger.
	tpB, err := d.gc.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	manifest, chunk := rawBlock(t, 300), rawBlock(t, 4096)
	for _, b := range []blocks.Block{chunk, manifest} {
		if err := tpB.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	recB := manifest.Cid()
	if err := tpB.Named(ctx, recB); err != nil {
		t.Fatal(err)
	}
	if err := d.local.Put(ctx, keyKey(recB), []byte("wrapped key")); err != nil {
		t.Fatal(err)
	}
	d.Records.AddBlocks(ctx, recB, []cid.Cid{chunk.Cid(), manifest.Cid()})
	// (c) Killed after the ledger announced the record, before the marker
	// was removed.
	tpC, err := d.gc.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tpC.Named(ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := d.gc.Stat(ctx); err != nil || st.OrphanBlockCount != 0 || st.RunningAddCount != 3 {
		t.Fatalf("repo stat with three adds running: %+v %v", st, err)
	}
	if err := d.Close(); err != nil { // as a kill would: no add ends
		t.Fatal(err)
	}

	d = startOne(t, dir)
	defer d.Close()
	for _, c := range append(blocksA, recB, chunk.Cid()) {
		if has(t, d, c) {
			t.Fatalf("block %s of an interrupted add survived the restart", c)
		}
	}
	if ok, _ := d.local.Has(ctx, keyKey(recB)); ok {
		t.Fatal("the interrupted add's wrapped key survived")
	}
	if _, ok := d.Records.RecordOf(chunk.Cid()); ok {
		t.Fatal("the interrupted add's block index entry survived (memory)")
	}
	if ok, _ := d.local.Has(ctx, blockIdxKey(chunk.Cid())); ok {
		t.Fatal("the interrupted add's block index entry survived (datastore)")
	}
	if markers(t, d) != 0 {
		t.Fatal("markers survived the restart")
	}
	var buf bytes.Buffer
	if err := d.Records.Get(ctx, res.ID, records.GetRequest{File: -1}, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("the finished record after the restart: %v", err)
	}
	if ok, _ := d.local.Has(ctx, keyKey(res.ID)); !ok {
		t.Fatal("the finished record lost its key")
	}
	st, err := d.gc.Stat(ctx)
	if err != nil || st.OrphanBlockCount != 0 || st.OwnedRecordCount != 1 {
		t.Fatalf("repo stat after the restart: %+v %v", st, err)
	}

	// No marker, no sweep at start: an orphan stays until gc.
	orphan := rawBlock(t, 1000)
	if err := d.Store.Blocks.Put(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = startOne(t, dir)
	defer d.Close()
	if !has(t, d, orphan.Cid()) {
		t.Fatal("a start without an interrupted add swept the store")
	}
	gc, err := d.gc.GC(ctx)
	if err != nil || gc.RemovedBlockCount != 1 || has(t, d, orphan.Cid()) {
		t.Fatalf("gc: %+v %v", gc, err)
	}
	if err := d.Ledger.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

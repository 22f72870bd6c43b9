package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
	"github.com/medmesh/medmesh/storage/record"
	"github.com/multiformats/go-multihash"
)

func repoStat(t *testing.T, nd *devnet.Node) api.RepoStat {
	t.Helper()
	var st api.RepoStat
	if err := nd.API.Do(context.Background(), "GET", api.Prefix+"/repo/stat", nil, &st); err != nil {
		t.Fatalf("repo stat on %s: %v", nd.Name, err)
	}
	return st
}

func runGC(t *testing.T, nd *devnet.Node) api.GCResult {
	t.Helper()
	var res api.GCResult
	if err := nd.API.Do(context.Background(), "POST", api.Prefix+"/gc", nil, &res); err != nil {
		t.Fatalf("gc on %s: %v", nd.Name, err)
	}
	return res
}

// putOrphans stores n random blocks of size bytes that belong to nothing.
func putOrphans(t *testing.T, nd *devnet.Node, n, size int) []cid.Cid {
	t.Helper()
	var out []cid.Cid
	for i := 0; i < n; i++ {
		data := randomBytes(size)
		c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: -1}.Sum(data)
		b, _ := blocks.NewBlockWithCid(data, c)
		if err := nd.Daemon.Store.Blocks.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// blocksOf lists a record's blocks: its block list and every block it names.
func blocksOf(t *testing.T, nd *devnet.Node, rec cid.Cid) []cid.Cid {
	t.Helper()
	info := mustRecord(t, nd, rec)
	b, err := nd.Daemon.Store.Blocks.Get(context.Background(), info.Blocklist)
	if err != nil {
		t.Fatalf("block list of %s on %s: %v", rec, nd.Name, err)
	}
	ids, err := record.DecodeBlockList(b.RawData())
	if err != nil {
		t.Fatal(err)
	}
	return append(ids, info.Blocklist)
}

// TestGCKeepsWhatIsLive: on every node of a network with every kind of
// block a node writes (owned records and their versions, an empty record,
// a DICOM study, replicas held for others, ledger entries, a record read
// under a grant), repo stat counts exactly the injected orphans, gc
// removes exactly those, and everything else still reads back and
// verifies.
func TestGCKeepsWhatIsLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	n, err := devnet.Start(ctx, t.TempDir(), []string{"A", "B", "C"}, devnet.Options{Daemon: replOpts(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	A, C := n.Nodes[0], n.Nodes[2]

	r1data := randomBytes(3<<20 + 11)
	r1 := replAdd(t, A, r1data, 2)
	r2data := randomBytes(200 << 10)
	r2 := add(t, A, r2data)
	v2data := randomBytes(300 << 10)
	var v2 api.AddResult
	if err := A.API.Upload(ctx, api.Prefix+"/records/"+r2.ID+"/versions?name=v2.pdf", bytes.NewReader(v2data), int64(len(v2data)), &v2); err != nil {
		t.Fatal(err)
	}
	empty := add(t, A, nil)
	sdir := t.TempDir()
	if _, err := dicomtest.WriteStudy(sdir, dicomtest.Options{SeriesPerStudy: 1, InstancesPerSeries: 3, Rows: 16, Cols: 16, Seed: 77}); err != nil {
		t.Fatal(err)
	}
	imp := dicomImport(t, A, sdir)
	if len(imp.Studies) != 1 {
		t.Fatalf("dicom import: %+v", imp)
	}
	study, _ := cid.Decode(imp.Studies[0].ID)
	grant(t, A, v2.ID, C, "treatment", "")
	sync(t, n)
	if got, err := get(C, v2.ID, 0); err != nil || !bytes.Equal(got, v2data) {
		t.Fatalf("C reads v2 under its grant: %v", err)
	}
	// Replicas settle: r1 on one other node, the study on both; A attests
	// C's read (within a second). Until then ledger entries still arrive,
	// and a block stored between repo stat and gc would be counted by one
	// and not the other.
	waitFor(t, "replicas held and C's read attested", 30*time.Second, func() (bool, string) {
		var evs []api.AccessEvent
		if err := A.API.Do(ctx, "GET", api.Prefix+"/records/"+v2.ID+"/audit", nil, &evs); err != nil {
			return false, err.Error()
		}
		attested := len(evs) > 0 && len(evs[0].AttestedBy) > 0
		return len(heldBy(A, r1)) == 1 && len(heldBy(A, study)) == 2 && attested,
			fmt.Sprintf("r1 %d, study %d, attested %v", len(heldBy(A, r1)), len(heldBy(A, study)), attested)
	})
	sync(t, n)

	for _, nd := range n.Nodes {
		injected := putOrphans(t, nd, 4, 1<<20)
		injected = append(injected, putOrphans(t, nd, 3, 100)...)
		st := repoStat(t, nd)
		if st.OrphanBlockCount != len(injected) {
			t.Fatalf("%s: repo stat counts %d orphans, injected %d: %+v", nd.Name, st.OrphanBlockCount, len(injected), st)
		}
		if st.LedgerEntryCount == 0 || st.BlockCount <= st.OrphanBlockCount+st.LedgerEntryCount && nd != C {
			t.Fatalf("%s: repo stat: %+v", nd.Name, st)
		}
		res := runGC(t, nd)
		if res.RemovedBlockCount != len(injected) || res.KeptBlockCount != st.BlockCount-len(injected) || res.RemovedSize < 4<<20 {
			t.Fatalf("%s: gc removed %+v, want the %d injected blocks of %+v", nd.Name, res, len(injected), st)
		}
		for _, c := range injected {
			if ok, _ := nd.Daemon.Store.Blocks.Has(ctx, c); ok {
				t.Fatalf("%s: gc left orphan %s", nd.Name, c)
			}
		}
		if st := repoStat(t, nd); st.OrphanBlockCount != 0 {
			t.Fatalf("%s: orphans after gc: %+v", nd.Name, st)
		}
		if err := nd.Daemon.Ledger.Verify(ctx); err != nil {
			t.Fatalf("%s: ledger after gc: %v", nd.Name, err)
		}
	}

	// The owner's records read back, every version; the study exports
	// byte for byte.
	for id, want := range map[string][]byte{r1.String(): r1data, v2.ID: v2data, empty.ID: nil} {
		if got, err := get(A, id, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after gc: %v", id, err)
		}
	}
	if got, err := get(A, r2.ID, 1); err != nil || !bytes.Equal(got, r2data) {
		t.Fatalf("r2 v1 after gc: %v", err)
	}
	out := t.TempDir()
	if _, err := dicomExport(A, study.String(), out, ""); err != nil {
		t.Fatal(err)
	}
	src, got := hashTree(t, sdir), hashTree(t, out)
	if len(got) != len(src) {
		t.Fatalf("study after gc: %d files, want %d", len(got), len(src))
	}
	for h := range got {
		if _, ok := src[h]; !ok {
			t.Fatal("study after gc does not export byte for byte")
		}
	}
	// Holders kept every block of what they hold.
	for _, rec := range []cid.Cid{r1, study} {
		for p := range heldBy(A, rec) {
			X := byID(n, p)
			for _, c := range blocksOf(t, A, rec) {
				if ok, _ := X.Daemon.Store.Blocks.Has(ctx, c); !ok {
					t.Fatalf("gc on holder %s removed block %s of %s", X.Name, c, rec)
				}
			}
		}
	}
	// C, which reads under a grant and holds no copy, still reads.
	if got, err := get(C, v2.ID, 0); err != nil || !bytes.Equal(got, v2data) {
		t.Fatalf("C reads v2 after gc: %v", err)
	}
}

// TestGCDuringAdd: gc while an add streams in removes none of its blocks
// (they are not orphans), and the add completes and reads back.
func TestGCDuringAdd(t *testing.T) {
	n, _ := startNet(t, "A")
	A := n.Nodes[0]
	data := randomBytes(24 << 20)
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(data); off += 256 << 10 {
			if _, err := pw.Write(data[off : off+256<<10]); err != nil {
				return
			}
			time.Sleep(3 * time.Millisecond)
		}
		pw.Close()
	}()
	done := make(chan error, 1)
	var res api.AddResult
	go func() {
		done <- A.API.Upload(context.Background(), api.Prefix+"/records?"+url.Values{"name": {"big.bin"}, "replicas": {"1"}}.Encode(), pr, int64(len(data)), &res)
	}()
	gcs, skipped := 0, 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
			st := repoStat(t, A)
			if st.OrphanBlockCount != 0 {
				t.Fatalf("an add in progress counted as orphans: %+v", st)
			}
			g := runGC(t, A)
			if g.RemovedBlockCount != 0 {
				t.Fatalf("gc during an add removed %d blocks", g.RemovedBlockCount)
			}
			gcs++
			skipped += g.SkippedBlockCount
			time.Sleep(20 * time.Millisecond)
		}
	}
	if gcs < 2 || skipped == 0 {
		t.Fatalf("%d gc runs during the add, %d blocks skipped in progress: the add was not caught running", gcs, skipped)
	}
	if got, err := get(A, res.ID, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the add after gc: %v", err)
	}
	if st := repoStat(t, A); st.OrphanBlockCount != 0 || st.RunningAddCount != 0 || st.RecordCount != 1 {
		t.Fatalf("repo stat after the add: %+v", st)
	}
}

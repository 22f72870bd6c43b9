package daemon_test

import (
	"bytes"
	"context"
	"github.com/medmesh/medmesh/node/api"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// fetchStats are a node's block-fetch counters: blocks received over the
// bulk protocol and over bitswap (with bitswap's duplicates), and blocks it
// served over the bulk protocol.
type fetchStats struct {
	bulk, bitswap, dup, bulkServed float64
}

func readFetchStats(t testing.TB, nd *devnet.Node) fetchStats {
	t.Helper()
	st, err := nd.Daemon.P2P.Bitswap.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fetchStats{
		bulk:       metricValue(t, nd, "medmesh_bulk_fetched_blocks_total"),
		bulkServed: metricValue(t, nd, "medmesh_bulk_served_blocks_total"),
		bitswap:    float64(st.BlocksReceived),
		dup:        float64(st.DupBlksReceived),
	}
}

func (a fetchStats) sub(b fetchStats) fetchStats {
	return fetchStats{a.bulk - b.bulk, a.bitswap - b.bitswap, a.dup - b.dup, a.bulkServed - b.bulkServed}
}

// metricValue reads an unlabelled counter from a node's /metrics (0 when
// it has not been exported yet).
func metricValue(t testing.TB, nd *devnet.Node, name string) float64 {
	t.Helper()
	var buf bytes.Buffer
	if err := nd.API.DownloadRaw(context.Background(), "/metrics", &buf); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmtSscan(v, &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// oneHolderDataset starts a clinic and a researcher with replication off
// (the clinic is the one holder of every record, and the researcher can
// never be a replica holder), imports the studies opts describes on the
// clinic with research consent for every patient, publishes them as
// dataset name and grants it to the researcher.
func oneHolderDataset(t testing.TB, name string, opts dicomtest.Options) (n *devnet.Net, C, R *devnet.Node, ds api.DatasetCreateResult) {
	t.Helper()
	ctx := context.Background()
	n, err := devnet.Start(ctx, t.TempDir(), []string{"clinic", "researcher"},
		devnet.Options{Daemon: daemon.Options{FetchTimeout: 60 * time.Second, StallTimeout: 2 * time.Second,
			Replication: daemon.ReplicationOptions{Disabled: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	C, R = n.Nodes[0], n.Nodes[1]
	paths, err := dicomtest.WriteStudy(filepath.Join(t.TempDir(), "src"), opts)
	if err != nil {
		t.Fatal(err)
	}
	dicomImport(t, C, paths...)
	for p := 1; p <= opts.Patients; p++ {
		consent(t, C, "/consents", api.ConsentRequest{Patient: dicomtest.PatientID(p), Purpose: "research"})
	}
	ds = createDataset(t, C, api.DatasetCreateRequest{Name: name, Query: "modality=" + opts.Modality})
	if len(ds.Studies) != opts.Patients {
		t.Fatalf("dataset %s has %d studies, want %d", name, len(ds.Studies), opts.Patients)
	}
	grantDataset(t, C, name, R)
	if err := n.WaitLedgerSync(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return n, C, R, ds
}

// TestDatasetFetchBulk: a dataset fetch streams the instances from the
// study records' holders over the bulk block protocol (not bitswap), and
// the researcher keeps no copy of what it read.
func TestDatasetFetchBulk(t *testing.T) {
	ctx := context.Background()
	_, C, R, ds := oneHolderDataset(t, "bulk", dicomtest.Options{Patients: 2, SeriesPerStudy: 2, InstancesPerSeries: 3, Rows: 64, Cols: 64, Modality: "MR", Seed: 7})

	rBefore, cBefore := readFetchStats(t, R), readFetchStats(t, C)
	res, err := R.Daemon.Research.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{ds.ID}, Dir: filepath.Join(t.TempDir(), "out")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 12 {
		t.Fatalf("fetched %d instances, want 12", res.Fetched)
	}
	r, c := readFetchStats(t, R).sub(rBefore), readFetchStats(t, C).sub(cBefore)

	// Every instance chunk came over the bulk protocol from the clinic;
	// bitswap fetched at most the records' manifest blocks, never twice.
	var chunks int
	for _, s := range ds.Studies {
		id, err := cid.Decode(s.Record)
		if err != nil {
			t.Fatal(err)
		}
		_, m, _, _, err := R.Daemon.Records.Open(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m.Files {
			chunks += len(f.Chunks)
		}
		// Reading keeps no copy: the researcher holds no block of it.
		for _, b := range m.Blocks(id) {
			if has, _ := R.Daemon.Store.Blocks.Has(ctx, b); has {
				t.Fatalf("researcher kept block %s of study record %s", b, id)
			}
		}
	}
	if r.bulk < float64(chunks) || c.bulkServed < float64(chunks) {
		t.Fatalf("bulk: researcher received %v blocks, clinic served %v; want at least the %d instance chunks (bitswap: %v)", r.bulk, c.bulkServed, chunks, r.bitswap)
	}
	if r.dup != 0 {
		t.Fatalf("bitswap received %v duplicate blocks", r.dup)
	}
}

package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/gc"
	"github.com/medmesh/medmesh/node/replication"
)

type fakeReplicator struct {
	st  replication.Status
	err error
}

func (f fakeReplicator) Status(_ context.Context, id cid.Cid) (replication.Status, error) {
	if f.err != nil {
		return replication.Status{}, f.err
	}
	st := f.st
	st.Record = id
	return st, nil
}

func (f fakeReplicator) Reprovide(context.Context) (replication.ReprovideResult, error) {
	return replication.ReprovideResult{Blocks: 30, Failed: 2, Duration: 1500 * time.Millisecond}, f.err
}

type fakeCollector struct{ err error }

func (f fakeCollector) GC(context.Context) (gc.Result, error) {
	return gc.Result{RemovedBlockCount: 3, RemovedSize: 300, KeptBlockCount: 7, DiskSize: 4096}, f.err
}

func (f fakeCollector) Stat(context.Context) (gc.Stat, error) {
	return gc.Stat{BlockCount: 10, OrphanBlockCount: 3, RunningAddCount: 1}, f.err
}

// call serves one request through the areas and returns its status and
// body.
func call(t *testing.T, method, path string, areas ...Area) (int, string) {
	t.Helper()
	const token = "t0ken"
	srv := httptest.NewServer(New(token, slog.New(slog.DiscardHandler), areas...))
	defer srv.Close()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The status route speaks the one JSON vocabulary: peers as strings, empty
// lists as [], a time never verified as null; errors keep their kind.
func TestReplicationArea(t *testing.T) {
	id := testCID("a record")
	owner := peer.ID("owner")
	area := Replication{R: fakeReplicator{st: replication.Status{Replicas: 3, Holders: []peer.ID{owner}, Reachable: []peer.ID{owner}}}}
	code, body := call(t, "GET", p+"/records/"+id.String()+"/status", area)
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("status: %d %s %v", code, body, err)
	}
	holders, _ := st["holders"].([]any)
	providers, isList := st["providers"].([]any)
	if st["id"] != id.String() || st["replicas"] != 3.0 || st["last_verified"] != nil ||
		len(holders) != 1 || holders[0] != owner.String() || !isList || len(providers) != 0 {
		t.Fatalf("status JSON: %s", body)
	}

	if code, body := call(t, "GET", p+"/records/not-a-cid/status", area); code != http.StatusBadRequest {
		t.Fatalf("status of a malformed ID: %d %s", code, body)
	}
	missing := Replication{R: fakeReplicator{err: fault.NotFoundf("", "unknown record %s", id)}}
	if code, body := call(t, "GET", p+"/records/"+id.String()+"/status", missing); code != http.StatusNotFound {
		t.Fatalf("status of an unknown record: %d %s", code, body)
	}

	code, body = call(t, "POST", p+"/reprovide", area)
	var res api.ReprovideResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || code != http.StatusOK ||
		res.Blocks != 30 || res.Failed != 2 || res.Seconds != 1.5 || res.PerSec != 20 {
		t.Fatalf("reprovide: %d %s %v", code, body, err)
	}
}

func TestStorageArea(t *testing.T) {
	code, body := call(t, "POST", p+"/gc", Storage{S: fakeCollector{}})
	var res api.GCResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || code != http.StatusOK ||
		res.RemovedBlockCount != 3 || res.RemovedSize != 300 || res.KeptBlockCount != 7 || res.DiskSize != 4096 {
		t.Fatalf("gc: %d %s %v", code, body, err)
	}
	code, body = call(t, "GET", p+"/repo/stat", Storage{S: fakeCollector{}})
	var st api.RepoStat
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK ||
		st.BlockCount != 10 || st.OrphanBlockCount != 3 || st.RunningAddCount != 1 {
		t.Fatalf("repo stat: %d %s %v", code, body, err)
	}
	refused := Storage{S: fakeCollector{err: fault.Conflictf("look at `medmesh status`", "cannot tell the blocks from garbage")}}
	code, body = call(t, "POST", p+"/gc", refused)
	if code != http.StatusConflict || !strings.Contains(body, "medmesh status") {
		t.Fatalf("gc refusing to guess: %d %s", code, body)
	}
}

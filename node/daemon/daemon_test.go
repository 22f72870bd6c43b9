package daemon_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/node/repo"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/multiformats/go-multihash"
)

// clock is a clock all nodes of a test share, so grant expiry can be tested
// without waiting.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func startNet(t *testing.T, names ...string) (*devnet.Net, *clock) {
	t.Helper()
	clk := &clock{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := devnet.Start(ctx, t.TempDir(), names, devnet.Options{Daemon: daemon.Options{Now: clk.Now, FetchTimeout: 15 * time.Second, StallTimeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, clk
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func add(t *testing.T, nd *devnet.Node, data []byte) api.AddResult {
	t.Helper()
	var res api.AddResult
	// One replica (the owner): these tests are about who may read, and a
	// replica holder legitimately receives a record's ciphertext.
	q := url.Values{"name": {"report.pdf"}, "type": {"application/pdf"}, "replicas": {"1"}}
	if err := nd.API.Upload(context.Background(), api.Prefix+"/records?"+q.Encode(), bytes.NewReader(data), int64(len(data)), &res); err != nil {
		t.Fatalf("add on %s: %v", nd.Name, err)
	}
	return res
}

func get(nd *devnet.Node, id string, version int) ([]byte, error) {
	var buf bytes.Buffer
	path := api.Prefix + "/records/" + id + "/content?purpose=treatment"
	if version > 0 {
		path += "&version=" + strconv.Itoa(version)
	}
	_, err := nd.API.Download(context.Background(), path, &buf)
	return buf.Bytes(), err
}

func grant(t *testing.T, owner *devnet.Node, id string, to *devnet.Node, purpose, expires string) {
	t.Helper()
	var g api.Grant
	if err := owner.API.Do(context.Background(), "POST", api.Prefix+"/records/"+id+"/grants", api.GrantRequest{To: to.ID.String(), Purpose: purpose, Expires: expires}, &g); err != nil {
		t.Fatalf("grant: %v", err)
	}
}

func sync(t *testing.T, n *devnet.Net) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitLedgerSync(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

func remoteStatus(err error) int {
	var re *api.RemoteError
	if errors.As(err, &re) {
		return re.Status
	}
	return 0
}

// TestShareReadRevokeAudit is the access-control story on four nodes: owner
// A, grantee B, member without a grant C, bystander D.
func TestShareReadRevokeAudit(t *testing.T) {
	n, clk := startNet(t, "A", "B", "C", "D")
	A, B, C := n.Nodes[0], n.Nodes[1], n.Nodes[2]
	data := randomBytes(3<<20 + 17) // several chunks plus a partial one
	rec := add(t, A, data)
	if rec.Chunks < 4 {
		t.Fatalf("expected several chunks, got %d", rec.Chunks)
	}

	// The owner reads its own record; the size is announced before the body.
	if got, err := get(A, rec.ID, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("owner get: %v", err)
	}
	st, err := A.API.Open(context.Background(), api.Prefix+"/records/"+rec.ID+"/content")
	if err != nil || st.Size != int64(len(data)) {
		t.Fatalf("announced size %d, want %d (%v)", st.Size, len(data), err)
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}

	// B has no grant yet: a clear "no key" refusal.
	sync(t, n)
	if _, err := get(B, rec.ID, 0); remoteStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("B before grant: %v", err)
	}

	grant(t, A, rec.ID, B, "treatment", "24h")
	sync(t, n)
	got, err := get(B, rec.ID, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("B after grant: %v (got %d bytes)", err, len(got))
	}
	// Reading keeps no copy: B is neither owner nor replica holder.
	rid, _ := cid.Decode(rec.ID)
	_, m, _, _, err := B.Daemon.Records.Open(context.Background(), rid, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Blocks(rid) {
		if has, _ := B.Daemon.Store.Blocks.Has(context.Background(), c); has {
			t.Fatalf("B kept block %s of a record it only read", c)
		}
	}

	// C has no grant: no key, and the holder refuses its block requests.
	if _, err := get(C, rec.ID, 0); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("C: %v", err)
	}
	refusedBefore := refused(t, A)
	id, _ := cid.Decode(rec.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = C.Daemon.P2P.Get(ctx, id)
	cancel()
	if err == nil {
		t.Fatal("C fetched a block of a record it may not read")
	}
	if refused(t, A) <= refusedBefore {
		t.Fatal("A's refusal counter did not move")
	}

	// The audit lists B's reads with their purpose and nothing for C: the
	// owner, which served them, attests them, and B's node reported them
	// (the get, and the Open above: each fetch of the manifest is a read),
	// in one line or two (the first read after a quiet interval is attested
	// alone, 100 ms after it).
	var evs []api.AccessEvent
	waitFor(t, "B's reads attested and reported", 20*time.Second, func() (bool, string) {
		if err := A.API.Do(context.Background(), "GET", api.Prefix+"/records/"+rec.ID+"/audit", nil, &evs); err != nil {
			return false, err.Error()
		}
		reported := 0
		for _, e := range evs {
			reported += e.ReportedCount
		}
		return reported == 2, fmt.Sprintf("%+v", evs)
	})
	count := 0
	for _, e := range evs {
		count += e.Count
		if e.Reader != B.ID.String() || e.Purpose != "treatment" || len(e.AttestedBy) != 1 || e.AttestedBy[0] != A.ID.String() || e.Review {
			t.Fatalf("audit: %+v", evs)
		}
	}
	if len(evs) > 2 || count != 2 {
		t.Fatalf("audit: %d reads in %d lines: %+v", count, len(evs), evs)
	}
	// Only the owner sees the audit.
	if err := B.API.Do(context.Background(), "GET", api.Prefix+"/records/"+rec.ID+"/audit", nil, &evs); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("B read the audit: %v", err)
	}

	// Revoke: B's node refuses to decrypt; a new version is unreadable by B.
	if err := A.API.Do(context.Background(), "DELETE", api.Prefix+"/records/"+rec.ID+"/grants/"+B.ID.String(), nil, nil); err != nil {
		t.Fatal(err)
	}
	sync(t, n)
	if _, err := get(B, rec.ID, 0); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("B after revoke: %v", err)
	}
	v2 := randomBytes(1 << 20)
	var upd api.AddResult
	if err := A.API.Upload(context.Background(), api.Prefix+"/records/"+rec.ID+"/versions?name=report-v2.pdf", bytes.NewReader(v2), int64(len(v2)), &upd); err != nil {
		t.Fatal(err)
	}
	if upd.Version != 2 || upd.Prev != rec.ID {
		t.Fatalf("update: %+v", upd)
	}
	sync(t, n)
	if _, err := get(B, upd.ID, 0); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("B read a version made after its revocation: %v", err)
	}
	newID, _ := cid.Decode(upd.ID)
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	_, err = B.Daemon.P2P.Get(ctx, newID)
	cancel()
	if err == nil {
		t.Fatal("revoked B fetched a block of the new version")
	}
	// The owner gets the newest version by default, the old one on request.
	if got, err := get(A, rec.ID, 0); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("owner newest: %v", err)
	}
	if got, err := get(A, rec.ID, 1); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("owner version 1: %v", err)
	}

	// A grant expires without a revoke (past the clock-skew margin).
	D := n.Nodes[3]
	grant(t, A, upd.ID, D, "operations", "1h")
	sync(t, n)
	if _, err := get(D, upd.ID, 0); err != nil {
		t.Fatalf("D within its grant: %v", err)
	}
	clk.Advance(time.Hour + ledger.ClockSkew + time.Second)
	if _, err := get(D, upd.ID, 0); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("D after expiry: %v", err)
	}
}

func refused(t *testing.T, nd *devnet.Node) float64 {
	t.Helper()
	var buf bytes.Buffer
	if err := nd.API.DownloadRaw(context.Background(), "/metrics", &buf); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "medmesh_access_refused_blocks_total ") {
			var v float64
			_, err := fmtSscan(strings.TrimPrefix(line, "medmesh_access_refused_blocks_total "), &v)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatal("no refusal metric")
	return 0
}

func TestNonOwnerCannotGrant(t *testing.T) {
	n, _ := startNet(t, "A", "B", "C")
	A, B, C := n.Nodes[0], n.Nodes[1], n.Nodes[2]
	rec := add(t, A, []byte("discharge letter"))
	sync(t, n)
	err := B.API.Do(context.Background(), "POST", api.Prefix+"/records/"+rec.ID+"/grants", api.GrantRequest{To: C.ID.String()}, nil)
	if remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("non-owner grant: %v", err)
	}
	// And the ledger itself refuses a non-owner's grant entry.
	id, _ := cid.Decode(rec.ID)
	if _, err := B.Daemon.Ledger.Append(context.Background(), "grant", grantPayload(id, C)); err == nil {
		t.Fatal("ledger accepted a grant by a non-owner")
	}
}

func TestUnknownRecordAndTruncatedUpload(t *testing.T) {
	n, _ := startNet(t, "A")
	A := n.Nodes[0]
	_, err := get(A, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", 0)
	if remoteStatus(err) != http.StatusNotFound || !strings.Contains(err.Error(), "unknown record") {
		t.Fatalf("unknown record: %v", err)
	}
	if _, err := get(A, "not-a-cid", 0); remoteStatus(err) != http.StatusBadRequest {
		t.Fatalf("bad id: %v", err)
	}

	before := countBlocks(t, A)
	// Declare 4 MiB, send 1 MiB, then close: the daemon must store nothing.
	pr, pw := io.Pipe()
	go func() {
		pw.Write(randomBytes(1 << 20))
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}()
	var res api.AddResult
	err = A.API.Upload(context.Background(), api.Prefix+"/records?name=x", pr, 4<<20, &res)
	if err == nil {
		t.Fatal("truncated upload accepted")
	}
	time.Sleep(200 * time.Millisecond) // the handler's rollback runs after the connection drops
	if after := countBlocks(t, A); after != before {
		t.Fatalf("truncated upload left %d blocks behind", after-before)
	}
	var recs []api.Record
	A.API.Do(context.Background(), "GET", api.Prefix+"/records", nil, &recs)
	if len(recs) != 0 {
		t.Fatalf("truncated upload listed: %+v", recs)
	}
}

// The profiler is served like the rest of the API: with the token only.
func TestProfilerNeedsToken(t *testing.T) {
	n, _ := startNet(t, "A")
	A := n.Nodes[0]
	req, _ := http.NewRequest("GET", A.API.Base+"/debug/pprof/goroutine?debug=1", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("profiler without the token: %s", r.Status)
	}
	var buf bytes.Buffer
	if err := A.API.DownloadRaw(context.Background(), "/debug/pprof/goroutine?debug=1", &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "goroutine profile:") {
		t.Fatalf("profiler with the token answered %q", buf.String()[:min(buf.Len(), 200)])
	}
}

// countBlocks counts the node's blocks other than ledger entries (which
// arrive on their own schedule: key and organisation statements at start,
// attestations a second after a read).
func countBlocks(t *testing.T, nd *devnet.Node) int {
	t.Helper()
	ctx := context.Background()
	ch, err := nd.Daemon.Store.Blocks.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for c := range ch {
		if b, err := nd.Daemon.Store.Blocks.Get(ctx, c); err == nil {
			if _, err := ledger.DecodeEntry(b.RawData()); err == nil {
				continue
			}
		}
		n++
	}
	return n
}

func TestRestartKeepsRecords(t *testing.T) {
	n, _ := startNet(t, "A", "B")
	A := n.Nodes[0]
	data := randomBytes(2<<20 + 5)
	rec := add(t, A, data)
	empty := add(t, A, nil)
	if err := A.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := A.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := get(A, rec.ID, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restart: %v", err)
	}
	if got, err := get(A, empty.ID, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty record after restart: %v %d", err, len(got))
	}
	var recs []api.Record
	if err := A.API.Do(context.Background(), "GET", api.Prefix+"/records", nil, &recs); err != nil || len(recs) != 2 {
		t.Fatalf("ls after restart: %v %+v", err, recs)
	}
	if recs[0].Owner != A.ID.String() || !recs[0].Mine {
		t.Fatalf("ls owner: %+v", recs[0])
	}
}

// A block that belongs to no record this node knows is never served: the
// filter cannot tell whose it is, so it cannot tell who may have it.
func TestBlockOfNoKnownRecordIsRefused(t *testing.T) {
	n, _ := startNet(t, "A", "B")
	A, B := n.Nodes[0], n.Nodes[1]
	data := randomBytes(4096)
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: -1}.Sum(data)
	blk, _ := blocks.NewBlockWithCid(data, c)
	if err := A.Daemon.Store.Blocks.Put(context.Background(), blk); err != nil {
		t.Fatal(err)
	}
	if err := A.Daemon.P2P.Provide(context.Background(), []cid.Cid{c}); err != nil {
		t.Logf("provide: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := B.Daemon.P2P.Get(ctx, c); err == nil {
		t.Fatal("a block of no known record was served")
	}
}

// TestStartFailsCleanly: a start that fails after the node is half built
// (here its API address is taken) returns the error, closes what it opened
// and leaves the repo to the next start. (It used to close a nil daemon and
// panic, hiding the cause.)
func TestStartFailsCleanly(t *testing.T) {
	n, _ := startNet(t, "A")
	A := n.Nodes[0]
	if err := A.Stop(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r, err := repo.Open(A.Dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Config.API = ln.Addr().String()
	if err := r.SaveConfig(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(context.Background(), A.Dir, daemon.Options{})
	if err == nil || d != nil || !strings.Contains(err.Error(), "API listen") {
		t.Fatalf("start with its API address taken: %v %v", d, err)
	}
	ln.Close()
	d, err = daemon.Start(context.Background(), A.Dir, daemon.Options{})
	if err != nil {
		t.Fatalf("the next start: %v", err)
	}
	d.Close()
}

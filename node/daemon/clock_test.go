package daemon_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/devnet"
)

// TestClockAheadHeldBackByDaemons: a node whose clock runs a century
// ahead adds a record; the other daemons hold its announcement back (the
// record is unknown there), name it in health's clock_ahead as a problem,
// and can still grant for 30 days; once their clocks reach the century,
// the announcement applies at the next sync.
func TestClockAheadHeldBackByDaemons(t *testing.T) {
	var ahead, rest atomic.Int64 // offsets from time.Now
	clock := func(off *atomic.Int64) func() time.Time {
		return func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := devnet.Start(ctx, t.TempDir(), []string{"hospital", "clinic", "fast"}, devnet.Options{
		Clocks: map[string]func() time.Time{"hospital": clock(&rest), "clinic": clock(&rest), "fast": clock(&ahead)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	hospital, clinic, fast := n.Nodes[0], n.Nodes[1], n.Nodes[2]
	const century = 100 * 365 * 24 * time.Hour
	ahead.Store(int64(century))
	rec := add(t, fast, randomBytes(4096))

	id, err := cid.Decode(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	known := func(nd *devnet.Node) bool {
		_, ok := nd.Daemon.Ledger.Record(id)
		return ok
	}
	if !known(fast) {
		t.Fatal("the record is not on its owner's ledger")
	}
	deadline := time.Now().Add(20 * time.Second)
	var h api.Health
	for {
		if err := hospital.API.Do(context.Background(), "GET", api.Prefix+"/health", nil, &h); err != nil && remoteStatus(err) == 0 {
			t.Fatal(err)
		}
		if slices.Contains(h.Ledger.ClockAhead, fast.ID.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hospital's health does not name the node a century ahead: %+v", h.Ledger)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if h.Healthy || !slices.ContainsFunc(h.Problems, func(p string) bool { return strings.Contains(p, "NTP") }) {
		t.Fatalf("health with a member's entries held back: healthy %v, problems %q", h.Healthy, h.Problems)
	}
	if known(hospital) || known(clinic) {
		t.Fatal("a record announced a century ahead is known on the other daemons")
	}
	// The hospital's own record, granted to the clinic for 30 days: with
	// the announcement applied, its clock would be a century on and the
	// grant refused ("expires before it is made").
	own := add(t, hospital, randomBytes(1024))
	grant(t, hospital, own.ID, clinic, "treatment", "720h")

	// The others' clocks reach the century: the announcement applies.
	rest.Store(int64(century + time.Minute))
	deadline = time.Now().Add(30 * time.Second)
	for !known(hospital) || !known(clinic) {
		if time.Now().After(deadline) {
			t.Fatalf("the record announced a century ahead is not known once the clocks caught up: hospital %v, clinic %v", known(hospital), known(clinic))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
)

func TestEmergencyAccessWhileOwnerOffline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := devnet.Start(ctx, t.TempDir(), []string{"owner", "authority", "hospital"}, devnet.Options{
		Daemon: daemon.Options{FetchTimeout: 15 * time.Second, StallTimeout: 2 * time.Second},
		Roles:  map[string][]string{"authority": {"emergency"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	owner, authority, hospital := n.Nodes[0], n.Nodes[1], n.Nodes[2]

	upload := func(emergency bool, data []byte) string {
		q := url.Values{"name": {"allergies.json"}, "replicas": {"3"}}
		if emergency {
			q.Set("emergency", "true")
		}
		var res api.AddResult
		if err := owner.API.Upload(ctx, api.Prefix+"/records?"+q.Encode(), bytes.NewReader(data), int64(len(data)), &res); err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	plain := upload(false, []byte(`{"allergy":"none recorded"}`))
	data := []byte(`{"allergy":"penicillin","severity":"anaphylaxis"}`)
	escrowed := upload(true, data)
	sync(t, n)

	// Replicas must be in place before the owner goes offline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		id, _ := cid.Decode(escrowed)
		held := 0
		for _, r := range authority.Daemon.Ledger.Receipts(id) {
			if r.Status == daemon.ReceiptHeld {
				held++
			}
		}
		if held >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replicas of the escrowed record never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := owner.Stop(); err != nil {
		t.Fatal(err)
	}

	emergencyGrant := func(id string) error {
		return authority.API.Do(ctx, "POST", api.Prefix+"/records/"+id+"/grants", api.GrantRequest{To: hospital.ID.String(), Purpose: "emergency"}, nil)
	}
	// Longer than 24 h is refused, not silently shortened.
	err = authority.API.Do(ctx, "POST", api.Prefix+"/records/"+escrowed+"/grants", api.GrantRequest{To: hospital.ID.String(), Purpose: "emergency", Expires: "72h"}, nil)
	if remoteStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "at most 24h") {
		t.Fatalf("72h emergency grant: %v", err)
	}
	// A record its owner did not opt in cannot be opened, even by an authority.
	if err := emergencyGrant(plain); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("emergency grant of a record without escrow: %v", err)
	}
	// The ledger itself refuses such a grant, whoever signs it: every node
	// would reject it.
	pub, _ := authority.Daemon.Ledger.KEMKey(hospital.ID)
	env, _ := keywrap.Wrap(pub, make([]byte, keywrap.KeySize), []byte("x"))
	envBytes, _ := env.MarshalBinary()
	plainID, _ := cid.Decode(plain)
	_, err = authority.Daemon.Ledger.Append(ctx, ledger.TypeGrant, ledger.GrantPayload{
		Record: plainID, Grantee: hospital.ID, Envelope: envBytes, Purpose: ledger.PurposeEmergency, Expires: time.Now().Add(time.Hour)})
	if !errors.Is(err, ledger.ErrUnauthorized) {
		t.Fatalf("ledger accepted an emergency grant without escrow: %v", err)
	}
	// A non-emergency purpose is the owner's alone.
	if err := authority.API.Do(ctx, "POST", api.Prefix+"/records/"+escrowed+"/grants", api.GrantRequest{To: hospital.ID.String(), Purpose: "treatment"}, nil); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("authority's treatment grant: %v", err)
	}
	// The hospital itself has no emergency role.
	if err := hospital.API.Do(ctx, "POST", api.Prefix+"/records/"+escrowed+"/grants", api.GrantRequest{To: hospital.ID.String(), Purpose: "emergency"}, nil); remoteStatus(err) != http.StatusForbidden {
		t.Fatalf("hospital's self-granted emergency access: %v", err)
	}
	if err := emergencyGrant(escrowed); err != nil {
		t.Fatalf("emergency grant: %v", err)
	}
	sync(t, n)
	var gs []api.Grant
	if err := hospital.API.Do(ctx, "GET", api.Prefix+"/records/"+escrowed+"/grants", nil, &gs); err != nil || len(gs) != 1 {
		t.Fatalf("grants: %v %+v", err, gs)
	}
	if life := time.Until(gs[0].Expires.Time); life > 24*time.Hour || life < 23*time.Hour {
		t.Fatalf("emergency grant lives %v, want at most 24h", life)
	}
	// The hospital held a replica; now a grantee, it gives it up, and its
	// blocks as the authority holds one too, so its reads are served, and
	// attested, by a holder.
	id, _ := cid.Decode(escrowed)
	waitFor(t, "the hospital's replica released and dropped", 20*time.Second, func() (bool, string) {
		has, _ := hospital.Daemon.Store.Blocks.Has(ctx, id)
		for _, r := range authority.Daemon.Ledger.Receipts(id) {
			if r.Holder == hospital.ID {
				return r.Status == daemon.ReceiptReleased && !has, fmt.Sprintf("%s, blocks kept %v", r.Status, has)
			}
		}
		return false, "no receipt"
	})
	// A plain get: the reader states purpose treatment.
	var buf bytes.Buffer
	if _, err := hospital.API.Download(ctx, api.Prefix+"/records/"+escrowed+"/content?purpose=treatment", &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("hospital emergency read while the owner is offline: %v", err)
	}

	// Back online, the owner's audit flags the read for review: its
	// purpose is the emergency grant's, whatever the reader stated, and
	// the authority that served it attests it.
	if err := owner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	owner.Daemon.P2P.Connect(ctx, authority.Daemon.P2P.AddrInfo())
	var evs []api.AccessEvent
	waitFor(t, "the attested emergency read in the owner's audit", 20*time.Second, func() (bool, string) {
		if err := owner.API.Do(ctx, "GET", api.Prefix+"/records/"+escrowed+"/audit", nil, &evs); err != nil {
			return false, err.Error()
		}
		return len(evs) == 1 && len(evs[0].AttestedBy) == 1 && evs[0].ReportedCount == 1, fmt.Sprintf("%+v", evs)
	})
	e := evs[0]
	if e.Reader != hospital.ID.String() || !e.Emergency || !e.Review || e.Purpose != "emergency" || e.StatedPurpose != "treatment" ||
		e.AttestedBy[0] != authority.ID.String() || e.Count != 1 {
		t.Fatalf("audit: %+v", e)
	}
}

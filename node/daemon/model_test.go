package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/medmesh/medmesh/node/api"
)

// TestGrantRevokeUpdateModel drives random grant/revoke/update sequences on
// real nodes and checks, after each step, exactly which versions each node
// can read against a simple model:
//   - grant(X): X may read every version that exists;
//   - revoke(X): X may read none;
//   - update: the new version is readable by the owner and the peers that
//     hold a live grant at that moment, never by a revoked peer.
func TestGrantRevokeUpdateModel(t *testing.T) {
	n, _ := startNet(t, "owner", "B", "C")
	owner, peers := n.Nodes[0], n.Nodes[1:]
	rng := rand.New(rand.NewPCG(42, 7))
	first := add(t, owner, []byte("version 1"))
	contents := [][]byte{[]byte("version 1")}
	ids := []string{first.ID}
	// model: may[peer index][version index]
	may := make([][]bool, len(peers))
	granted := make([]bool, len(peers))
	for i := range may {
		may[i] = []bool{false}
	}
	ctx := context.Background()
	for step := 0; step < 14; step++ {
		x := rng.IntN(len(peers))
		var what string
		switch op := rng.IntN(3); {
		case op == 0 && !granted[x]:
			what = "grant " + peers[x].Name
			grant(t, owner, first.ID, peers[x], "treatment", "")
			granted[x] = true
			for v := range may[x] {
				may[x][v] = true
			}
		case op == 1 && granted[x]:
			what = "revoke " + peers[x].Name
			if err := owner.API.Do(ctx, "DELETE", api.Prefix+"/records/"+first.ID+"/grants/"+peers[x].ID.String(), nil, nil); err != nil {
				t.Fatal(err)
			}
			granted[x] = false
			for v := range may[x] {
				may[x][v] = false
			}
		default:
			what = "update"
			body := []byte(fmt.Sprintf("version %d", len(contents)+1))
			var res api.AddResult
			if err := owner.API.Upload(ctx, api.Prefix+"/records/"+first.ID+"/versions?name=r", bytes.NewReader(body), int64(len(body)), &res); err != nil {
				t.Fatal(err)
			}
			contents = append(contents, body)
			ids = append(ids, res.ID)
			for i := range peers {
				may[i] = append(may[i], granted[i])
			}
		}
		sync(t, n)
		for i, p := range peers {
			for v := range contents {
				got, err := get(p, ids[v], v+1)
				switch {
				case may[i][v] && (err != nil || !bytes.Equal(got, contents[v])):
					t.Fatalf("step %d (%s): %s should read version %d: %v", step, what, p.Name, v+1, err)
				case !may[i][v] && remoteStatus(err) != http.StatusForbidden:
					t.Fatalf("step %d (%s): %s should not read version %d, got err=%v", step, what, p.Name, v+1, err)
				}
			}
		}
	}
}

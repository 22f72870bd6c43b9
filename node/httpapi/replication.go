package httpapi

import (
	"context"
	"net/http"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/replication"
)

// Replicator is what the replication routes need (node/replication.Manager).
type Replicator interface {
	Status(ctx context.Context, id cid.Cid) (replication.Status, error)
	Reprovide(ctx context.Context) (replication.ReprovideResult, error)
}

// Replication serves `medmesh status` and `medmesh reprovide`.
type Replication struct{ R Replicator }

// Routes implements Area.
func (a Replication) Routes(m Mux) {
	m.HandleFunc("GET "+p+"/records/{id}/status", a.status)
	m.HandleFunc("POST "+p+"/reprovide", a.reprovide)
}

func (a Replication) status(w http.ResponseWriter, r *http.Request) {
	id, err := PathCID(r, "id")
	if err != nil {
		api.Fail(w, err)
		return
	}
	st, err := a.R.Status(r.Context(), id)
	if err != nil {
		api.Fail(w, err)
		return
	}
	api.JSON(w, http.StatusOK, api.Status{
		ID: st.Record.String(), Replicas: st.Replicas, Holders: peerStrings(st.Holders),
		Reachable: peerStrings(st.Reachable), Providers: peerStrings(st.Providers),
		LastVerified: api.Nullable(st.LastVerified), Erased: st.Erased,
	})
}

func (a Replication) reprovide(w http.ResponseWriter, r *http.Request) {
	res, err := a.R.Reprovide(r.Context())
	Reply(w, ReprovideResult(res), err)
}

// ReprovideResult is a reprovide run as the API shows it.
func ReprovideResult(res replication.ReprovideResult) api.ReprovideResult {
	return api.ReprovideResult{Blocks: res.Blocks, Failed: res.Failed, Duration: res.Duration,
		Seconds: res.Duration.Seconds(), PerSec: res.PerSecond()}
}

// peerStrings renders peer IDs for the API (an empty list, never nil).
func peerStrings(ps []peer.ID) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// CheckpointLedger is what the checkpoint routes use (*ledger.Ledger).
type CheckpointLedger interface {
	MakeCheckpoint(ctx context.Context, scope string, proposal *ledger.Checkpoint) (*ledger.Checkpoint, bool, error)
	Checkpoints(ctx context.Context, scope string) ([]ledger.CheckpointInfo, error)
	Prune(ctx context.Context) (ledger.PruneStats, error)
	Scoped() bool
}

// Checkpoints serves `medmesh ledger checkpoint|checkpoints|prune`.
type Checkpoints struct{ L CheckpointLedger }

// Routes implements Area.
func (a Checkpoints) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/ledger/checkpoint", a.make)
	m.HandleFunc("GET "+p+"/ledger/checkpoints", a.list)
	m.HandleFunc("POST "+p+"/ledger/prune", a.prune)
}

func (a Checkpoints) make(w http.ResponseWriter, r *http.Request) {
	var req api.CheckpointRequest
	if r.ContentLength != 0 {
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
	}
	scope, err := a.scope(req.Scope)
	if err != nil {
		api.Fail(w, err)
		return
	}
	var prop *ledger.Checkpoint
	if req.Proposal != "" {
		raw, err := base64.StdEncoding.DecodeString(req.Proposal)
		if err == nil {
			prop, err = ledger.DecodeCheckpoint(raw)
		}
		if err != nil {
			api.Fail(w, fault.Invalidf("pass the \"proposal\" another admin's `medmesh ledger checkpoint --json` printed, whole", "bad checkpoint proposal: %v", err))
			return
		}
	}
	if prop != nil && prop.Scope != scope {
		api.Fail(w, fault.Invalidf("pass the same --scope as the proposal's", "the proposal is a checkpoint of %s, not %s", prop.Scope, scope))
		return
	}
	ck, trusted, err := a.L.MakeCheckpoint(r.Context(), scope, prop)
	if err != nil {
		api.Fail(w, checkpointFault(err, scope))
		return
	}
	infos, err := a.L.Checkpoints(r.Context(), scope)
	if err != nil {
		api.Fail(w, err)
		return
	}
	if !trusted {
		raw, err := ck.Encode()
		if err != nil {
			api.Fail(w, err)
			return
		}
		out := CheckpointOf(ledger.CheckpointInfo{Checkpoint: ck, Index: len(infos)})
		out.Trusted, out.Proposal = false, base64.StdEncoding.EncodeToString(raw)
		api.JSON(w, http.StatusAccepted, out)
		return
	}
	for _, in := range infos {
		if in.Checkpoint.CID() == ck.CID() {
			api.JSON(w, http.StatusCreated, CheckpointOf(in))
			return
		}
	}
	api.Fail(w, errors.New("ledger: the checkpoint made is not in the stored chain"))
}

func (a Checkpoints) list(w http.ResponseWriter, r *http.Request) {
	scope, err := a.scope(r.URL.Query().Get("scope"))
	if err != nil {
		api.Fail(w, err)
		return
	}
	infos, err := a.L.Checkpoints(r.Context(), scope)
	if err != nil {
		api.Fail(w, err)
		return
	}
	out := make([]api.Checkpoint, 0, len(infos))
	for _, in := range infos {
		out = append(out, CheckpointOf(in))
	}
	api.JSON(w, http.StatusOK, out)
}

func (a Checkpoints) prune(w http.ResponseWriter, r *http.Request) {
	st, err := a.L.Prune(r.Context())
	if err != nil {
		api.Fail(w, checkpointFault(err, ledger.ScopeGlobal))
		return
	}
	out := api.PruneResult{ExaminedCount: st.Examined, PrunedCount: st.Pruned, KeptCount: st.Kept, Size: st.Size, Scopes: []api.ScopePrune{}}
	if st.Checkpoint.Defined() {
		out.Checkpoint = st.Checkpoint.String()
	}
	for _, s := range st.Scopes {
		out.Scopes = append(out.Scopes, api.ScopePrune{Scope: s.Scope, Checkpoint: s.Checkpoint.String(), ExaminedCount: s.Examined,
			PrunedCount: s.Pruned, KeptCount: s.Kept, Size: s.Size})
	}
	api.JSON(w, http.StatusOK, out)
}

// scope checks a scope named in a request ("" is the global scope).
func (a Checkpoints) scope(s string) (string, error) {
	if s == "" || s == ledger.ScopeGlobal {
		return ledger.ScopeGlobal, nil
	}
	if _, _, err := ledger.ParseScope(s); err != nil {
		return "", fault.Invalidf("a scope is global, owner/<peer ID> or audit/<peer ID> (`medmesh ledger stat` lists those this node follows)", "%v", err)
	}
	if !a.L.Scoped() {
		return "", fault.Conflictf("this network has no scopes: its checkpoints are of the global scope (no --scope)", "scope %s: this network has no scopes", s)
	}
	return s, nil
}

// checkpointFault classifies the ledger's checkpoint errors.
func checkpointFault(err error, scope string) error {
	switch {
	case errors.Is(err, ledger.ErrCheckpointUntrusted) && scope != ledger.ScopeGlobal:
		return fault.Wrap(fault.Forbidden, "an owner's or audit scope's checkpoints are signed by the owner's replica group (the nodes that follow its scopes, not the owner): run this on one of the signers the error lists", err)
	case errors.Is(err, ledger.ErrCheckpointUntrusted):
		return fault.Wrap(fault.Forbidden, "checkpoints are signed by the admins: run this on an admin's node (`medmesh members` shows the roles)", err)
	case errors.Is(err, ledger.ErrCheckpointDeps):
		return fault.Wrap(fault.Conflict, "this node has not caught up the scopes the checkpoint depends on yet: wait for `medmesh ledger heads` to match the proposer's", err)
	case errors.Is(err, ledger.ErrCheckpointExists):
		return fault.Wrap(fault.Conflict, "nothing was appended since the latest checkpoint: `medmesh ledger checkpoints` lists it", err)
	case errors.Is(err, ledger.ErrCheckpointMismatch):
		return fault.Wrap(fault.Conflict, "co-sign when the network is quiet and both nodes show the same `medmesh ledger heads`, or make a new proposal", err)
	case errors.Is(err, ledger.ErrNoCheckpoint):
		return fault.Wrap(fault.Conflict, "an admin makes one with `medmesh ledger checkpoint`; this node prunes up to it once it has it", err)
	}
	return err
}

// CheckpointOf is a checkpoint as the API shows it.
func CheckpointOf(in ledger.CheckpointInfo) api.Checkpoint {
	ck := in.Checkpoint
	out := api.Checkpoint{Checkpoint: ck.CID().String(), Scope: ck.Scope, Index: in.Index, Heads: []string{}, Time: ck.Time(),
		EntryCount: ck.Entries, Digest: hex.EncodeToString(ck.Digest), Size: ck.Size, BlockCount: len(ck.Blocks),
		Signers: []string{}, Quorum: ledger.Quorum(len(ck.Signers)), Signatures: ck.SignerStrings(), Base: in.Base, Pruned: in.Pruned, Trusted: true,
		Deps: []string{}}
	for _, d := range ck.Deps {
		out.Deps = append(out.Deps, d.String())
	}
	for _, h := range ck.Heads {
		out.Heads = append(out.Heads, h.String())
	}
	if ck.Prev.Defined() {
		out.Prev = ck.Prev.String()
	}
	for _, s := range ck.Signers {
		out.Signers = append(out.Signers, s.String())
	}
	return out
}

package httpapi

import (
	"context"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// LedgerReader is what the ledger routes read (*ledger.Ledger).
type LedgerReader interface {
	Log(ctx context.Context, typ string, limit int) ([]*ledger.Entry, error)
	Heads() []cid.Cid
	Digest() []byte
	// ScopeHeads and ScopeDigest answer for one scope (global,
	// owner/<peer>, audit/<peer>); Followed lists the scopes followed.
	ScopeHeads(s string) ([]cid.Cid, error)
	ScopeDigest(ctx context.Context, s string) ([]byte, int, error)
	Followed() []string
	Verify(ctx context.Context) error
	// TypeNames lists the entry types the ledger runs; CheckTypeName
	// fails for any other.
	TypeNames() []string
	CheckTypeName(t string) error
	Stat(ctx context.Context) ledger.Stat
	StoredByScope(ctx context.Context) ([]ledger.ScopeStored, error)
}

// Ledger serves `medmesh ledger log|heads|stat|verify`.
type Ledger struct{ L LedgerReader }

// Routes implements Area.
func (a Ledger) Routes(m Mux) {
	m.HandleFunc("GET "+p+"/ledger/log", a.log)
	m.HandleFunc("GET "+p+"/ledger/heads", a.heads)
	m.HandleFunc("GET "+p+"/ledger/stat", a.stat)
	m.HandleFunc("POST "+p+"/ledger/verify", a.verify)
}

func (a Ledger) log(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			api.Fail(w, fault.Invalidf("", "limit must be a number >= 0"))
			return
		}
		limit = n
	}
	typ := r.URL.Query().Get("type")
	if typ != "" {
		if err := a.L.CheckTypeName(typ); err != nil {
			api.Fail(w, fault.Invalidf("choose one of: "+strings.Join(a.L.TypeNames(), ", "), "unknown entry type %q", typ))
			return
		}
	}
	es, err := a.L.Log(r.Context(), typ, limit)
	if err != nil {
		api.Fail(w, err)
		return
	}
	out := make([]api.LedgerEntry, 0, len(es))
	for _, e := range es {
		out = append(out, LedgerEntry(e))
	}
	api.JSON(w, http.StatusOK, out)
}

// heads answers with the global scope's heads and state digest (the same
// on every node in the same state), or with scope=NAME another scope's:
// its heads here and the digest of its state (ledger.Core.ScopeDigest).
func (a Ledger) heads(w http.ResponseWriter, r *http.Request) {
	scope := r.URL.Query().Get("scope")
	if scope == "" || scope == ledger.ScopeGlobal {
		h := api.Heads{Scope: ledger.ScopeGlobal, Heads: []string{}, State: hex.EncodeToString(a.L.Digest())}
		for _, c := range a.L.Heads() {
			h.Heads = append(h.Heads, c.String())
		}
		api.JSON(w, http.StatusOK, h)
		return
	}
	hs, err := a.L.ScopeHeads(scope)
	if err != nil {
		api.Fail(w, fault.Invalidf("a scope is global, owner/<peer ID> or audit/<peer ID>", "%v", err))
		return
	}
	followed := false
	for _, s := range a.L.Followed() {
		followed = followed || s == scope
	}
	if len(hs) == 0 && !followed {
		api.Fail(w, fault.NotFoundf("this node follows: "+strings.Join(a.L.Followed(), ", "), "this node neither follows scope %s nor holds entries of it", scope))
		return
	}
	d, n, err := a.L.ScopeDigest(r.Context(), scope)
	if err != nil {
		api.Fail(w, err)
		return
	}
	h := api.Heads{Scope: scope, Heads: []string{}, State: hex.EncodeToString(d), EntryCount: &n}
	for _, c := range hs {
		h.Heads = append(h.Heads, c.String())
	}
	api.JSON(w, http.StatusOK, h)
}

func (a Ledger) stat(w http.ResponseWriter, r *http.Request) {
	st := a.L.Stat(r.Context())
	out := api.LedgerStat{Entries: st.Entries, Size: st.Bytes, Scopes: st.Scopes, Synced: st.Synced, Behind: st.Behind}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if out.Behind == nil {
		out.Behind = []string{}
	}
	if r.URL.Query().Get("by_scope") == "1" {
		by, err := a.L.StoredByScope(r.Context())
		if err != nil {
			api.Fail(w, err)
			return
		}
		out.ByScope = make([]api.LedgerScope, 0, len(by))
		for _, s := range by {
			out.ByScope = append(out.ByScope, api.LedgerScope{Scope: s.Scope, Followed: s.Followed, Why: s.Why, Entries: s.Entries, Size: s.Bytes})
		}
	}
	api.JSON(w, http.StatusOK, out)
}

func (a Ledger) verify(w http.ResponseWriter, r *http.Request) {
	err := a.L.Verify(r.Context())
	res := api.VerifyResult{OK: err == nil}
	if es, lerr := a.L.Log(r.Context(), "", 0); lerr == nil {
		res.Entries = len(es)
	}
	if err != nil {
		res.Error = err.Error()
	}
	api.JSON(w, http.StatusOK, res)
}

// LedgerEntry is an entry as the API shows it.
func LedgerEntry(e *ledger.Entry) api.LedgerEntry {
	out := api.LedgerEntry{
		Entry: e.CID().String(), Type: e.Type, Author: e.Author.String(),
		Time: time.UnixMilli(int64(e.Clock.Wall)).UTC(), Parents: []string{}, Scope: e.ScopeName(),
	}
	if d := ledger.Describe(e); d != nil {
		out.Payload = d
	}
	for _, p := range e.Parents {
		out.Parents = append(out.Parents, p.String())
	}
	return out
}

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
	Verify(ctx context.Context) error
	// TypeNames lists the entry types the ledger runs; CheckTypeName
	// fails for any other.
	TypeNames() []string
	CheckTypeName(t string) error
	Stat(ctx context.Context) ledger.Stat
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

func (a Ledger) heads(w http.ResponseWriter, r *http.Request) {
	h := api.Heads{Heads: []string{}, State: hex.EncodeToString(a.L.Digest())}
	for _, c := range a.L.Heads() {
		h.Heads = append(h.Heads, c.String())
	}
	api.JSON(w, http.StatusOK, h)
}

func (a Ledger) stat(w http.ResponseWriter, r *http.Request) {
	st := a.L.Stat(r.Context())
	out := api.LedgerStat{Entries: st.Entries, Size: st.Bytes, Scopes: st.Scopes, Synced: st.Synced}
	if out.Scopes == nil {
		out.Scopes = []string{}
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
		Time: time.UnixMilli(int64(e.Clock.Wall)).UTC(), Parents: []string{},
	}
	if d := ledger.Describe(e); d != nil {
		out.Payload = d
	}
	for _, p := range e.Parents {
		out.Parents = append(out.Parents, p.String())
	}
	return out
}

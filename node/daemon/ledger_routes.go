package daemon

import (
	"encoding/hex"
	"github.com/medmesh/medmesh/internal/fault"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

func (d *Daemon) ledgerRoutes() {
	s := d.api
	s.HandleFunc("GET "+p+"/ledger/log", func(w http.ResponseWriter, r *http.Request) {
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
			if err := ledger.CheckTypeName(typ); err != nil {
				api.Fail(w, fault.Invalidf("choose one of: "+strings.Join(ledger.TypeNames(), ", "), "unknown entry type %q", typ))
				return
			}
		}
		es, err := d.Ledger.Log(r.Context(), typ, limit)
		if err != nil {
			api.Fail(w, err)
			return
		}
		out := make([]api.LedgerEntry, 0, len(es))
		for _, e := range es {
			out = append(out, ledgerEntry(e))
		}
		api.JSON(w, http.StatusOK, out)
	})
	s.HandleFunc("GET "+p+"/ledger/heads", func(w http.ResponseWriter, r *http.Request) {
		h := api.Heads{Heads: []string{}, State: hex.EncodeToString(d.Ledger.Digest())}
		for _, c := range d.Ledger.Heads() {
			h.Heads = append(h.Heads, c.String())
		}
		api.JSON(w, http.StatusOK, h)
	})
	s.HandleFunc("POST "+p+"/ledger/verify", func(w http.ResponseWriter, r *http.Request) {
		err := d.Ledger.Verify(r.Context())
		res := api.VerifyResult{OK: err == nil}
		if es, lerr := d.Ledger.Log(r.Context(), "", 0); lerr == nil {
			res.Entries = len(es)
		}
		if err != nil {
			res.Error = err.Error()
		}
		api.JSON(w, http.StatusOK, res)
	})
}

func ledgerEntry(e *ledger.Entry) api.LedgerEntry {
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

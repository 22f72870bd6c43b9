package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/auditlog"
)

// AuditLogService is what the audit log routes ask of the node's audit
// log (*node/auditlog.Service).
type AuditLogService interface {
	Head(ctx context.Context) (auditlog.TreeHead, []byte, error)
	Prove(ctx context.Context, id, entry cid.Cid) (*auditlog.ProofFile, error)
	Consistency(ctx context.Context, old, new int64) (*auditlog.ProofFile, error)
	// Segment is the record keeping the leaves' order up to a head of
	// size, when a segment ends there.
	Segment(ctx context.Context, size int64) (cid.Cid, bool)
}

// AuditLog serves `medmesh audit head|prove|consistency`: /auditlog/head,
// /records/{id}/audit/proof[?entry=CID], /auditlog/consistency?old=N&new=M.
type AuditLog struct{ S AuditLogService }

// Routes implements Area.
func (a AuditLog) Routes(m Mux) {
	m.HandleFunc("GET "+p+"/auditlog/head", func(w http.ResponseWriter, r *http.Request) {
		h, note, err := a.S.Head(r.Context())
		out := api.AuditHead{Owner: h.Owner.String(), TreeSize: h.Size, Root: auditlog.EncodeHash(h.Root), Time: h.Time.UTC(), TreeHead: string(note)}
		if seg, ok := a.S.Segment(r.Context(), h.Size); ok && err == nil {
			out.Segment = seg.String()
		}
		Reply(w, out, err)
	})
	m.HandleFunc("GET "+p+"/records/{id}/audit/proof", func(w http.ResponseWriter, r *http.Request) {
		id, err := PathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		entry := cid.Undef
		if s := r.URL.Query().Get("entry"); s != "" {
			if entry, err = cid.Decode(s); err != nil {
				api.Fail(w, fault.Invalidf("entry CIDs look like bafyrei… (`medmesh ledger log --json` lists them)", "%q is not an entry CID: %v", s, err))
				return
			}
		}
		f, err := a.S.Prove(r.Context(), id, entry)
		Reply(w, f, err)
	})
	m.HandleFunc("GET "+p+"/auditlog/consistency", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var sizes [2]int64
		for i, k := range []string{"old", "new"} {
			s := q.Get(k)
			if s == "" && k == "new" {
				continue
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				api.Fail(w, fault.Invalidf("sizes are entry counts, as `medmesh audit head` shows", "%s size %q is not a count", k, s))
				return
			}
			sizes[i] = n
		}
		f, err := a.S.Consistency(r.Context(), sizes[0], sizes[1])
		Reply(w, f, err)
	})
}

package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
)

// RecordsService is what the records routes ask of the records service
// (*records.Service).
type RecordsService interface {
	Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error)
	Update(ctx context.Context, req records.AddRequest) (*records.AddResult, error)
	Get(ctx context.Context, id cid.Cid, req records.GetRequest, w io.Writer) error
	List(ctx context.Context) ([]api.Record, error)
	Grant(ctx context.Context, id cid.Cid, req api.GrantRequest) (*api.Grant, error)
	ListGrants(id cid.Cid) ([]api.Grant, error)
	Revoke(ctx context.Context, id cid.Cid, grantee peer.ID) (int, error)
	Audit(id cid.Cid) ([]api.AccessEvent, error)
}

// Records serves `medmesh add|get|ls|update|grant|grants|revoke|audit`:
// /records and /records/{id}/{content,versions,grants,audit}.
type Records struct {
	S RecordsService
	// Log, if set, hears of reads that fail.
	Log *slog.Logger
}

// Routes implements Area.
func (a Records) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/records", a.add)
	m.HandleFunc("GET "+p+"/records", func(w http.ResponseWriter, r *http.Request) {
		recs, err := a.S.List(r.Context())
		if err != nil {
			api.Fail(w, err)
			return
		}
		// List's records hold no nil list (Holders is always made).
		api.JSONList(w, http.StatusOK, recs)
	})
	m.HandleFunc("GET "+p+"/records/{id}/content", a.get)
	m.HandleFunc("POST "+p+"/records/{id}/versions", a.update)
	m.HandleFunc("POST "+p+"/records/{id}/grants", a.grant)
	m.HandleFunc("GET "+p+"/records/{id}/grants", func(w http.ResponseWriter, r *http.Request) {
		id, err := PathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		gs, err := a.S.ListGrants(id)
		Reply(w, gs, err)
	})
	m.HandleFunc("DELETE "+p+"/records/{id}/grants/{peer}", a.revoke)
	m.HandleFunc("GET "+p+"/records/{id}/audit", func(w http.ResponseWriter, r *http.Request) {
		id, err := PathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		evs, err := a.S.Audit(id)
		Reply(w, evs, err)
	})
}

// addRequest reads an upload: the body is the record's one file, the
// query its name, media type, class, replica count and emergency opt-in.
func addRequest(r *http.Request) (records.AddRequest, error) {
	q := r.URL.Query()
	body, err := UploadBody(r)
	if err != nil {
		return records.AddRequest{}, err
	}
	req := records.AddRequest{
		Name: q.Get("name"), MediaType: q.Get("type"), Class: q.Get("class"),
		Emergency: q.Get("emergency") == "true",
		Files:     []records.FileSource{{Path: q.Get("name"), Open: func() (io.Reader, error) { return body, nil }}},
	}
	if v := q.Get("replicas"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			return req, fault.Invalidf("", "replicas must be 1..64")
		}
		req.Replicas = n
	}
	return req, nil
}

// truncated says what a cut-off upload is: the client's to retry.
func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fault.Invalidf("retry the upload", "upload truncated: %v; nothing was stored", err)
	}
	return err
}

func (a Records) add(w http.ResponseWriter, r *http.Request) {
	req, err := addRequest(r)
	if err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.Add(r.Context(), req)
	if err != nil {
		api.Fail(w, truncated(err))
		return
	}
	Reply(w, AddResult(res), nil)
}

func (a Records) update(w http.ResponseWriter, r *http.Request) {
	id, err := PathCID(r, "id")
	if err != nil {
		api.Fail(w, err)
		return
	}
	req, err := addRequest(r)
	if err != nil {
		api.Fail(w, err)
		return
	}
	req.Prev = id
	res, err := a.S.Update(r.Context(), req)
	if err != nil {
		api.Fail(w, truncated(err))
		return
	}
	Reply(w, AddResult(res), nil)
}

// AddResult is an add's result as the API shows it.
func AddResult(res *records.AddResult) api.AddResult {
	out := api.AddResult{ID: res.ID.String(), Size: res.Size, Chunks: res.Chunks, Version: res.Version}
	if res.Manifest != nil && res.Manifest.Prev.Defined() {
		out.Prev = res.Manifest.Prev.String()
	}
	return out
}

// lazyWriter sends the 200 header and the trailer declaration with the
// first byte, so an error before any byte still gets a JSON error reply.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(b []byte) (int, error) {
	if !l.started {
		l.w.Header().Set("Trailer", api.TrailerResult)
		l.w.Header().Set("Content-Type", "application/octet-stream")
		l.w.WriteHeader(http.StatusOK)
		l.started = true
	}
	return l.w.Write(b)
}

// get streams a record's plaintext. The client learns that it has all of
// it, verified, only from the trailer (api.TrailerResult "ok"): a read
// that fails after the first byte cannot change the status any more, so
// it says so there (api.TrailerVerifyFailed).
func (a Records) get(w http.ResponseWriter, r *http.Request) {
	id, err := PathCID(r, "id")
	if err != nil {
		api.Fail(w, err)
		return
	}
	req := records.GetRequest{Purpose: r.URL.Query().Get("purpose"), File: -1, Opened: func(size int64) {
		w.Header().Set(api.HeaderSize, strconv.FormatInt(size, 10))
	}, Named: func(name string) {
		if name != "" {
			// RFC 6266; FormatMediaType encodes a non-ASCII name as filename*.
			if v := mime.FormatMediaType("attachment", map[string]string{"filename": name}); v != "" {
				w.Header().Set("Content-Disposition", v)
			}
		}
	}}
	if v := r.URL.Query().Get("version"); v != "" {
		if req.Version, err = strconv.Atoi(v); err != nil || req.Version < 1 {
			api.Fail(w, fault.Invalidf("", "version must be a positive number"))
			return
		}
	}
	lw := &lazyWriter{w: w}
	if err := a.S.Get(r.Context(), id, req, lw); err != nil {
		if a.Log != nil {
			a.Log.Warn("get failed", "record", id, "err", err)
		}
		if !lw.started {
			api.Fail(w, err)
			return
		}
		w.Header().Set(api.TrailerResult, api.TrailerVerifyFailed+": "+err.Error())
		return
	}
	if !lw.started { // an empty record
		lw.Write(nil)
	}
	w.Header().Set(api.TrailerResult, "ok")
}

func (a Records) grant(w http.ResponseWriter, r *http.Request) {
	id, err := PathCID(r, "id")
	if err != nil {
		api.Fail(w, err)
		return
	}
	var req api.GrantRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	g, err := a.S.Grant(r.Context(), id, req)
	Reply(w, g, err)
}

func (a Records) revoke(w http.ResponseWriter, r *http.Request) {
	id, err := PathCID(r, "id")
	if err != nil {
		api.Fail(w, err)
		return
	}
	pid, err := PathPeer(r, "peer")
	if err != nil {
		api.Fail(w, err)
		return
	}
	n, err := a.S.Revoke(r.Context(), id, pid)
	Reply(w, api.RevokeResult{ID: id.String(), Grantee: pid.String(), VersionCount: n}, err)
}

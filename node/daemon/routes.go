package daemon

import (
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/records"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/ledger"
)

const p = api.Prefix

func (d *Daemon) routes() {
	s := d.api
	s.HandleFunc("GET "+p+"/id", d.handleID)
	s.HandleFunc("POST "+p+"/records", d.handleAdd)
	s.HandleFunc("GET "+p+"/records", func(w http.ResponseWriter, r *http.Request) {
		recs, err := d.List(r.Context())
		reply(w, recs, err)
	})
	s.HandleFunc("GET "+p+"/records/{id}/content", d.handleGet)
	s.HandleFunc("POST "+p+"/records/{id}/versions", d.handleUpdate)
	s.HandleFunc("POST "+p+"/network/invite", d.handleInvite)
	d.shareRoutes()
	d.memberRoutes()
	d.dicomRoutes()
	d.datasetRoutes()
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		api.Fail(w, err)
		return
	}
	api.JSON(w, http.StatusOK, v)
}

func pathCID(r *http.Request, name string) (cid.Cid, error) {
	c, err := cid.Decode(r.PathValue(name))
	if err != nil {
		return cid.Undef, fault.Invalidf("record IDs look like bafkrei…", "%q is not a record ID: %v", r.PathValue(name), err)
	}
	return c, nil
}

func (d *Daemon) handleID(w http.ResponseWriter, r *http.Request) {
	info := api.IDInfo{
		Peer:         d.self.String(),
		KEMPublicKey: base64.StdEncoding.EncodeToString(d.kem.Public()),
		NetworkID:    d.Ledger.NetworkID().String(),
		Member:       d.Ledger.IsMember(d.self),
		Org:          d.Repo.Config.Org,
		Admin:        d.Ledger.IsAdmin(d.self),
		PeerCount:    len(d.P2P.Host.Network().Peers()),
	}
	if m, ok := d.member(d.self.String()); ok && m.Org != "" {
		info.Org = m.Org // the ledger's word, once there is one
	}
	for _, a := range d.P2P.Host.Addrs() {
		info.Addrs = append(info.Addrs, a.String()+"/p2p/"+d.self.String())
	}
	api.JSON(w, http.StatusOK, info)
}

// uploadBody accepts an upload whose end is known, so a truncated upload is
// caught: net/http reports a body shorter than its Content-Length, or a
// chunked body without its final chunk, as an error. An empty upload
// (Content-Length: 0) is an empty file. (net/http moves Transfer-Encoding
// out of the header map into r.TransferEncoding.)
func uploadBody(r *http.Request) (io.Reader, error) {
	if r.ContentLength < 0 && !slices.Contains(r.TransferEncoding, "chunked") {
		return nil, fault.Invalidf("send Content-Length, or the body chunked", "upload without a length")
	}
	return r.Body, nil
}

func (d *Daemon) addRequest(r *http.Request) (records.AddRequest, error) {
	q := r.URL.Query()
	body, err := uploadBody(r)
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

func (d *Daemon) handleAdd(w http.ResponseWriter, r *http.Request) {
	req, err := d.addRequest(r)
	if err != nil {
		api.Fail(w, err)
		return
	}
	res, err := d.Add(r.Context(), req)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fault.Invalidf("retry the upload", "upload truncated: %v; nothing was stored", err)
		}
		api.Fail(w, err)
		return
	}
	reply(w, addResult(res), nil)
}

func addResult(res *records.AddResult) api.AddResult {
	out := api.AddResult{ID: res.ID.String(), Size: res.Size, Chunks: res.Chunks, Version: res.Version}
	if res.Manifest != nil && res.Manifest.Prev.Defined() {
		out.Prev = res.Manifest.Prev.String()
	}
	return out
}

func (d *Daemon) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id, err := pathCID(r, "id")
	if err != nil {
		api.Fail(w, err)
		return
	}
	req, err := d.addRequest(r)
	if err != nil {
		api.Fail(w, err)
		return
	}
	req.Prev = id
	res, err := d.Update(r.Context(), req)
	reply(w, resultOrNil(res), err)
}

func resultOrNil(res *records.AddResult) any {
	if res == nil {
		return nil
	}
	return addResult(res)
}

// lazyWriter sends the 200 header and the trailer declaration with the
// first byte, so an error before any byte still gets a JSON error reply.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
	n       int64
}

func (l *lazyWriter) Write(b []byte) (int, error) {
	if !l.started {
		l.w.Header().Set("Trailer", api.TrailerResult)
		l.w.Header().Set("Content-Type", "application/octet-stream")
		l.w.WriteHeader(http.StatusOK)
		l.started = true
	}
	n, err := l.w.Write(b)
	l.n += int64(n)
	return n, err
}

func (d *Daemon) handleGet(w http.ResponseWriter, r *http.Request) {
	id, err := pathCID(r, "id")
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
	err = d.Get(r.Context(), id, req, lw)
	if err != nil {
		d.log.Warn("get failed", "record", id, "err", err)
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

func (d *Daemon) handleInvite(w http.ResponseWriter, r *http.Request) {
	var req api.InviteRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	pid, err := peer.Decode(req.Peer)
	if err != nil {
		api.Fail(w, fault.Invalidf("the new node prints its ID with `medmesh id`", "%q is not a peer ID", req.Peer))
		return
	}
	if req.Org != "" {
		if err := ledger.CheckOrg(req.Org); err != nil {
			api.Fail(w, fault.Invalidf("", "%v", err))
			return
		}
	}
	if !d.Ledger.IsAdmin(d.self) {
		api.Fail(w, fault.Forbiddenf("run invite on the admin's node", "only the network admin admits members"))
		return
	}
	if !d.Ledger.IsMember(pid) {
		if _, err := d.Ledger.Append(r.Context(), ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: pid, Org: req.Org, Roles: req.Roles}); err != nil {
			api.Fail(w, err)
			return
		}
	}
	network, err := d.Repo.Network()
	if err != nil {
		api.Fail(w, err)
		return
	}
	inv := repo.Invite{Genesis: network.Genesis, PSK: network.PSK}
	for _, a := range d.P2P.Host.Addrs() {
		inv.Addrs = append(inv.Addrs, a.String()+"/p2p/"+d.self.String())
	}
	tok, err := inv.Encode()
	res := api.InviteResult{Peer: pid.String(), Token: tok}
	if m, ok := d.member(pid.String()); ok {
		res.Org = m.Org // an existing member keeps its organisation
	}
	reply(w, res, err)
}

func parseExpiry(now time.Time, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur <= 0 {
		return time.Time{}, fault.Invalidf("use a duration like 72h", "bad expiry %q", s)
	}
	return now.Add(dur), nil
}

var _ = fmt.Sprintf

package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/buildinfo"
	"github.com/medmesh/medmesh/internal/diskspace"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// pages registers the console's routes.
func (k *Console) pages(m *http.ServeMux) {
	m.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix, http.StatusSeeOther) })
	m.HandleFunc("GET /ui/{$}", k.page(k.overview))
	m.HandleFunc("GET /ui/login", k.login)
	m.HandleFunc("POST /ui/logout", k.change(k.logout))
	m.HandleFunc("GET /ui/static/{file}", k.static)

	m.HandleFunc("GET /ui/records", k.page(k.recordList))
	m.HandleFunc("POST /ui/records", k.upload)
	m.HandleFunc("GET /ui/records/{id}", k.page(k.recordPage))
	m.HandleFunc("POST /ui/records/{id}/content", k.change(k.download))
	m.HandleFunc("POST /ui/records/{id}/revoke", k.change(k.revoke))
	m.HandleFunc("GET /ui/share", k.page(k.sharePage))
	m.HandleFunc("POST /ui/share", k.change(k.share))

	m.HandleFunc("GET /ui/imaging", k.page(k.imagingPage))
	m.HandleFunc("GET /ui/studies/{id}", k.page(k.studyPage))
	m.HandleFunc("POST /ui/studies/{id}/open", k.change(k.openStudy))
	m.HandleFunc("POST /ui/studies/{id}/export", k.change(k.exportStudy))
	m.HandleFunc("POST /ui/studies/{id}/deidentify", k.change(k.deidentify))
	m.HandleFunc("GET /ui/studies/{id}/thumbs/{series}", k.data(k.thumbnail))

	m.HandleFunc("GET /ui/research", k.page(k.researchPage))
	m.HandleFunc("POST /ui/research/consents", k.change(k.addConsent))
	m.HandleFunc("POST /ui/research/consents/revoke", k.change(k.revokeConsent))
	m.HandleFunc("POST /ui/research/fetch", k.change(k.startFetch))
	m.HandleFunc("GET /ui/research/fetch/{job}", k.data(k.fetchProgress))

	m.HandleFunc("GET /ui/live", k.page(k.livePage))
	m.HandleFunc("GET /ui/events", k.data(k.events))
	// Anything else: a page, so that a browser sent to a wrong address
	// stays in the console (and asks for no /favicon.ico outside it).
	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		s, ok := k.session(r)
		if !ok {
			k.signIn(w, http.StatusUnauthorized, "")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			k.fail(w, r, s, api.Errorf(http.StatusMethodNotAllowed, "", "%s %s: the console does not do that", r.Method, r.URL.Path))
			return
		}
		k.fail(w, r, s, fault.NotFoundf("the menu above lists the console's pages", "no page at %s", r.URL.Path))
	})
}

// ---- sign-in ----

// login turns a one-time sign-in link into a session cookie.
func (k *Console) login(w http.ResponseWriter, r *http.Request) {
	cookie, _, ok := k.sess.redeem(r.URL.Query().Get("code"))
	if !ok {
		k.signIn(w, http.StatusForbidden, "This sign-in link has been used already or has expired: each link works once, for a few minutes.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: k.cookieName(), Value: cookie, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(k.cfg.SessionTTL / time.Second),
		// Secure is impossible on http://127.0.0.1; the cookie never
		// leaves the machine (see the package doc).
	})
	// Forward from this origin rather than redirect: a browser started on
	// a local file (medmesh ui) or sent from another site would not send a
	// SameSite=Strict cookie at the end of a redirect chain it began, but
	// sends it on a navigation this page makes. The code also leaves the
	// address bar.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=`+Prefix+`">`+
		`<title>Signed in · medmesh console</title><link rel="icon" href="`+assets["favicon.svg"].URL+`" type="image/svg+xml">`+
		`<link rel="stylesheet" href="`+assets["console.css"].URL+`"></head>`+
		`<body><main class="signin"><p>Signed in. <a href="`+Prefix+`">Continue to the console</a>.</p></main></body></html>`+"\n")
}

func (k *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if c, err := r.Cookie(k.cookieName()); err == nil {
		k.sess.end(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: k.cookieName(), Value: "", Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	k.signIn(w, http.StatusOK, "You are signed out.")
}

func (k *Console) static(w http.ResponseWriter, r *http.Request) {
	a := assets[r.PathValue("file")]
	if a == nil {
		plain(w, http.StatusNotFound, "no such file")
		return
	}
	w.Header().Set("Content-Type", a.mediaType)
	w.Header().Set("Cache-Control", "public, max-age=86400") // its URL changes with its content
	w.Write(a.body)
}

// ---- overview ----

type overviewData struct {
	Shared                         []recordRow // the latest shared with this node
	SharedCount                    int
	Peer, Network, Version, Commit string
	Health                         api.Health
	Members                        []person
	// Short names the owned records short of copies (the first
	// maxShort of Health.UnderReplicatedIDs).
	Short     []shortRecord
	DiskUsed  int64
	DiskFree  int64
	FreeKnown bool
}

// maxShort bounds the records short of copies the overview names.
const maxShort = 10

// shortRecord is an owned record short of copies, as the overview names it.
type shortRecord struct {
	ID, Name, Class, Copies string
	Version                 int
}

func (k *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	bi := buildinfo.Get()
	d := overviewData{Peer: k.cfg.Self.String(), Network: k.cfg.Ledger.NetworkID().String(), Version: bi.Version, Commit: bi.Commit,
		Health: k.cfg.Health.Check(ctx)}
	if k.cfg.DataDir != "" {
		d.DiskUsed = diskspace.Used(k.cfg.DataDir)
		free, ok := diskspace.Free(k.cfg.DataDir)
		d.DiskFree, d.FreeKnown = int64(free), ok
	}
	v := k.newView(r.Context(), s, "Overview", "overview", &d)
	d.Members = sortedPeople(v.people)
	_, shared, _, err := k.rows(ctx, "", v)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	for _, s := range d.Health.UnderReplicatedIDs[:min(len(d.Health.UnderReplicatedIDs), maxShort)] {
		row := shortRecord{ID: s}
		if id, err := cid.Decode(s); err == nil {
			if info, ok := k.cfg.Ledger.Record(id); ok {
				row.Name, row.Class, row.Version = k.names.of(ctx, info), info.Class, int(info.Version)
				row.Copies = fmt.Sprintf("%d of the %d it wants", len(k.cfg.Records.Holders(info)), info.Replicas)
			}
		}
		d.Short = append(d.Short, row)
	}
	d.SharedCount = len(shared)
	sort.SliceStable(shared, func(i, j int) bool { return shared[i].Created.After(shared[j].Created) })
	d.Shared = shared[:min(len(shared), 8)]
	k.render(w, http.StatusOK, "overview", v)
}

// ---- records ----

// recordRow is a record as the lists show it.
type recordRow struct {
	api.Record
	Name      string
	MediaType string
	Purpose   string       // shared with me: the grant's purpose
	Expires   api.NullTime // and its expiry
}

type recordsData struct {
	Query      string
	Mine       []recordRow
	Shared     []recordRow
	Held       int // other members' records held as replicas, not listed
	Classes    []string
	Unfiltered bool
}

// rows lists the records this node owns or may read, with their names
// where it knows them, matching q (in name, class, owner, organisation
// or ID; case-insensitive).
func (k *Console) rows(ctx context.Context, q string, v *view) (mine, shared []recordRow, held int, err error) {
	recs, err := k.cfg.Records.List(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	q = strings.ToLower(strings.TrimSpace(q))
	now := k.cfg.Now()
	listed := map[string]bool{}
	for _, rec := range recs {
		if rec.Mine || rec.Readable {
			listed[rec.ID] = true
		}
	}
	for _, rec := range recs {
		if !rec.Mine && !rec.Readable {
			held++
			continue
		}
		id, err := cid.Decode(rec.ID)
		if err != nil {
			continue
		}
		info, ok := k.cfg.Ledger.Record(id)
		if !ok || newerListed(k.cfg.Ledger, info, listed) {
			continue // a record is listed once, as its newest version here
		}
		row := recordRow{Record: rec}
		if l, ok := k.names.label(ctx, info); ok {
			row.Name, row.MediaType = l.Name, l.MediaType
		}
		if !rec.Mine {
			if gs := k.myGrants(id, now); len(gs) > 0 {
				row.Purpose, row.Expires = gs[0].Purpose, api.Nullable(gs[0].Expires)
			}
		}
		if q != "" && !strings.Contains(strings.ToLower(strings.Join([]string{row.Name, rec.Class, rec.ID, rec.Owner, v.OrgOf(rec.Owner), row.Purpose}, " ")), q) {
			continue
		}
		if rec.Mine {
			mine = append(mine, row)
		} else {
			shared = append(shared, row)
		}
	}
	return mine, shared, held, nil
}

// newerListed reports whether a newer version of a record is listed.
func newerListed(led Ledger, info ledger.RecordInfo, listed map[string]bool) bool {
	for _, v := range led.Versions(info.ID) {
		if v.Version > info.Version && listed[v.ID.String()] {
			return true
		}
	}
	return false
}

// myGrants are this node's live grants of a record, the longest-lived
// first (no expiry first).
func (k *Console) myGrants(id cid.Cid, now time.Time) []ledger.Grant {
	var out []ledger.Grant
	for _, g := range k.cfg.Ledger.Grants(id) {
		if g.Grantee == k.cfg.Self && g.LiveAt(now) {
			out = append(out, g)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Expires, out[j].Expires
		return a.IsZero() && !b.IsZero() || !a.IsZero() && !b.IsZero() && a.After(b)
	})
	return out
}

func (k *Console) recordList(w http.ResponseWriter, r *http.Request, s *session) {
	d := &recordsData{Query: r.URL.Query().Get("q"), Classes: ledger.Classes()}
	v := k.newView(r.Context(), s, "Records", "records", d)
	var err error
	d.Mine, d.Shared, d.Held, err = k.rows(r.Context(), d.Query, v)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	k.render(w, http.StatusOK, "records", v)
}

// maxUpload bounds one upload from the console.
const maxUpload = 64 << 30

// upload adds a record from a multipart form (the console's script sends
// it with a progress bar; without the script the browser posts the same
// form). The parts are read in order and the file streamed: the CSRF
// token (a header, or the first part) and the class come before it.
func (k *Console) upload(w http.ResponseWriter, r *http.Request) {
	s, ok := k.session(r)
	if !ok {
		plain(w, http.StatusUnauthorized, "sign in first: run `medmesh ui`")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		k.fail(w, r, s, fault.Invalidf("send the upload form", "not an upload: %v", err))
		return
	}
	fields := map[string]string{}
	csrfOK := s.checkCSRF(r, "")
	for {
		part, err := mr.NextPart()
		if err != nil {
			k.fail(w, r, s, fault.Invalidf("choose a file and send the form again", "the upload ended before its file: %v", err))
			return
		}
		name := part.FormName()
		if name != "file" {
			b, err := io.ReadAll(io.LimitReader(part, 1024))
			if err != nil {
				k.fail(w, r, s, fault.Invalidf("retry the upload", "upload interrupted: %v", err))
				return
			}
			fields[name] = string(b)
			if name == "csrf" {
				csrfOK = csrfOK || s.checkCSRF(r, string(b))
			}
			continue
		}
		if !csrfOK {
			plain(w, http.StatusForbidden, "the form's security token is missing or stale: reload the page and try again")
			return
		}
		fname := api.SafeFileName(part.FileName())
		if fname == "" {
			k.fail(w, r, s, fault.Invalidf("choose a file", "the upload has no usable file name"))
			return
		}
		mt := part.Header.Get("Content-Type")
		if mt == "" || mt == "application/octet-stream" {
			if g := mime.TypeByExtension(filepath.Ext(fname)); g != "" {
				mt = g
			}
		}
		class := fields["class"]
		if class == "" {
			class = ledger.ClassDocument
		}
		if err := ledger.CheckClass(class); err != nil {
			k.fail(w, r, s, fault.Invalidf("", "%v", err))
			return
		}
		body := io.Reader(part)
		res, err := k.cfg.Records.Add(r.Context(), records.AddRequest{Name: fname, MediaType: mt, Class: class,
			Emergency: fields["emergency"] == "on",
			Files:     []records.FileSource{{Path: fname, Open: func() (io.Reader, error) { return body, nil }}}})
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fault.Invalidf("retry the upload", "upload truncated: %v; nothing was stored", err)
			}
			k.fail(w, r, s, err)
			return
		}
		k.names.learn(res.ID, access.Label{Name: fname, MediaType: mt})
		s.addFlash("ok", fmt.Sprintf("Added %s (%s).", fname, humanSize(res.Size)))
		redirect(w, r, Prefix+"records/"+res.ID.String())
		return
	}
}

type recordData struct {
	Info      ledger.RecordInfo
	ID        string
	Name      string
	MediaType string
	Mine      bool
	Readable  bool
	Versions  []versionRow
	Holders   []string
	Grants    []api.Grant
	Audit     []api.AccessEvent
	Flagged   int
	MyGrant   *ledger.Grant
	Members   []person
	Purposes  []string
	Expiries  []choice
	IsStudy   bool
}

type versionRow struct {
	ID      string
	Version int
	Created time.Time
	Size    int64
	Current bool
}

type choice struct{ Value, Label string }

// expiries are the grant lifetimes the Share form offers.
var expiries = []choice{{"24h", "1 day"}, {"168h", "7 days"}, {"720h", "30 days"}, {"2160h", "90 days"}, {"8760h", "1 year"}, {"", "No expiry"}}

// purposes a member chooses from (emergency grants are the emergency
// authorities', from the CLI).
func purposes() []string {
	return slices.DeleteFunc(ledger.Purposes(), func(p string) bool { return p == ledger.PurposeEmergency })
}

func (k *Console) recordPage(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := cid.Decode(r.PathValue("id"))
	if err != nil {
		k.fail(w, r, s, fault.Invalidf("record IDs look like bafkrei…", "%q is not a record ID", r.PathValue("id")))
		return
	}
	info, ok := k.cfg.Ledger.Record(id)
	if !ok {
		k.fail(w, r, s, fault.NotFoundf("if it was just added, wait for the ledger to sync", "unknown record %s", id))
		return
	}
	d := &recordData{Info: info, ID: id.String(), Mine: info.Owner == k.cfg.Self, Purposes: purposes(), Expiries: expiries,
		IsStudy: info.Class == ledger.ClassImaging}
	v := k.newView(r.Context(), s, "Record", "records", d)
	if l, ok := k.names.label(r.Context(), info); ok {
		d.Name, d.MediaType = l.Name, l.MediaType
		v.Title = l.Name
	}
	vs := k.cfg.Ledger.Versions(id)
	if len(vs) == 0 {
		vs = []ledger.RecordInfo{info}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Version > vs[j].Version })
	for _, x := range vs {
		d.Versions = append(d.Versions, versionRow{ID: x.ID.String(), Version: int(x.Version), Created: x.Announced, Size: int64(x.Size), Current: x.ID == id})
	}
	for _, h := range k.cfg.Records.Holders(info) {
		d.Holders = append(d.Holders, h.String())
	}
	if d.Mine {
		if d.Grants, err = k.cfg.Records.ListGrants(id); err != nil {
			k.fail(w, r, s, err)
			return
		}
		if d.Audit, err = k.cfg.Records.Audit(id); err != nil {
			k.fail(w, r, s, err)
			return
		}
		for _, a := range d.Audit {
			if a.Review || a.Emergency {
				d.Flagged++
			}
		}
		for _, p := range sortedPeople(v.people) {
			if !p.Self {
				d.Members = append(d.Members, p)
			}
		}
	} else if gs := k.myGrants(id, k.cfg.Now()); len(gs) > 0 {
		d.MyGrant, d.Readable = &gs[0], true
	}
	d.Readable = d.Readable || d.Mine
	k.render(w, http.StatusOK, "record", v)
}

// download streams a record to the browser: a read, which the ledger
// records (for a grantee: its claim, and the serving node's attestation).
// The size is sent first; should the read fail midway, the connection is
// cut so the browser marks the download failed instead of keeping part.
func (k *Console) download(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := cid.Decode(r.PathValue("id"))
	if err != nil {
		k.fail(w, r, s, fault.Invalidf("", "%q is not a record ID", r.PathValue("id")))
		return
	}
	version, _ := strconv.Atoi(r.PostForm.Get("version"))
	started := false
	name := ""
	err = k.cfg.Records.Get(r.Context(), id, records.GetRequest{Version: version, File: -1,
		Named: func(n string) { name = n },
		Opened: func(size int64) {
			started = true
			h := w.Header()
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.FormatInt(size, 10))
			fn := api.SafeFileName(name)
			if fn == "" {
				fn = id.String()
			}
			h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fn}))
		}}, &lazyHeader{w: w, name: &name})
	if err != nil {
		if started {
			k.log.Warn("console: download failed midway", "record", id, "err", err)
			panic(http.ErrAbortHandler)
		}
		k.fail(w, r, s, err)
		return
	}
	if info, ok := k.cfg.Ledger.Record(id); ok && name != "" {
		k.names.learn(info.ID, access.Label{Name: name})
	}
}

// lazyHeader sets Content-Disposition from the name the read learned
// (Named is called after Opened) before the first byte.
type lazyHeader struct {
	w     http.ResponseWriter
	name  *string
	wrote bool
}

func (l *lazyHeader) Write(b []byte) (int, error) {
	if !l.wrote {
		l.wrote = true
		if fn := api.SafeFileName(*l.name); fn != "" {
			l.w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fn}))
		}
	}
	return l.w.Write(b)
}

func (k *Console) revoke(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := cid.Decode(r.PathValue("id"))
	if err != nil {
		k.fail(w, r, s, fault.Invalidf("", "%q is not a record ID", r.PathValue("id")))
		return
	}
	grantee, err := peerParam(r.PostForm.Get("grantee"), "grantee")
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	n, err := k.cfg.Records.Revoke(r.Context(), id, grantee)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	v := k.newView(r.Context(), nil, "", "", nil)
	s.addFlash("ok", fmt.Sprintf("Revoked %s's access to %s. Holders refuse it from now on.", v.Who(grantee.String()), plural(n, "version")))
	if r.PostForm.Get("back") == "share" {
		redirect(w, r, Prefix+"share")
		return
	}
	redirect(w, r, Prefix+"records/"+id.String())
}

// ---- share ----

type shareData struct {
	Selected string
	Records  []recordRow
	// Grants are the live grants of this node's records (their newest
	// versions), each with a Revoke button; at most maxShareRows.
	Grants    []shareGrant
	MoreCount int
	Members   []person
	Purposes  []string
	Expiries  []choice
}

// maxShareRows bounds the grants the Share page lists.
const maxShareRows = 100

// shareGrant is a live grant of one of this node's records.
type shareGrant struct {
	api.Grant
	Record, Name, Class string
}

func (k *Console) sharePage(w http.ResponseWriter, r *http.Request, s *session) {
	d := &shareData{Selected: r.URL.Query().Get("id"), Purposes: purposes(), Expiries: expiries}
	v := k.newView(r.Context(), s, "Share", "share", d)
	mine, _, _, err := k.rows(r.Context(), "", v)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	d.Records = mine
	for _, p := range sortedPeople(v.people) {
		if !p.Self {
			d.Members = append(d.Members, p)
		}
	}
	for _, row := range mine {
		id, err := cid.Decode(row.ID)
		if err != nil {
			continue
		}
		gs, err := k.cfg.Records.ListGrants(id)
		if err != nil {
			k.fail(w, r, s, err)
			return
		}
		for _, g := range gs {
			if g.Expired {
				continue
			}
			if len(d.Grants) == maxShareRows {
				d.MoreCount++
				continue
			}
			d.Grants = append(d.Grants, shareGrant{Grant: g, Record: row.ID, Name: row.Name, Class: row.Class})
		}
	}
	k.render(w, http.StatusOK, "share", v)
}

func (k *Console) share(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	id, err := cid.Decode(f.Get("id"))
	if err != nil {
		k.fail(w, r, s, fault.Invalidf("choose a record", "%q is not a record ID", f.Get("id")))
		return
	}
	to, err := peerParam(f.Get("to"), "member")
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	purpose := f.Get("purpose")
	if purpose == ledger.PurposeEmergency {
		k.fail(w, r, s, fault.Invalidf("emergency authorities grant with `medmesh grant --purpose emergency`", "emergency grants are not made from the console"))
		return
	}
	g, err := k.cfg.Records.Grant(r.Context(), id, api.GrantRequest{To: to.String(), Purpose: purpose, Expires: f.Get("expires")})
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	v := k.newView(r.Context(), nil, "", "", nil)
	msg := fmt.Sprintf("Shared with %s for %s", v.Who(g.Grantee), g.Purpose)
	if !g.Expires.IsZero() {
		msg += " until " + when(g.Expires.Time)
	}
	s.addFlash("ok", msg+".")
	redirect(w, r, Prefix+"records/"+id.String())
}

// ---- live ----

func (k *Console) livePage(w http.ResponseWriter, r *http.Request, s *session) {
	evs := k.feed.Recent(0)
	slices.Reverse(evs)
	k.render(w, http.StatusOK, "live", k.newView(r.Context(), s, "Live", "live", evs))
}

// sseKeepAlive is how often an idle event stream sends a comment, so
// proxies and the browser keep it open and a dead one is noticed.
const sseKeepAlive = 20 * time.Second

// events streams the feed to a page as server-sent events; a browser that
// reconnects sends Last-Event-ID and gets what it missed from the ring.
func (k *Console) events(w http.ResponseWriter, r *http.Request, s *session) {
	after := int64(-1)
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 63); err == nil {
			after = int64(n)
		}
	}
	backlog, ch, cancel := k.feed.Subscribe(after)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	fl, _ := w.(http.Flusher)
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "retry: 2000\n\n")
	send := func(ev api.Event) error {
		_, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, mustJSON(ev))
		return err
	}
	for _, ev := range backlog {
		if send(ev) != nil {
			return
		}
	}
	if fl != nil {
		rc.Flush()
	}
	tick := time.NewTicker(sseKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-k.ctx.Done():
			return
		case <-tick.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if send(ev) != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// handleWatch streams the feed to `medmesh watch`: one JSON object a line
// (?recent=true first sends the events kept since the daemon started).
func (k *Console) handleWatch(w http.ResponseWriter, r *http.Request) {
	after := int64(-1)
	if r.URL.Query().Get("recent") == "true" {
		after = 0
	}
	backlog, ch, cancel := k.feed.Subscribe(after)
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	for _, ev := range backlog {
		w.Write(append(mustJSON(ev), '\n'))
	}
	rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-k.ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(append(mustJSON(ev), '\n')); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

func mustJSON(v any) []byte {
	b, err := jsonMarshal(v)
	if err != nil {
		return []byte("{}")
	}
	return b
}

var _ = peer.ID("")

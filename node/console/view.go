package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// asset is one static file, served under a name that changes with its
// content (so it can be cached) and, for the script, pinned by its hash
// in the page (Subresource Integrity).
type asset struct {
	name, mediaType string
	body            []byte
	URL, SRI        string
}

// assets and templates are parsed once; they are read-only after init.
var (
	assets    = loadAssets()
	templates = loadTemplates()
)

func loadAssets() map[string]*asset {
	out := map[string]*asset{}
	for name, mt := range map[string]string{"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8", "favicon.svg": "image/svg+xml"} {
		b, err := fs.ReadFile(staticFS, "static/"+name)
		if err != nil {
			panic(err) // embedded at build time
		}
		sum := sha256.Sum256(b)
		out[name] = &asset{name: name, mediaType: mt, body: b,
			URL: Prefix + "static/" + name + "?v=" + hex.EncodeToString(sum[:6]), SRI: "sha256-" + base64.StdEncoding.EncodeToString(sum[:])}
	}
	return out
}

var funcs = template.FuncMap{
	"short": shortPeer,
	"size": func(v any) string {
		switch n := v.(type) {
		case int64:
			return humanSize(n)
		case uint64:
			return humanSize(int64(n))
		case int:
			return humanSize(int64(n))
		}
		return fmt.Sprint(v)
	},
	"when": when,
	"whenp": func(t api.NullTime) string {
		if t.IsZero() {
			return "no expiry"
		}
		return when(t.Time)
	},
	"join": strings.Join,
	// dicomdate shows a DICOM DA (and TM) value as 2024-01-15 10:15.
	"dicomdate": func(da, tm string) string {
		if len(da) != 8 {
			return strings.TrimSpace(da + " " + tm)
		}
		out := da[:4] + "-" + da[4:6] + "-" + da[6:]
		if len(tm) >= 4 {
			out += " " + tm[:2] + ":" + tm[2:4]
		}
		return out
	},
	"plural": plural,
	"sub":    func(a, b int) int { return a - b },
	"cli":    cliText,
	"pn":     personName,
	"orDash": func(s string) string {
		if strings.TrimSpace(s) == "" {
			return "—"
		}
		return s
	},
	"shortid": func(id string) string {
		if len(id) <= 16 {
			return id
		}
		return id[:10] + "…" + id[len(id)-6:]
	},
}

func loadTemplates() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html"))
	out := map[string]*template.Template{}
	pages, _ := fs.Glob(templateFS, "templates/*.html")
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, p))
	}
	return out
}

// plural counts: "1 record", "4 records" (many is one+"s" when empty).
func plural(n int, one string, many ...string) string {
	if n == 1 {
		return "1 " + one
	}
	if len(many) > 0 {
		return fmt.Sprintf("%d %s", n, many[0])
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// cliText shows a message written for the terminal (health's problems,
// services' hints) with its `commands` as code: the text is escaped, the
// backquoted parts wrapped in <code>.
func cliText(s string) template.HTML {
	parts := strings.Split(s, "`")
	if len(parts)%2 == 0 { // an unpaired backquote: plain text
		return template.HTML(template.HTMLEscapeString(s))
	}
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 1 {
			b.WriteString("<code>" + template.HTMLEscapeString(p) + "</code>")
		} else {
			b.WriteString(template.HTMLEscapeString(p))
		}
	}
	return template.HTML(b.String())
}

// personName shows a DICOM person name (PS3.5 6.2.1: family^given^
// middle^prefix^suffix; the alphabetic group) as "family, prefix given
// middle, suffix".
func personName(pn string) string {
	alpha, _, _ := strings.Cut(pn, "=")
	c := strings.Split(alpha, "^")
	for len(c) < 5 {
		c = append(c, "")
	}
	for i := range c {
		c[i] = strings.TrimSpace(c[i])
	}
	var given []string
	for _, x := range []string{c[3], c[1], c[2]} {
		if x != "" {
			given = append(given, x)
		}
	}
	out := c[0]
	if len(given) > 0 {
		if out != "" {
			out += ", "
		}
		out += strings.Join(given, " ")
	}
	if c[4] != "" {
		out += ", " + c[4]
	}
	return out
}

// shortPeer abbreviates a peer ID for display (the full ID is in the
// element's title).
func shortPeer(p string) string {
	if len(p) < 16 {
		return p
	}
	return p[:6] + "…" + p[len(p)-6:]
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// view is what every page template gets.
type view struct {
	Title    string
	Nav      string
	SignedIn bool
	CSRF     string
	Self     string
	Org      string
	Flash    []flash
	Style    *asset
	Script   *asset
	Icon     *asset
	D        any

	people map[string]person
}

// person is a member as pages name it (api.Member: organisation, roles,
// whether connected, when last seen).
type person = api.Member

// Who names a peer by its organisation, with its short ID.
func (v *view) Who(p string) string {
	pp, ok := v.people[p]
	switch {
	case ok && pp.Self:
		return "this node (" + orDash(pp.Org) + ")"
	case ok && pp.Org != "":
		return pp.Org + " (" + shortPeer(p) + ")"
	}
	return shortPeer(p)
}

// OrgOf is a peer's organisation ("" if none or not a member).
func (v *view) OrgOf(p string) string { return v.people[p].Org }

// Connected reports whether this node is connected to a peer (itself: yes).
func (v *view) Connected(p string) bool { return v.people[p].Connected }

func orDash(s string) string {
	if s == "" {
		return "no organisation set"
	}
	return s
}

// people lists the members as the membership service has them; should it
// fail, as the ledger has them (organisations and roles, no connectivity).
func (k *Console) people(ctx context.Context) map[string]person {
	out := map[string]person{}
	ms, err := k.cfg.Members.Members(ctx)
	if err != nil {
		k.log.Warn("console: members", "err", err)
		for _, m := range k.cfg.Ledger.Members() {
			ms = append(ms, api.Member{Peer: m.Peer.String(), Org: m.Org, Roles: m.Roles, Self: m.Peer == k.cfg.Self})
		}
	}
	for _, m := range ms {
		out[m.Peer] = m
	}
	return out
}

// sortedPeople is people sorted: this node, then by organisation and peer.
func sortedPeople(ps map[string]person) []person {
	out := make([]person, 0, len(ps))
	for _, p := range ps {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Self != out[j].Self {
			return out[i].Self
		}
		if out[i].Org != out[j].Org {
			return out[i].Org < out[j].Org
		}
		return out[i].Peer < out[j].Peer
	})
	return out
}

// newView builds a page's view for a session (nil: signed out).
func (k *Console) newView(ctx context.Context, s *session, title, nav string, d any) *view {
	v := &view{Title: title, Nav: nav, Self: k.cfg.Self.String(), Style: assets["console.css"], Script: assets["console.js"], Icon: assets["favicon.svg"], D: d}
	v.people = k.people(ctx)
	v.Org = v.people[v.Self].Org
	if v.Org == "" {
		v.Org = k.cfg.Org
	}
	if s != nil {
		v.SignedIn, v.CSRF, v.Flash = true, s.csrf, s.takeFlash()
	}
	return v
}

// render writes a page. It renders into a buffer first: a template error
// is a 500, not half a page.
func (k *Console) render(w http.ResponseWriter, code int, page string, v *view) {
	var buf bytes.Buffer
	t := templates[page]
	if t == nil {
		plain(w, http.StatusInternalServerError, "no page "+page)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		k.log.Error("console: render", "page", page, "err", err)
		plain(w, http.StatusInternalServerError, "the page could not be rendered")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// fail answers an error: a page with what went wrong and what to do, or
// JSON for the console's script.
func (k *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := api.StatusOf(err)
	if code >= 500 {
		k.log.Warn("console", "path", r.URL.Path, "err", err)
	}
	if wantsJSON(r) {
		api.Fail(w, err)
		return
	}
	k.render(w, code, "error", k.newView(r.Context(), s, errorTitle(code), "", struct{ Error, Hint string }{sentence(err.Error()), sentence(fault.HintOf(err))}))
}

// errorTitle heads an error page by what kind of failure it is.
func errorTitle(code int) string {
	switch {
	case code == http.StatusNotFound || code == http.StatusGone:
		return "Not found"
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return "Not allowed"
	case code == http.StatusConflict:
		return "Not possible now"
	case code == http.StatusMethodNotAllowed:
		return "Not something the console does"
	case code >= 400 && code < 500:
		return "That did not work"
	case code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		return "Unavailable"
	}
	return "Something went wrong"
}

// sentence shows an error or hint (written for the terminal: lower case,
// no full stop) as a sentence.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	if c := s[0]; c >= 'a' && c <= 'z' {
		s = string(c-'a'+'A') + s[1:]
	}
	if last := s[len(s)-1]; last != '.' && last != '!' && last != '?' && last != ')' {
		s += "."
	}
	return s
}

// jsonReply answers the console's script.
func jsonReply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(api.EmptyLists(v))
}

// ---- sessions on requests ----

// cookieName is this node's session cookie. Cookies are shared by every
// port of 127.0.0.1: each node's console has its own name, so two nodes
// on one machine do not sign each other out.
func (k *Console) cookieName() string {
	id := k.cfg.Self.String()
	return "medmesh-console-" + id[len(id)-8:]
}

func (k *Console) session(r *http.Request) (*session, bool) {
	c, err := r.Cookie(k.cookieName())
	if err != nil {
		return nil, false
	}
	return k.sess.lookup(c.Value)
}

type handler func(w http.ResponseWriter, r *http.Request, s *session)

// page serves a page to a signed-in browser; anyone else gets the sign-in
// page and nothing of the node's.
func (k *Console) page(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := k.session(r)
		if !ok {
			k.signIn(w, http.StatusUnauthorized, "")
			return
		}
		h(w, r, s)
	}
}

// data serves what a signed-in page's script or images fetch; without a
// session, 401 and nothing else.
func (k *Console) data(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := k.session(r)
		if !ok {
			plain(w, http.StatusUnauthorized, "sign in first: run `medmesh ui`")
			return
		}
		h(w, r, s)
	}
}

// maxForm bounds a form's body (uploads are not forms: see upload).
const maxForm = 64 << 10

// change serves a POST that changes something (or reads a record, which
// the ledger records): a signed-in session, and its CSRF token in the
// form or the X-CSRF-Token header.
func (k *Console) change(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := k.session(r)
		if !ok {
			plain(w, http.StatusUnauthorized, "sign in first: run `medmesh ui`")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			plain(w, http.StatusBadRequest, "bad form")
			return
		}
		if !s.checkCSRF(r, r.PostForm.Get("csrf")) {
			plain(w, http.StatusForbidden, "the form's security token is missing or stale: reload the page and try again")
			return
		}
		h(w, r, s)
	}
}

// signIn answers the sign-in page: how to get a link, nothing else.
func (k *Console) signIn(w http.ResponseWriter, code int, problem string) {
	v := &view{Title: "Sign in", Style: assets["console.css"], Script: assets["console.js"], Icon: assets["favicon.svg"], D: problem}
	k.render(w, code, "signin", v)
}

// redirect sends the browser to a console path after a change
// (Post/Redirect/Get), or answers the script with where to go.
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	if wantsJSON(r) {
		jsonReply(w, map[string]string{"url": to})
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// peerParam parses a peer ID from a form.
func peerParam(v, what string) (peer.ID, error) {
	p, err := peer.Decode(v)
	if err != nil {
		return "", fault.Invalidf("choose one from the list", "%s: %q is not a peer ID", what, v)
	}
	return p, nil
}

package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/console"
	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// The secrets a page must never show without a session.
const (
	recordName = "Secret discharge summary.pdf"
	otherOrg   = "Northside Clinic"
	selfOrg    = "St Mary"
)

func newPeer(t *testing.T) peer.ID {
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := peer.IDFromPublicKey(pub)
	return p
}

func fakeCid(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

type fakeLedger struct {
	self, other peer.ID
	rec         ledger.RecordInfo
}

func (l *fakeLedger) NetworkID() cid.Cid { return fakeCid("net") }
func (l *fakeLedger) Record(id cid.Cid) (ledger.RecordInfo, bool) {
	return l.rec, id == l.rec.ID
}
func (l *fakeLedger) Versions(id cid.Cid) []ledger.RecordInfo { return []ledger.RecordInfo{l.rec} }
func (l *fakeLedger) Grants(id cid.Cid) []ledger.Grant        { return nil }
func (l *fakeLedger) Members() []ledger.Member {
	return []ledger.Member{{Peer: l.self, Org: selfOrg}, {Peer: l.other, Org: otherOrg}}
}
func (l *fakeLedger) Subscribe() (<-chan *ledger.Entry, func()) {
	ch := make(chan *ledger.Entry)
	var once sync.Once
	return ch, func() { once.Do(func() { close(ch) }) }
}

type fakeRecords struct {
	l      *fakeLedger
	mu     sync.Mutex
	grants []api.GrantRequest
	// listed and audit are what ListGrants and Audit answer.
	listed []api.Grant
	audit  []api.AccessEvent
}

func (f *fakeRecords) List(ctx context.Context) ([]api.Record, error) {
	r := f.l.rec
	return []api.Record{{ID: r.ID.String(), Owner: r.Owner.String(), Class: r.Class, Version: 1, Mine: true, Readable: true, Holders: []string{}}}, nil
}
func (f *fakeRecords) Label(ctx context.Context, info ledger.RecordInfo) (access.Label, bool) {
	return access.Label{Name: recordName, MediaType: "application/pdf"}, true
}
func (f *fakeRecords) Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	return nil, fault.Invalidf("", "not in this test")
}
func (f *fakeRecords) Get(ctx context.Context, id cid.Cid, req records.GetRequest, w io.Writer) error {
	return fault.Forbiddenf("", "not in this test")
}
func (f *fakeRecords) Grant(ctx context.Context, id cid.Cid, req api.GrantRequest) (*api.Grant, error) {
	f.mu.Lock()
	f.grants = append(f.grants, req)
	f.mu.Unlock()
	return &api.Grant{ID: id.String(), Grantee: req.To, Purpose: req.Purpose}, nil
}
func (f *fakeRecords) ListGrants(id cid.Cid) ([]api.Grant, error)                     { return f.listed, nil }
func (f *fakeRecords) Revoke(ctx context.Context, id cid.Cid, p peer.ID) (int, error) { return 1, nil }
func (f *fakeRecords) Audit(id cid.Cid) ([]api.AccessEvent, error)                    { return f.audit, nil }
func (f *fakeRecords) Holders(info ledger.RecordInfo) []peer.ID                       { return []peer.ID{info.Owner} }

type fakeMembers struct{ l *fakeLedger }

func (f fakeMembers) Members(ctx context.Context) ([]api.Member, error) {
	var out []api.Member
	for _, m := range f.l.Members() {
		out = append(out, api.Member{Peer: m.Peer.String(), Org: m.Org, Connected: true, Self: m.Peer == f.l.self})
	}
	return out, nil
}

type fakeHealth struct{ self peer.ID }

func (h fakeHealth) Check(ctx context.Context) api.Health {
	return api.Health{Healthy: true, Peer: h.self.String(), Member: true}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	t     *testing.T
	srv   *api.Server
	k     *console.Console
	recs  *fakeRecords
	led   *fakeLedger
	clock *clock
}

func newEnv(t *testing.T) *env {
	self, other := newPeer(t), newPeer(t)
	led := &fakeLedger{self: self, other: other, rec: ledger.RecordInfo{ID: fakeCid("rec"), Owner: self, Class: "discharge", Version: 1, Replicas: 1}}
	recs := &fakeRecords{l: led}
	c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	k, err := console.New(console.Config{Self: self, Addr: func() string { return "127.0.0.1:5555" }, Records: recs, Ledger: led,
		Members: fakeMembers{led}, Health: fakeHealth{self}, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	k.Start()
	t.Cleanup(k.Close)
	return &env{t: t, srv: httpapi.New("tok", nil, k), k: k, recs: recs, led: led, clock: c}
}

type req struct {
	method, path string
	body         string
	header       map[string]string
	cookie       *http.Cookie
}

func (e *env) do(r req) *http.Response {
	e.t.Helper()
	hr := httptest.NewRequest(r.method, "http://127.0.0.1:5555"+r.path, strings.NewReader(r.body))
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	if r.cookie != nil {
		hr.AddCookie(r.cookie)
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, hr)
	return w.Result()
}

func body(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// login gets a sign-in link with the API token and redeems it.
func (e *env) login() (*http.Cookie, string) {
	e.t.Helper()
	link := e.newLink()
	resp := e.do(req{method: "GET", path: link})
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("sign-in: %d %s", resp.StatusCode, body(resp))
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		e.t.Fatalf("sign-in set %d cookies", len(cs))
	}
	page := e.do(req{method: "GET", path: "/ui/records", cookie: cs[0]})
	b := body(page)
	i := strings.Index(b, `name="csrf-token" content="`)
	if i < 0 {
		e.t.Fatalf("no CSRF token on the page:\n%s", b)
	}
	tok := b[i+len(`name="csrf-token" content="`):]
	return cs[0], tok[:strings.IndexByte(tok, '"')]
}

// newLink asks for a sign-in link as `medmesh ui` does, and returns its
// path.
func (e *env) newLink() string {
	e.t.Helper()
	resp := e.do(req{method: "POST", path: "/api/v1/console/login", header: map[string]string{"Authorization": "Bearer tok"}})
	var l api.ConsoleLogin
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
		e.t.Fatalf("login link: %d %v", resp.StatusCode, err)
	}
	u, err := url.Parse(l.URL)
	if err != nil || u.Host != "127.0.0.1:5555" || !l.Expires.Equal(e.clock.Now().Add(2*time.Minute)) {
		e.t.Fatalf("link %q expires %v", l.URL, l.Expires)
	}
	return u.RequestURI()
}

// routes are every console route (and a few that are not).
var routes = []req{
	{method: "GET", path: "/ui/"}, {method: "GET", path: "/ui"}, {method: "GET", path: "/ui/records"},
	{method: "GET", path: "/ui/records?q=secret"}, {method: "POST", path: "/ui/records", body: "x"},
	{method: "GET", path: "/ui/records/" + fakeCid("rec").String()},
	{method: "POST", path: "/ui/records/" + fakeCid("rec").String() + "/content", body: "version=1"},
	{method: "POST", path: "/ui/records/" + fakeCid("rec").String() + "/revoke", body: "grantee=x"},
	{method: "GET", path: "/ui/share"}, {method: "POST", path: "/ui/share", body: "id=x"},
	{method: "GET", path: "/ui/imaging"}, {method: "GET", path: "/ui/studies/" + fakeCid("rec").String()},
	{method: "POST", path: "/ui/studies/" + fakeCid("rec").String() + "/open"},
	{method: "POST", path: "/ui/studies/" + fakeCid("rec").String() + "/export"},
	{method: "POST", path: "/ui/studies/" + fakeCid("rec").String() + "/deidentify"},
	{method: "GET", path: "/ui/studies/" + fakeCid("rec").String() + "/thumbs/1.2.3"},
	{method: "GET", path: "/ui/research"}, {method: "POST", path: "/ui/research/consents", body: "patient=p"},
	{method: "POST", path: "/ui/research/consents/revoke"}, {method: "POST", path: "/ui/research/fetch"},
	{method: "GET", path: "/ui/research/fetch/job"}, {method: "GET", path: "/ui/live"}, {method: "GET", path: "/ui/events"},
	{method: "POST", path: "/ui/logout"}, {method: "GET", path: "/ui/nothing-here"}, {method: "DELETE", path: "/ui/records"},
	{method: "GET", path: "/ui/login?code=forged"}, {method: "GET", path: "/ui/login"},
}

// TestNoSessionNoData: without a session no console route answers
// anything of the node's (its peer ID, organisations, record names), and
// every answer carries the console's Content-Security-Policy.
func TestNoSessionNoData(t *testing.T) {
	e := newEnv(t)
	other, _ := e.login() // a session exists, but these requests do not carry it
	stale := &http.Cookie{Name: other.Name, Value: "not-a-session"}
	for _, cookie := range []*http.Cookie{nil, stale} {
		for _, r := range routes {
			r.cookie = cookie
			resp := e.do(r)
			b := body(resp)
			name := r.method + " " + r.path
			if resp.StatusCode < 300 && r.path != "/ui/login" {
				t.Errorf("%s without a session: %d", name, resp.StatusCode)
			}
			for _, secret := range []string{e.led.self.String(), e.led.other.String(), recordName, otherOrg, selfOrg, fakeCid("rec").String()} {
				if strings.Contains(b, secret) {
					t.Errorf("%s without a session shows %q", name, secret)
				}
			}
			checkHeaders(t, name, resp)
		}
	}
	if n := len(e.recs.grants); n != 0 {
		t.Errorf("%d grants made without a session", n)
	}
}

func checkHeaders(t *testing.T, name string, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", name, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: Content-Security-Policy allows inline or eval: %q", name, csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "same-origin" {
		t.Errorf("%s: headers %v", name, resp.Header)
	}
}

// TestSignInOnce: a sign-in link works once, within its two minutes, and
// makes an HttpOnly, SameSite=Strict session cookie scoped to /ui/; the
// session shows the node; it ends when idle, and at sign-out.
func TestSignInOnce(t *testing.T) {
	e := newEnv(t)
	link := e.newLink()
	resp := e.do(req{method: "GET", path: link})
	cs := resp.Cookies()
	if resp.StatusCode != 200 || len(cs) != 1 {
		t.Fatalf("first use: %d, %d cookies", resp.StatusCode, len(cs))
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure || len(c.Value) < 40 {
		t.Errorf("cookie %+v", c)
	}
	checkHeaders(t, "sign-in", resp)
	again := e.do(req{method: "GET", path: link})
	if b := body(again); again.StatusCode != http.StatusForbidden || len(again.Cookies()) != 0 || !strings.Contains(b, "used already or has expired") {
		t.Errorf("second use: %d %v %s", again.StatusCode, again.Cookies(), b)
	}
	page := e.do(req{method: "GET", path: "/ui/records", cookie: c})
	if b := body(page); page.StatusCode != 200 || !strings.Contains(b, recordName) || !strings.Contains(b, selfOrg) {
		t.Errorf("records with the session: %d\n%s", page.StatusCode, b)
	}
	checkHeaders(t, "records page", page)

	late := e.newLink()
	e.clock.Advance(2*time.Minute + time.Second)
	if r := e.do(req{method: "GET", path: late}); r.StatusCode != http.StatusForbidden || len(r.Cookies()) != 0 {
		t.Errorf("expired link: %d", r.StatusCode)
	}
	// Idle for 30 minutes: the session is gone (the clock moved 2m above).
	e.clock.Advance(29 * time.Minute)
	if r := e.do(req{method: "GET", path: "/ui/", cookie: c}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("idle session: %d", r.StatusCode)
	}

	c2, tok := e.login()
	out := e.do(req{method: "POST", path: "/ui/logout", body: "csrf=" + tok, cookie: c2})
	if out.StatusCode != 200 {
		t.Fatalf("sign out: %d", out.StatusCode)
	}
	if r := e.do(req{method: "GET", path: "/ui/", cookie: c2}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("after sign-out: %d", r.StatusCode)
	}
}

// TestChangesNeedCSRF: a change needs the session's CSRF token and the
// console's own origin; a page another program on 127.0.0.1 serves (same
// site, other origin) cannot make one with the browser's cookie.
func TestChangesNeedCSRF(t *testing.T) {
	e := newEnv(t)
	c, tok := e.login()
	form := "id=" + fakeCid("rec").String() + "&to=" + e.led.other.String() + "&purpose=treatment&expires=24h"
	for _, r := range []req{
		{method: "POST", path: "/ui/share", body: form},
		{method: "POST", path: "/ui/share", body: form + "&csrf=wrong"},
		{method: "POST", path: "/ui/share", body: form + "&csrf=" + tok, header: map[string]string{"Origin": "http://127.0.0.1:9999"}},
		{method: "POST", path: "/ui/share", body: form + "&csrf=" + tok, header: map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}},
		{method: "POST", path: "/ui/share", body: form + "&csrf=" + tok, header: map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{method: "GET", path: "/ui/events", header: map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}},
		{method: "POST", path: "/ui/share", body: form + "&csrf=" + tok, header: map[string]string{"Host": "evil.example"}},
	} {
		r.cookie = c
		if h := r.header["Host"]; h != "" {
			hr := httptest.NewRequest(r.method, "http://"+h+r.path, strings.NewReader(r.body))
			hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			hr.AddCookie(c)
			w := httptest.NewRecorder()
			e.srv.ServeHTTP(w, hr)
			if w.Code != http.StatusForbidden {
				t.Errorf("foreign Host: %d", w.Code)
			}
			continue
		}
		if resp := e.do(r); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %v: %d, want 403", r.body, r.header, resp.StatusCode)
		}
	}
	if n := len(e.recs.grants); n != 0 {
		t.Fatalf("%d grants made by forged requests", n)
	}
	ok := e.do(req{method: "POST", path: "/ui/share", body: form + "&csrf=" + tok, cookie: c,
		header: map[string]string{"Origin": "http://127.0.0.1:5555", "Sec-Fetch-Site": "same-origin"}})
	if ok.StatusCode != http.StatusSeeOther || len(e.recs.grants) != 1 || e.recs.grants[0].Purpose != "treatment" || e.recs.grants[0].Expires != "24h" {
		t.Fatalf("a real share: %d %+v", ok.StatusCode, e.recs.grants)
	}
	// The console's script sends the token as a header.
	js := e.do(req{method: "POST", path: "/ui/share", body: form, cookie: c, header: map[string]string{"X-CSRF-Token": tok, "Accept": "application/json"}})
	if b := body(js); js.StatusCode != 200 || !strings.Contains(b, `"url"`) || len(e.recs.grants) != 2 {
		t.Fatalf("share from the script: %d %s", js.StatusCode, b)
	}
	// A link from elsewhere may show a page (a navigation changes nothing).
	nav := e.do(req{method: "GET", path: "/ui/records", cookie: c, header: map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}})
	if nav.StatusCode != 200 {
		t.Errorf("navigation from another origin: %d", nav.StatusCode)
	}
}

// TestScriptPinned: the page pins the console's script and stylesheet by
// their hashes (Subresource Integrity), and serves exactly those bytes.
func TestScriptPinned(t *testing.T) {
	e := newEnv(t)
	c, _ := e.login()
	page := body(e.do(req{method: "GET", path: "/ui/", cookie: c}))
	for _, file := range []string{"console.js", "console.css"} {
		i := strings.Index(page, "/ui/static/"+file)
		if i < 0 {
			t.Fatalf("%s not on the page", file)
		}
		rest := page[i:]
		src := rest[:strings.IndexByte(rest, '"')]
		j := strings.Index(rest, `integrity="sha256-`)
		if j < 0 {
			t.Fatalf("%s has no integrity attribute", file)
		}
		sri := rest[j+len(`integrity="`):]
		sri = sri[:strings.IndexByte(sri, '"')]
		resp := e.do(req{method: "GET", path: html.UnescapeString(src)})
		b, _ := io.ReadAll(resp.Body)
		sum := sha256.Sum256(b)
		if resp.StatusCode != 200 || html.UnescapeString(sri) != "sha256-"+b64(sum[:]) {
			t.Errorf("%s: %d, integrity %s", file, resp.StatusCode, sri)
		}
		checkHeaders(t, file, resp)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " style=") || strings.Contains(page, " onclick") {
		t.Error("the page has inline script or style")
	}
}

package console_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// TestAuditFlagged: a record's audit shows an emergency read flagged for
// review (with the reasons), and an ordinary attested read not.
func TestAuditFlagged(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	e.recs.audit = []api.AccessEvent{
		{ID: e.led.rec.ID.String(), Version: 1, Reader: e.led.other.String(), Purpose: "emergency", Time: now, Until: now, Count: 1,
			AttestedBy: []string{e.led.self.String()}, ReportedCount: 1, Emergency: true, Review: true, Notes: []string{"read under an emergency grant: review it"}},
		{ID: e.led.rec.ID.String(), Version: 1, Reader: e.led.other.String(), Purpose: "treatment", Time: now, Until: now, Count: 2,
			AttestedBy: []string{e.led.self.String()}, ReportedCount: 2},
	}
	c, _ := e.login()
	b := body(e.do(req{method: "GET", path: "/ui/records/" + e.led.rec.ID.String(), cookie: c}))
	for _, want := range []string{"1 line flagged for review", "badge flag\">emergency", "⚑ review", "read under an emergency grant: review it", otherOrg} {
		if !strings.Contains(b, want) {
			t.Errorf("the record page lacks %q", want)
		}
	}
	if n := strings.Count(b, `class="flagged"`); n != 1 {
		t.Errorf("%d audit rows flagged, want 1", n)
	}
}

// TestShareListsGrants: the Share page lists the live grants of this
// node's records, each with a Revoke form that comes back to Share; an
// expired grant is not listed.
func TestShareListsGrants(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	e.recs.listed = []api.Grant{
		{ID: e.led.rec.ID.String(), Grantee: e.led.other.String(), Purpose: "treatment", Expires: api.Nullable(now.Add(time.Hour)), Granted: now},
		{ID: e.led.rec.ID.String(), Grantee: e.led.other.String(), Purpose: "research", Granted: now, Expired: true},
	}
	c, tok := e.login()
	b := body(e.do(req{method: "GET", path: "/ui/share", cookie: c}))
	i := strings.Index(b, `id="current-grants"`)
	if i < 0 {
		t.Fatal("no Shared now table")
	}
	table := b[i:]
	table = table[:strings.Index(table, "</table>")]
	if !strings.Contains(table, recordName) || !strings.Contains(table, otherOrg) || !strings.Contains(table, "treatment") ||
		!strings.Contains(table, `name="back" value="share"`) || strings.Contains(table, "research") {
		t.Errorf("the Shared now table:\n%s", table)
	}
	resp := e.do(req{method: "POST", path: "/ui/records/" + e.led.rec.ID.String() + "/revoke", cookie: c,
		body: "csrf=" + tok + "&grantee=" + e.led.other.String() + "&back=share", header: map[string]string{"Origin": "http://127.0.0.1:5555"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/share" {
		t.Errorf("revoke from Share: %d, to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = e.do(req{method: "POST", path: "/ui/records/" + e.led.rec.ID.String() + "/revoke", cookie: c,
		body: "csrf=" + tok + "&grantee=" + e.led.other.String() + "&back=https://example.org/", header: map[string]string{"Origin": "http://127.0.0.1:5555"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/ui/records/"+e.led.rec.ID.String() {
		t.Errorf("revoke with another back: %d, to %q", resp.StatusCode, loc)
	}
}

// TestErrorPages: with a session, a wrong address or a bad record ID is a
// console page (what went wrong, what to do), with the console's headers.
func TestErrorPages(t *testing.T) {
	e := newEnv(t)
	c, _ := e.login()
	for _, x := range []struct {
		path   string
		code   int
		title  string
		phrase string
	}{
		{"/ui/no-such-page", http.StatusNotFound, "Not found", "No page at /ui/no-such-page."},
		{"/ui/records/not-a-record", http.StatusBadRequest, "That did not work", "is not a record ID."},
		{"/ui/records/" + fakeCid("other").String(), http.StatusNotFound, "Not found", "Unknown record"},
	} {
		resp := e.do(req{method: "GET", path: x.path, cookie: c})
		b := body(resp)
		if resp.StatusCode != x.code || !strings.Contains(b, "<h1>"+x.title+"</h1>") || !strings.Contains(b, x.phrase) ||
			!strings.Contains(b, "What to do:") || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d\n%s", x.path, resp.StatusCode, b)
		}
		checkHeaders(t, x.path, resp)
	}
}

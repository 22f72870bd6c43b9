package ledger

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestParseScopeCanonical: a scope names its owner by the peer ID's base58
// form only; the CID form of the same ID, or garbage, is refused. And
// inClosure, which compares scope strings, matches an audit scope with its
// own owner scope only.
func TestParseScopeCanonical(t *testing.T) {
	a, b := newIdent(t).id, newIdent(t).id
	for _, c := range []struct {
		scope string
		ok    bool
	}{
		{OwnerScope(a), true},
		{AuditScope(a), true},
		{"owner/" + peer.ToCid(a).String(), false},
		{"audit/" + peer.ToCid(a).String(), false},
		{"owner/" + a.String()[:20], false},
		{"owner/not a peer", false},
		{"elsewhere/" + a.String(), false},
	} {
		kind, owner, err := ParseScope(c.scope)
		if (err == nil) != c.ok {
			t.Errorf("ParseScope(%q): %v, want ok %v", c.scope, err, c.ok)
		}
		if c.ok && (owner != a || kind == KindGlobal) {
			t.Errorf("ParseScope(%q) = %v, %s", c.scope, kind, owner)
		}
	}
	for _, c := range []struct {
		s, x string
		want bool
	}{
		{AuditScope(a), OwnerScope(a), true},
		{AuditScope(a), OwnerScope(b), false},
		{AuditScope(a), "", true},
		{OwnerScope(a), OwnerScope(a), true},
		{OwnerScope(a), AuditScope(a), false},
		{OwnerScope(a), OwnerScope(b), false},
	} {
		if got := inClosure(c.s, c.x); got != c.want {
			t.Errorf("inClosure(%s, %s) = %v, want %v", c.s, c.x, got, c.want)
		}
	}
}

package ledger

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Scopes (issue #16): a network whose genesis declares Scoped splits its
// DAG into a global scope that every node follows and, per member O, an
// owner scope (rights about O's records) and an audit scope (reads of O's
// records), which reach only the nodes involved with O. See doc.go,
// "Scopes", for which type lives where and why.

// Scope names.
const (
	// ScopeGlobal is the scope every node follows. On the wire it is the
	// absent scope, so entries of networks founded before scopes are
	// global entries.
	ScopeGlobal = "global"
	ownerPrefix = "owner/"
	auditPrefix = "audit/"
)

// ScopeKind is where entries of a type live in a scoped network.
type ScopeKind uint8

// Scope kinds of entry types (TypeSpec.Scope).
const (
	// KindGlobal types live on the global scope (the zero value: a type
	// says nothing and is global).
	KindGlobal ScopeKind = iota
	// KindOwner types live on the owner scope of the owner of the record
	// they concern (TypeSpec.Subject), or of their author.
	KindOwner
	// KindAudit types live on the audit scope of the owner of the record
	// they concern (TypeSpec.Subject).
	KindAudit
)

func (k ScopeKind) String() string {
	switch k {
	case KindOwner:
		return "owner"
	case KindAudit:
		return "audit"
	}
	return ScopeGlobal
}

// OwnerScope names the owner scope of peer p: "owner/<peer ID>".
func OwnerScope(p peer.ID) string { return ownerPrefix + p.String() }

// AuditScope names the audit scope of peer p: "audit/<peer ID>".
func AuditScope(p peer.ID) string { return auditPrefix + p.String() }

// ParseScope checks a scope name and returns its kind and owner (empty for
// the global scope). "" is the global scope too.
func ParseScope(s string) (ScopeKind, peer.ID, error) {
	var kind ScopeKind
	var rest string
	switch {
	case s == "" || s == ScopeGlobal:
		return KindGlobal, "", nil
	case strings.HasPrefix(s, ownerPrefix):
		kind, rest = KindOwner, s[len(ownerPrefix):]
	case strings.HasPrefix(s, auditPrefix):
		kind, rest = KindAudit, s[len(auditPrefix):]
	default:
		return 0, "", fmt.Errorf("ledger: unknown scope %q: use global, owner/<peer ID> or audit/<peer ID>", s)
	}
	p, err := peer.Decode(rest)
	if err != nil {
		return 0, "", fmt.Errorf("ledger: scope %q: bad peer ID: %w", s, err)
	}
	// The base58 forms peer.Decode reads ("Qm…", "1…") round-trip, so
	// only the others (CIDs) need encoding again: a scope is parsed on
	// every sync and entry, and the encoding was most of its cost.
	if !strings.HasPrefix(rest, "Qm") && !strings.HasPrefix(rest, "1") && p.String() != rest {
		return 0, "", fmt.Errorf("ledger: scope %q: peer ID not in canonical form", s)
	}
	return kind, p, nil
}

// wireScope is how scope s is written in an entry: "" for global.
func wireScope(s string) string {
	if s == ScopeGlobal {
		return ""
	}
	return s
}

// scopeName is the display name of a wire scope.
func scopeName(s string) string {
	if s == "" {
		return ScopeGlobal
	}
	return s
}

// ScopeName returns the name of the scope e lives on ("global" for an entry
// without one).
func (e *Entry) ScopeName() string { return scopeName(e.Scope) }

// closure returns the wire scopes whose entries may be in the causal past of
// an entry of scope s (its own included): global entries see only global
// ones; owner/O entries see global and owner/O; audit/O entries see global,
// owner/O (the grants and holders a read depends on) and audit/O. So the
// global DAG is closed under ancestry, and a follower of a scope that
// follows the scopes of its closure has every entry's causal past.
func closure(s string) []string {
	kind, owner, err := ParseScope(s)
	if err != nil {
		return []string{s}
	}
	switch kind {
	case KindOwner:
		return []string{"", s}
	case KindAudit:
		return []string{"", OwnerScope(owner), s}
	}
	return []string{""}
}

// inClosure reports whether an entry of scope x may be in the causal past of
// an entry of scope s.
func inClosure(s, x string) bool {
	if x == "" || x == s {
		return true
	}
	// Compared as strings, not parsed (this runs per entry and head): the
	// scopes here come from decoded entries or requests ParseScope
	// checked, so they are canonical, and x is the owner scope of audit
	// scope s exactly when it names the same peer ID string.
	return strings.HasPrefix(s, auditPrefix) && strings.HasPrefix(x, ownerPrefix) &&
		x[len(ownerPrefix):] == s[len(auditPrefix):]
}

// Closure returns the scope names an entry of scope s may depend on, s
// included: a node that follows s needs them all.
func Closure(s string) []string {
	out := closure(wireScope(s))
	for i, x := range out {
		out[i] = scopeName(x)
	}
	return out
}

// ScopeDigest returns the digest of scope s's state: the Digest of a fresh
// core on a MemStore into which the entries of s's closure held here (and
// no other) are replayed in (clock, CID) order, with the number of those
// entries. The state of a scope is a function of its closure's entries
// alone (an entry's verdict depends only on its causal past, which lies in
// its closure), so every node that follows s and holds the same entries of
// it reaches the same digest, whatever else it follows. It costs a replay
// of the closure: a check (tests, `ledger verify`), not a hot path.
func (c *Core) ScopeDigest(ctx context.Context, s string) ([]byte, int, error) {
	if err := c.ready(ctx); err != nil {
		return nil, 0, err
	}
	fresh, err := NewCore(ctx, CoreConfig{Store: NewMemStore(), Genesis: c.cfg.Genesis, Types: c.cfg.Types})
	if err != nil {
		return nil, 0, err
	}
	ws := wireScope(s)
	all, err := logCIDs(ctx, c.store)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	var batch []*Entry
	run := func() error {
		out, err := fresh.Ingest(ctx, batch)
		if err != nil {
			return err
		}
		for i, r := range out.Results {
			if r.Status != Applied {
				return fmt.Errorf("ledger: scope %s: entry %s does not replay: %s: %w", scopeName(ws), batch[i].cid, r.Status, r.Err)
			}
		}
		batch = batch[:0]
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- { // oldest first
		e := all[i]
		if e == c.net {
			continue
		}
		nd, err := c.d.get(ctx, e)
		if err != nil {
			return nil, 0, err
		}
		if nd == nil || !inClosure(ws, nd.scope) {
			continue
		}
		raw, err := c.store.GetEntry(ctx, e)
		if err != nil {
			return nil, 0, err
		}
		en, err := DecodeEntry(raw)
		if err != nil {
			return nil, 0, fmt.Errorf("ledger: stored entry %s: %w", e, err)
		}
		batch = append(batch, en)
		n++
		if len(batch) >= 1000 {
			if err := run(); err != nil {
				return nil, 0, err
			}
		}
	}
	if err := run(); err != nil {
		return nil, 0, err
	}
	d, err := fresh.State().Digest(ctx)
	return d, n, err
}

// globalStatePrefixes are the state prefixes the global scope's entries
// write, in key order: keys, members, the network's genesis row (/s/n, a
// key of its own: nothing else starts with it), and each global extension
// type's rows. No scoped entry writes under them, so every node of a
// scoped network holds the same values there whatever scopes it follows.
func (c *Core) globalStatePrefixes() []string {
	out := []string{pState + "k/", pState + "m/", pState + "n"}
	var ext []string
	for name, spec := range c.types {
		if spec.Scope == KindGlobal && spec.builtin == nil {
			ext = append(ext, extPrefix(name))
		}
	}
	sort.Strings(ext)
	return append(out, ext...)
}

// GlobalDigest returns the digest of the global scope's state: like
// State.Digest (SHA-256 over every key and value, in key order) over the
// keys global entries write. In a network without scopes it is the Digest
// of the whole state. Every node in the same global state has the same,
// and it is the Digest of the global scope's checkpoint.
func (c *Core) GlobalDigest(ctx context.Context) ([]byte, error) {
	if !c.scoped {
		return c.State().Digest(ctx)
	}
	hs := newStateHasher()
	for _, p := range c.globalStatePrefixes() {
		err := scanRows(ctx, c.store, p, false, func(k string, v []byte) bool {
			hs.add(k, v)
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return hs.sum(), nil
}

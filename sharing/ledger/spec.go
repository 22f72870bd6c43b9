package ledger

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// View is the ledger state as seen from one entry's causal position: only
// entries that are ancestors of the entry being validated count. Validate
// functions must decide using a View only, so every node reaches the same
// verdict whatever else it has seen.
type View interface {
	// IsMember reports membership of p.
	IsMember(p peer.ID) bool
	// HasRole reports whether p is a member holding role.
	HasRole(p peer.ID, role string) bool
	// KEMKey returns p's current key-wrapping public key and its KeyID.
	KEMKey(p peer.ID) (pub []byte, id keywrap.KeyID, ok bool)
	// Record returns a record announced in the causal past.
	Record(id cid.Cid) (RecordInfo, bool)
	// InPast reports whether entry c is in the causal past.
	InPast(c cid.Cid) bool
	// Members lists the members, sorted by peer ID.
	Members() []Member
	// GrantsOf lists every grant of a record, to any grantee, oldest
	// first, each marked Current unless a revoke cancels it.
	GrantsOf(record cid.Cid) []GrantAt
	// Receipts lists each holder's latest receipt for a record.
	Receipts(record cid.Cid) []Receipt
	// Named lists the holders a record's owner named (replica.assign).
	Named(record cid.Cid) []peer.ID
	// Ext lists the rows that extension type typ's Apply wrote (its Txn
	// keys) under prefix ("" or ending in "/"), in key order. They are the
	// rows of every entry applied so far, which may include entries
	// outside the causal past (concurrent ones applied earlier): a rule
	// that reads them keeps each row's entry in it and counts only rows
	// whose entry is InPast. Rows are never those of entries applied after
	// this one, so an append-only scheme (one row per entry, never
	// overwritten) gives exactly the causal past.
	Ext(typ, prefix string) []ExtRow
}

// ExtRow is one row of an extension type's state (View.Ext, Ledger.Ext).
type ExtRow struct {
	Key   string
	Value []byte
}

// Txn lets a type's Apply keep state of its own. Keys are scoped to the type
// (stored under /ledger/s/x/<type>/<key>) and included in the Digest; values
// must be deterministic functions of the entries applied.
type Txn interface {
	Get(key string) ([]byte, bool, error)
	Put(key string, value []byte)
	Delete(key string)
}

// TypeSpec describes one entry type: how its payload decodes, who may sign
// it at its causal position (Validate) and what applying it changes
// (Apply). A ledger runs exactly the types its Options.Types name; every
// node of a network must run the same ones (see Options.Types and doc.go,
// "Entry types").
type TypeSpec struct {
	// Name is the entry type string ([a-z0-9._-]).
	Name string
	// New returns a pointer to a fresh payload value to decode into. The
	// payload's canonical CBOR re-encoding must equal its bytes.
	New func() any
	// Validate checks the entry against the state at its causal position.
	// A non-nil error rejects it; wrap ErrUnauthorized for authority failures.
	Validate func(v View, e *Entry, payload any) error
	// Apply changes the type's own state (Txn); it must not fail for an entry
	// that passed Validate except on storage errors.
	Apply func(t Txn, e *Entry, payload any) error
	// Scope is where the type's entries live in a scoped network (doc.go,
	// "Scopes"): KindGlobal (the zero value), KindOwner or KindAudit. The
	// Apply of a KindOwner or KindAudit type keys its rows
	// <name>/<record>/... by the record they concern (sharing/erasure:
	// r/<record>/<entry>): a scope's checkpoint carries only rows about the
	// scope's own records, and a row keyed otherwise is refused there.
	Scope ScopeKind
	// Subject returns, for a KindOwner or KindAudit type, the record whose
	// owner's scope an entry lives on. Nil for a KindOwner type means the
	// author's own owner scope (the author must be the owner of what it
	// names, as in record.erase). A KindAudit type needs it.
	Subject func(payload any) (cid.Cid, error)
	// builtin is the internal apply of the built-in types (Builtin); only
	// this package sets it.
	builtin func(a *applier, e *Entry, payload any) error
}

// ErrUnauthorized is wrapped by validation errors about authority.
var ErrUnauthorized = errors.New("ledger: not authorized")

// payload returns a TypeSpec.New for payload type T.
func payload[T any]() func() any { return func() any { return new(T) } }

// Builtin returns the built-in entry types, the ones every network runs: the
// table of this package's rules, one named validate and apply function per
// type (rules_*.go, org.go). Each call returns a fresh slice, so a caller
// may append its own types to it.
func Builtin() []TypeSpec {
	return []TypeSpec{
		{Name: TypeGenesis, New: payload[genesisWire](), Validate: validateGenesis, builtin: applyGenesis},
		{Name: TypeMemberAdd, New: payload[memberAddWire](), Validate: validateMemberAdd, builtin: applyMemberAdd},
		{Name: TypeMemberRemove, New: payload[memberRemoveWire](), Validate: validateMemberRemove, builtin: applyMemberRemove},
		{Name: TypeMemberOrg, New: payload[memberOrgWire](), Validate: validateMemberOrg, builtin: applyMemberOrg},
		{Name: TypeKeyAnnounce, New: payload[keyAnnounceWire](), Validate: validateKeyAnnounce, builtin: applyKeyAnnounce},
		{Name: TypeRecordAnnounce, New: payload[recordWire](), Validate: validateRecordAnnounce, builtin: applyRecordAnnounce, Scope: KindOwner},
		{Name: TypeGrant, New: payload[grantWire](), Validate: validateGrant, builtin: applyGrant, Scope: KindOwner, Subject: subject(func(w *grantWire) []byte { return w.Record })},
		{Name: TypeRevoke, New: payload[revokeWire](), Validate: validateRevoke, builtin: applyRevoke, Scope: KindOwner, Subject: subject(func(w *revokeWire) []byte { return w.Record })},
		{Name: TypeAccess, New: payload[accessWire](), Validate: validateAccess, builtin: applyAccess, Scope: KindAudit, Subject: subject(func(w *accessWire) []byte { return w.Record })},
		{Name: TypeReceipt, New: payload[receiptWire](), Validate: validateReceipt, builtin: applyReceipt, Scope: KindOwner, Subject: subject(func(w *receiptWire) []byte { return w.Record })},
		{Name: TypeAssign, New: payload[assignWire](), Validate: validateAssign, builtin: applyAssign, Scope: KindOwner, Subject: subject(func(w *assignWire) []byte { return w.Record })},
		{Name: TypeServed, New: payload[servedWire](), Validate: validateServed, builtin: applyServed, Scope: KindAudit, Subject: subject(func(w *servedWire) []byte { return w.Record })},
	}
}

// subject makes a TypeSpec.Subject from the record field of wire payload T.
func subject[T any](f func(*T) []byte) func(any) (cid.Cid, error) {
	return func(pl any) (cid.Cid, error) {
		w, ok := pl.(*T)
		if !ok {
			return cid.Undef, fmt.Errorf("ledger: payload %T", pl)
		}
		return parseCid(f(w), "record")
	}
}

// Names returns the names of types, sorted: for example the choices of
// `medmesh ledger log --type` for the types a node runs.
func Names(types []TypeSpec) []string {
	out := make([]string, 0, len(types))
	for _, t := range types {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// typeTable is one ledger's entry types, fixed when it opens.
type typeTable map[string]*TypeSpec

// newTypeTable checks specs and indexes them. Every built-in type must be
// there (a node without one would reject what every other node accepts and
// diverge from them), with its built-in rules, and no name twice.
func newTypeTable(specs []TypeSpec) (typeTable, error) {
	if len(specs) == 0 {
		return nil, errors.New("ledger: Options.Types is empty: pass the entry types this node runs, ledger.Builtin() and the node's own (daemon.LedgerTypes())")
	}
	tt := make(typeTable, len(specs))
	for i := range specs {
		t := specs[i]
		if t.Name == "" || len(t.Name) > maxTypeLen || !validTypeName(t.Name) {
			return nil, fmt.Errorf("ledger: bad entry type name %q", t.Name)
		}
		if t.New == nil || t.Validate == nil || (t.Apply == nil && t.builtin == nil) {
			return nil, fmt.Errorf("ledger: entry type %q needs New, Validate and Apply", t.Name)
		}
		if t.Scope > KindAudit || (t.Scope == KindAudit && t.Subject == nil) || (t.Scope == KindGlobal && t.Subject != nil) {
			return nil, fmt.Errorf("ledger: entry type %q: scope %s with Subject %v", t.Name, t.Scope, t.Subject != nil)
		}
		if _, dup := tt[t.Name]; dup {
			return nil, fmt.Errorf("ledger: entry type %q is listed twice in Options.Types", t.Name)
		}
		tt[t.Name] = &t
	}
	var missing []string
	for _, b := range Builtin() {
		t, ok := tt[b.Name]
		switch {
		case !ok:
			missing = append(missing, b.Name)
		case t.builtin == nil:
			return nil, fmt.Errorf("ledger: entry type %q is built in: pass ledger.Builtin()'s definition, not another", b.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("ledger: Options.Types lacks the built-in entry types %s: start from ledger.Builtin()", strings.Join(missing, ", "))
	}
	return tt, nil
}

// only keeps the types a network declares in its genesis (nil: all).
func (tt typeTable) only(declared []string) (typeTable, error) {
	if declared == nil {
		return tt, nil
	}
	out := make(typeTable, len(declared))
	var lack []string
	for _, n := range declared {
		t, ok := tt[n]
		if !ok {
			lack = append(lack, n)
			continue
		}
		out[n] = t
	}
	if len(lack) > 0 {
		return nil, fmt.Errorf("ledger: the network runs entry types this node does not (%s): it would reject what the others accept and diverge; run a medmesh build that has them", strings.Join(lack, ", "))
	}
	return out, nil
}

func (tt typeTable) names() []string {
	out := make([]string, 0, len(tt))
	for n := range tt {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

package ledger

import (
	"context"
	"sort"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// The query methods the node's services call today. They keep their
// signatures (no context, no error) while node/daemon is being carved into
// services: a storage failure is logged, counted in
// medmesh_ledger_read_errors_total{query} and answered as "none", the
// answer a caller already handles. Code that must tell "none" from "could
// not read" uses State(), whose methods return the error; services should
// move to it, through interfaces of their own.

// readFailed logs and counts a query that could not read the state.
func (l *Ledger) readFailed(query string, err error) {
	l.met.readErrors.WithLabelValues(query).Inc()
	l.log.Error("ledger state unreadable: answering as if empty", "query", query, "err", err)
}

// IsMember reports whether p is a current member (node/p2p.Membership).
func (l *Ledger) IsMember(p peer.ID) bool {
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	_, ok := l.members[p]
	return ok
}

// IsAdmin reports whether p is a current member with the admin role.
func (l *Ledger) IsAdmin(p peer.ID) bool {
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	for _, r := range l.members[p].Roles {
		if r == RoleAdmin {
			return true
		}
	}
	return false
}

// Members returns current members sorted by peer ID.
func (l *Ledger) Members() []Member {
	l.stateMu.RLock()
	out := make([]Member, 0, len(l.members))
	for _, m := range l.members {
		out = append(out, m)
	}
	l.stateMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// KEMKey returns p's current key-wrapping public key (State.KEMKey).
func (l *Ledger) KEMKey(p peer.ID) ([]byte, bool) {
	k, ok, err := l.State().KEMKey(context.Background(), p)
	if err != nil {
		l.readFailed("kem_key", err)
	}
	return k, ok
}

// Keys returns every key p announced, oldest first (State.Keys).
func (l *Ledger) Keys(p peer.ID) []KeyInfo {
	return answer(l, "keys", func(st State) ([]KeyInfo, error) { return st.Keys(context.Background(), p) })
}

// Record returns an announced record (State.Record).
func (l *Ledger) Record(id cid.Cid) (RecordInfo, bool) {
	r, ok, err := l.State().Record(context.Background(), id)
	if err != nil {
		l.readFailed("record", err)
	}
	return r, ok
}

// Records returns all announced records sorted by ID string (State.Records).
func (l *Ledger) Records() []RecordInfo {
	return answer(l, "records", func(st State) ([]RecordInfo, error) { return st.Records(context.Background()) })
}

// Versions returns the version chain containing id (State.Versions).
func (l *Ledger) Versions(id cid.Cid) []RecordInfo {
	return answer(l, "versions", func(st State) ([]RecordInfo, error) { return st.Versions(context.Background(), id) })
}

// Grants returns the record's current grants to current members
// (State.Grants).
func (l *Ledger) Grants(record cid.Cid) []Grant {
	return answer(l, "grants", func(st State) ([]Grant, error) { return st.Grants(context.Background(), record) })
}

// GrantHistory returns every grant of the record ever applied, oldest first
// (State.GrantHistory).
func (l *Ledger) GrantHistory(record cid.Cid) []Grant {
	return answer(l, "grant_history", func(st State) ([]Grant, error) { return st.GrantHistory(context.Background(), record) })
}

// Access returns the record's read claims, oldest first (State.Access).
func (l *Ledger) Access(record cid.Cid) []AccessEvent {
	return answer(l, "access", func(st State) ([]AccessEvent, error) { return st.Access(context.Background(), record) })
}

// Served returns the attestations of the record's reads (State.Served).
func (l *Ledger) Served(record cid.Cid) []Served {
	return answer(l, "served", func(st State) ([]Served, error) { return st.Served(context.Background(), record) })
}

// Named returns the holders the record's owner named (State.Named).
func (l *Ledger) Named(record cid.Cid) []peer.ID {
	return answer(l, "named", func(st State) ([]peer.ID, error) { return st.Named(context.Background(), record) })
}

// Receipts returns each holder's latest receipt for the record
// (State.Receipts).
func (l *Ledger) Receipts(record cid.Cid) []Receipt {
	return answer(l, "receipts", func(st State) ([]Receipt, error) { return st.Receipts(context.Background(), record) })
}

// HoldAuthority says who may hold the record now (State.HoldAuthority). On
// a storage failure it names no holder beyond the owner.
func (l *Ledger) HoldAuthority(rec RecordInfo) replication.Authority {
	a, err := l.State().HoldAuthority(context.Background(), rec)
	if err != nil {
		l.readFailed("hold_authority", err)
		return replication.Authority{Record: rec.ID, Owner: rec.Owner, Wanted: int(rec.Replicas)}
	}
	return a
}

// answer runs a State query for a method without an error result.
func answer[T any](l *Ledger, query string, f func(State) ([]T, error)) []T {
	out, err := f(l.State())
	if err != nil {
		l.readFailed(query, err)
		return nil
	}
	return out
}

// Ext lists the rows that extension type typ's Apply wrote under prefix
// (State.Ext). A storage failure is an error, never an empty list.
func (l *Ledger) Ext(typ, prefix string) ([]ExtRow, error) {
	return l.State().Ext(context.Background(), typ, prefix)
}

// Package api is the node's HTTP API: JSON in and out, one place for the CLI,
// scripts and web pages. It listens on loopback only and every call needs the
// bearer token from the repo's api.token file.
//
// Record content moves as a raw byte stream (upload in the request body,
// download in the response body). A download's success is confirmed in the
// HTTP trailer Medmesh-Result: a reader that does not see "ok" there must
// discard what it received (the daemon only learns that the plaintext hash
// matches once the last byte has been decrypted).
package api

import "time"

// Version prefix of every API path.
const Prefix = "/api/v1"

// TrailerResult is the trailer that confirms a complete, verified download.
const TrailerResult = "Medmesh-Result"

// HeaderSize carries a download's plaintext size, known once the record's
// manifest is open (the body is streamed, so there is no Content-Length).
const HeaderSize = "Medmesh-Size"

// Error is the JSON body of every failed call.
type Error struct {
	Error string `json:"error"`
	// Hint says what to do about it, when there is something to do.
	Hint string `json:"hint,omitempty"`
}

// The JSON vocabulary of every answer (and of every `--json` output, which
// prints these types): a record is "id"; a peer is "peer" or the name of its
// role ("owner", "grantee", "reader", "holder", "author"); a list is a
// plural noun and always an array ([] when empty, never null); a count is
// "<thing>_count"; sizes are "size" (bytes); durations "seconds" or
// "*_seconds"; times RFC 3339 in UTC, an absent time null (NullTime); the
// wanted replica count is "replicas". A field name has one type everywhere.
// `medmesh help json` documents it for users.

// NullTime is a time that may be absent: JSON null when zero (never
// 0001-01-01T00:00:00Z), else RFC 3339 in UTC.
type NullTime struct{ time.Time }

// Nullable wraps t.
func Nullable(t time.Time) NullTime { return NullTime{t} }

// MarshalJSON implements json.Marshaler.
func (t NullTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return t.UTC().MarshalJSON()
}

// IDInfo describes a node.
type IDInfo struct {
	Peer         string   `json:"peer"`
	Addrs        []string `json:"addrs"`
	KEMPublicKey string   `json:"kem_public_key"` // base64
	NetworkID    string   `json:"network_id,omitempty"`
	// Org is the node's organisation as the ledger has it (as configured,
	// when no daemon runs).
	Org string `json:"org"`
	// Daemon is set by the CLI: true when a running daemon answered, so
	// Member, Admin and PeerCount are known.
	Daemon    bool `json:"daemon"`
	Member    bool `json:"member"`
	Admin     bool `json:"admin"`
	PeerCount int  `json:"peer_count"` // connected peers
	// Invitation says what became of the invitation this node joined
	// with: "pending", "admitted" or "refused: why" ("" when none).
	Invitation string `json:"invitation,omitempty"`
}

// AddResult is the answer to an add or update.
type AddResult struct {
	ID      string `json:"id"`
	Size    int64  `json:"size"`
	Chunks  int    `json:"chunk_count"`
	Version int    `json:"version"`
	Prev    string `json:"prev,omitempty"`
}

// Record is one line of `ls`.
type Record struct {
	ID       string    `json:"id"`
	Size     int64     `json:"size"`
	Owner    string    `json:"owner"`
	Class    string    `json:"class"`
	Version  int       `json:"version"`
	Prev     string    `json:"prev,omitempty"`
	Created  time.Time `json:"created"`
	Mine     bool      `json:"mine"`
	Held     bool      `json:"held"`     // this node stores the record's blocks
	Readable bool      `json:"readable"` // this node has a key for it
	Replicas int       `json:"replicas"` // wanted holders, owner included
	// Holders are the owner and the peers with a current "held" receipt.
	Holders []string `json:"holders"`
	Under   bool     `json:"under_replicated"`
}

// GrantRequest asks the owner's node to share a record.
type GrantRequest struct {
	To      string `json:"to"`
	Purpose string `json:"purpose"`
	Expires string `json:"expires,omitempty"` // Go duration, e.g. 720h; empty: no expiry
}

// Grant is a current grant of a record.
type Grant struct {
	ID      string    `json:"id"` // the record (version) granted
	Grantee string    `json:"grantee"`
	Purpose string    `json:"purpose"`
	Expires NullTime  `json:"expires"` // null: no expiry
	Granted time.Time `json:"granted"`
	Entry   string    `json:"entry"`
	Expired bool      `json:"expired"`
}

// RevokeResult is the answer to a revoke.
type RevokeResult struct {
	ID      string `json:"id"`
	Grantee string `json:"grantee"`
	// VersionCount is the number of the record's versions whose grants
	// were revoked (one revoke entry each).
	VersionCount int `json:"version_count"`
}

// AccessEvent is one line of a record's audit trail (its accounting of
// disclosures): reads of one reader under one grant, as attested by the
// nodes that served them, matched with what the reader's node reported.
type AccessEvent struct {
	ID      string `json:"id"` // the record version read
	Version int    `json:"version"`
	Reader  string `json:"reader"`
	// Purpose is the purpose of the grant the reads were made under; the
	// reader's stated purpose is StatedPurpose, where it differs.
	Purpose       string    `json:"purpose"`
	StatedPurpose string    `json:"stated_purpose,omitempty"`
	Grant         string    `json:"grant,omitempty"` // the grant entry
	Time          time.Time `json:"time"`            // the first read
	Until         time.Time `json:"until"`           // the last read covered
	Count         int       `json:"count"`           // reads covered
	BlockCount    uint64    `json:"block_count"`     // other blocks served with them
	// AttestedBy are the nodes that attest serving these reads (empty:
	// only the reader's node says so).
	AttestedBy    []string `json:"attested_by"`
	ReportedCount int      `json:"reported_count"` // reads the reader's node reported
	Emergency     bool     `json:"emergency"`      // read under an emergency grant
	Review        bool     `json:"review"`         // flagged for review; Notes say why
	Notes         []string `json:"notes"`
}

// AuditHead is the signed head of this node's audit log (`medmesh audit
// head`): the log of the claims and attestations about the records it owns
// had TreeSize entries with root Root (base64 SHA-256) at Time. TreeHead is
// the signed note itself, what an auditor keeps.
type AuditHead struct {
	Owner    string    `json:"owner"`
	TreeSize int64     `json:"tree_size"`
	Root     string    `json:"root"`
	Time     time.Time `json:"time"`
	TreeHead string    `json:"tree_head"`
	// Segment is the record (this node's own, hidden from `ls`) that keeps
	// the order of the leaves up to this head for a restore, when one
	// ends at this size.
	Segment string `json:"segment,omitempty"`
}

// InviteRequest admits a peer to the network.
type InviteRequest struct {
	Peer  string   `json:"peer"`
	Org   string   `json:"org,omitempty"`
	Roles []string `json:"roles,omitempty"`
	// Expires is how long the invitation stays redeemable (a Go
	// duration; default 72h, at most 720h).
	Expires string `json:"expires,omitempty"`
}

// InviteResult carries the invitation token, sealed to the invitee.
type InviteResult struct {
	Peer  string   `json:"peer"`
	Org   string   `json:"org"` // "" when the invite set none
	Roles []string `json:"roles"`
	Token string   `json:"token"`
	// Expires is when the invitation stops being redeemable.
	Expires time.Time `json:"expires"`
	// Member: the peer is a member already (the token brings it the
	// network's current key; its org and roles stay).
	Member bool `json:"member"`
}

// KeyRotateRequest asks for a key rotation.
type KeyRotateRequest struct {
	// DestroyOld marks the previous keys to be destroyed once nothing
	// needs them.
	DestroyOld bool `json:"destroy_old"`
}

// KeyRotateResult is what `medmesh keys rotate` did.
type KeyRotateResult struct {
	// KeyID names the new key (the first 8 bytes of its KeyID, hex).
	KeyID string `json:"key_id"`
	Entry string `json:"entry"` // its key.announce
	// RewrappedCount counts the owned records' keys re-sealed to it.
	RewrappedCount int      `json:"rewrapped_count"`
	OldKeys        []OldKey `json:"old_keys"`
}

// OldKey is a previous key-wrapping key the node keeps.
type OldKey struct {
	KeyID string `json:"key_id"`
	// Destroy: marked to be destroyed once NeededBy is empty.
	Destroy  bool     `json:"destroy"`
	NeededBy []string `json:"needed_by"`
}

// DeleteResult is what `medmesh delete` erased.
type DeleteResult struct {
	ID string `json:"id"`
	// Versions are the version numbers erased, Erased their record IDs.
	Versions []int     `json:"versions"`
	Erased   []string  `json:"records"`
	Entry    string    `json:"entry"` // the record.erase
	Time     time.Time `json:"time"`
}

// RemoveRequest removes a member (admin).
type RemoveRequest struct {
	Peer string `json:"peer"`
	// Reason is kept in the admin node's local log only, never on the
	// ledger.
	Reason string `json:"reason,omitempty"`
	// KeyOverlap is how long the previous network key stays accepted
	// after the switch (a Go duration; default 10m).
	KeyOverlap string `json:"key_overlap,omitempty"`
}

// RemoveResult is what `network remove` did.
type RemoveResult struct {
	Peer   string `json:"peer"`
	Entry  string `json:"entry"` // the member.remove
	Reason string `json:"reason"`
	// KeyEntry is the network.key entry that rotated the network's
	// pre-shared key, of epoch Epoch: nodes dial with it from Activate
	// and refuse the previous one from Retire.
	KeyEntry string    `json:"key_entry"`
	Epoch    int       `json:"epoch"`
	Activate time.Time `json:"activate"`
	Retire   time.Time `json:"retire"`
	// Unreached are members with no announced key-wrapping key: the new
	// network key could not be wrapped to them (invite them again).
	Unreached []string `json:"unreached"`
}

// Member is one member of the network, as `medmesh members` lists it.
type Member struct {
	Peer string `json:"peer"`
	Org  string `json:"org"` // "" when none is set yet
	// Role is the member's strongest role: admin, emergency or member;
	// Roles are all of them (empty for a plain member).
	Role  string   `json:"role"`
	Roles []string `json:"roles"`
	// Joined is when its admission in force (genesis or member.add) was
	// signed.
	Joined time.Time `json:"joined"`
	// Connected: this node has a live connection to it (true for self).
	Connected bool `json:"connected"`
	// LastSeen is when this node last had a connection to it (now, while
	// connected); null if never.
	LastSeen *time.Time `json:"last_seen"`
	// Addrs are its addresses as this node knows them.
	Addrs []string `json:"addrs"`
	// Self marks this node.
	Self bool `json:"self"`
}

// LedgerEntry is one entry of `ledger log`.
type LedgerEntry struct {
	Entry   string    `json:"entry"`
	Type    string    `json:"type"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	Parents []string  `json:"parents"`
	Payload any       `json:"payload,omitempty"`
	// Scope is the ledger scope the entry lives on: global,
	// owner/<peer ID> or audit/<peer ID>.
	Scope string `json:"scope"`
}

// Heads is the ledger's frontier and state digest: nothing node-specific, so
// two nodes in the same state return the same bytes.
type Heads struct {
	// Scope is the ledger scope: global (every node's), owner/<peer ID>
	// or audit/<peer ID>.
	Scope string   `json:"scope"`
	Heads []string `json:"heads"`
	State string   `json:"state"`
	// EntryCount, for a scope other than the global one, is how many
	// entries its state (State) was replayed from: the scope's and those
	// of the scopes it depends on.
	EntryCount *int `json:"entry_count,omitempty"`
}

// LedgerStat is `medmesh ledger stat`: what this node's ledger stores and
// whether it has caught up.
type LedgerStat struct {
	Entries int64    `json:"entry_count"` // entries stored on this node
	Size    int64    `json:"size"`        // their encoded bytes
	Scopes  []string `json:"scopes"`      // scopes followed ("global", ...)
	// Synced: caught up with every followed scope (no entry waiting for
	// parents; the last sync of each scope with each connected peer that
	// follows it left nothing of it missing).
	Synced bool `json:"synced"`
	// Behind: the followed scopes not caught up yet ([] when synced).
	Behind []string `json:"behind"`
	// ByScope (only when asked: `ledger stat --by-scope`) splits Entries
	// and Size by scope, with why this node stores each: the global scope
	// first, then the most entries first.
	ByScope []LedgerScope `json:"by_scope,omitempty"`
}

// LedgerScope is what a node stores of one ledger scope, and why.
type LedgerScope struct {
	Scope    string `json:"scope"`
	Followed bool   `json:"followed"`
	// Why: global (every node), own (this node's records and their
	// reads), group (the owner's replica group has this node), grantee (a
	// live grant to this node), holder (a record it holds outside the
	// group), escrow (a record escrowed to it), leaving (followed, none of
	// those any more: left within the hour), reads (not followed: this
	// node's claims of its reads of the owner's records), left (not
	// followed any more: what it stored stays).
	Why     string `json:"why"`
	Entries int64  `json:"entry_count"`
	Size    int64  `json:"size"`
}

// VerifyResult is the outcome of `ledger verify`.
type VerifyResult struct {
	OK      bool   `json:"ok"`
	Entries int    `json:"entry_count"`
	Error   string `json:"error,omitempty"`
}

// Status is a record's replication status.
type Status struct {
	ID           string   `json:"id"`
	Replicas     int      `json:"replicas"`
	Holders      []string `json:"holders"`
	Reachable    []string `json:"reachable"`
	Providers    []string `json:"providers"`
	LastVerified NullTime `json:"last_verified"` // null: never verified
	// Erased: its owner erased it; no node keeps it (holders are empty).
	Erased bool `json:"erased"`
}

// ReprovideResult is one reprovide run.
type ReprovideResult struct {
	Blocks   int           `json:"block_count"`
	Failed   int           `json:"failed_count"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	PerSec   float64       `json:"blocks_per_second"`
}

package api

import "time"

// The web console (node/console): the sign-in link `medmesh ui` asks for,
// and the events `medmesh watch` prints and the console's Live page shows.

// ConsoleLogin is a one-time sign-in link to the console (POST
// /api/v1/console/login): it works once, until Expires, in a browser on
// this machine.
type ConsoleLogin struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// Event types: a record was shared with this node, its grant to this
// node was revoked, or a record this node owns was read.
const (
	EventShared  = "shared"
	EventRevoked = "revoked"
	EventRead    = "read"
)

// Event is one thing that happened to this node's sharing, from its
// ledger (GET /api/v1/events, one JSON object a line; `medmesh watch
// --json`). Seq orders a node's events since its daemon started.
type Event struct {
	Seq  uint64    `json:"seq"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// ID is the record (the version the entry names); Name its name where
	// this node may know it (the owner; a grantee from the grant's sealed
	// label), Class its class on the ledger.
	ID      string `json:"id"`
	Version int    `json:"version"`
	Name    string `json:"name"`
	Class   string `json:"class"`
	// Owner is the record's owner and OwnerOrg its organisation.
	Owner    string `json:"owner"`
	OwnerOrg string `json:"owner_org"`
	// Grantee (shared, revoked) or Reader (read), and its organisation.
	Grantee    string `json:"grantee,omitempty"`
	GranteeOrg string `json:"grantee_org,omitempty"`
	Reader     string `json:"reader,omitempty"`
	ReaderOrg  string `json:"reader_org,omitempty"`
	// Purpose is the grant's (shared) or the purpose a reader stated
	// (read); Expires the grant's expiry (null: none).
	Purpose string   `json:"purpose,omitempty"`
	Expires NullTime `json:"expires"`
	// A read is either the reader's own claim (AttestedBy empty) or a
	// holder's attestation that it served Count reads (AttestedBy names
	// it): the owner's audit matches the two.
	AttestedBy []string `json:"attested_by"`
	Count      int      `json:"count"`
	// Entry is the ledger entry that says so.
	Entry string `json:"entry"`
}

package records

import (
	"io"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/storage/record"
)

// AddRequest describes a record to store.
type AddRequest struct {
	Name      string
	MediaType string
	Kind      string // record kind in the manifest; default "file"
	Class     string // coarse class announced on the ledger
	Replicas  int
	Emergency bool // escrow the key to the network's emergency authorities
	Meta      []byte
	// Files are the record's files; an ordinary record has one.
	Files []FileSource
	// Prev is the record this one is a new version of (cid.Undef if none).
	Prev cid.Cid
	// Hidden keeps the record out of List (`ls`, the console, FHIR): a
	// record the node keeps for itself (node/auditlog's segments). It is
	// an ordinary record on the ledger and for replication.
	Hidden bool
}

// FileSource is one file to add.
type FileSource struct {
	Path string
	Open func() (io.Reader, error)
}

// AddResult is what Add stored.
type AddResult struct {
	ID       cid.Cid
	Manifest *record.Manifest
	Size     int64
	Chunks   int
	Version  int
}

// GetRequest selects what to read.
type GetRequest struct {
	Version int
	Purpose string
	// File selects one file of the record by index (-1: all, concatenated).
	File int
	// Opened, if set, learns the plaintext size to be written once the
	// manifest is open, before the first byte (for Content-Length-like
	// progress reporting).
	Opened func(size int64)
	// Named, if set, learns the record's name from its manifest, before
	// the first byte (a client saving into a directory names the file).
	Named func(name string)
}

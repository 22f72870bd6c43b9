package api

import "time"

// Checkpoint is a trusted checkpoint of a ledger scope (`medmesh ledger
// checkpoint`, `ledger checkpoints`): a signed summary of the scope's state
// at its heads, from which a node joins without replaying the entries
// behind it.
type Checkpoint struct {
	// Checkpoint is its CID (that of its unsigned header).
	Checkpoint string `json:"checkpoint"`
	Scope      string `json:"scope"`
	// Index is its position in the trusted chain (0: the first).
	Index int      `json:"index"`
	Heads []string `json:"heads"`
	// Time is its newest head's clock.
	Time time.Time `json:"time"`
	// EntryCount is the number of entries behind its heads.
	EntryCount uint64 `json:"entry_count"`
	// Digest is the state digest at its heads (as `ledger heads` shows it).
	Digest string `json:"digest"`
	// Size is the size in bytes of its state blocks; BlockCount their number.
	Size       uint64 `json:"size"`
	BlockCount int    `json:"block_count"`
	// Prev is the checkpoint it extends (absent for the first).
	Prev string `json:"prev,omitempty"`
	// Signers are, for the global scope, the admins of its state: a
	// majority of them (Quorum) must sign the next checkpoint; for an
	// owner or audit scope, the owner's replica group at its global heads:
	// a majority of them (Quorum) signs this one.
	Signers []string `json:"signers"`
	Quorum  int      `json:"quorum"`
	// Deps, for an owner or audit scope, are the heads of the scopes it
	// depends on (global; for an audit scope, the owner scope) when it was
	// made: a node loads it once it holds them.
	Deps []string `json:"deps"`
	// Signatures are the peers that signed it.
	Signatures []string `json:"signatures"`
	// Base is set on the checkpoint this node joined from; Pruned on the one
	// it pruned up to.
	Base   bool `json:"base"`
	Pruned bool `json:"pruned"`
	// Trusted is false for a proposal: signed by fewer admins than the
	// quorum; Proposal then carries it (base64) for the next admin to
	// co-sign with `medmesh ledger checkpoint --cosign`.
	Trusted  bool   `json:"trusted"`
	Proposal string `json:"proposal,omitempty"`
}

// CheckpointRequest is the body of POST /ledger/checkpoint: empty to make
// one of the global scope, Scope to make one of an owner or audit scope
// (owner/<peer ID>, audit/<peer ID>), Proposal to co-sign another signer's.
type CheckpointRequest struct {
	Scope    string `json:"scope,omitempty"`
	Proposal string `json:"proposal,omitempty"`
}

// PruneResult is the outcome of `medmesh ledger prune`.
type PruneResult struct {
	// Checkpoint is the global scope's checkpoint pruned up to ("" if
	// there is none: only scope checkpoints).
	Checkpoint string `json:"checkpoint"`
	// ExaminedCount counts the entries behind it that still had bodies;
	// PrunedCount those dropped, KeptCount those kept (types whose bodies
	// are read back, and everything about this node's own records).
	ExaminedCount int `json:"examined_count"`
	PrunedCount   int `json:"pruned_count"`
	KeptCount     int `json:"kept_count"`
	// Size is the bytes of entries dropped.
	Size int64 `json:"size"`
	// Scopes says what was pruned under each scope's latest checkpoint,
	// the global scope first.
	Scopes []ScopePrune `json:"scopes"`
}

// ScopePrune is what `medmesh ledger prune` did under one scope's latest
// checkpoint.
type ScopePrune struct {
	Scope         string `json:"scope"`
	Checkpoint    string `json:"checkpoint"`
	ExaminedCount int    `json:"examined_count"`
	PrunedCount   int    `json:"pruned_count"`
	KeptCount     int    `json:"kept_count"`
	Size          int64  `json:"size"`
}

package api

// GCResult is what `medmesh gc` did.
type GCResult struct {
	// RemovedBlockCount and RemovedSize (bytes) are the blocks gc deleted: those
	// no record this node owns, holds or is fetching references, and that
	// are not ledger entries.
	RemovedBlockCount int   `json:"removed_block_count"`
	RemovedSize       int64 `json:"removed_size"`
	// KeptBlockCount are the blocks left in the store.
	KeptBlockCount int `json:"kept_block_count"`
	// KeptRecordCount counts the records whose blocks gc kept: owned, held as
	// replicas, readable under a grant, being fetched.
	KeptRecordCount int `json:"kept_record_count"`
	// SkippedBlockCount counts unreferenced blocks kept because a record
	// that may use them was being fetched or added while gc ran.
	SkippedBlockCount int `json:"skipped_block_count"`
	// InterruptedAddCount counts adds whose daemon died before they finished
	// and whose blocks this run cleaned up.
	InterruptedAddCount int `json:"interrupted_add_count"`
	// DiskSize is the space the datastore takes on disk afterwards, in
	// bytes (see RepoStat.DiskSize).
	DiskSize int64 `json:"disk_size"`
}

// RepoStat describes what a node stores (`medmesh repo stat`). Counts are
// *_count and sizes *_size in bytes, as everywhere (`medmesh help json`).
type RepoStat struct {
	// BlockCount and Size (bytes) count every block in the blockstore: record
	// chunks, manifests and block lists, and ledger entries. Sizes of large
	// blocks are as badger accounts them (within a few bytes each).
	BlockCount int   `json:"block_count"`
	Size       int64 `json:"size"`
	// OrphanBlockCount and OrphanSize are the blocks that belong to nothing
	// this node keeps: `medmesh gc` removes them.
	OrphanBlockCount int   `json:"orphan_block_count"`
	OrphanSize       int64 `json:"orphan_size"`
	// LedgerEntryCount counts the blocks that are ledger entries.
	LedgerEntryCount int `json:"ledger_entry_count"`
	// RecordCount counts the records this node keeps the blocks of: those it
	// owns (every version) and those it holds as a replica.
	RecordCount      int `json:"record_count"`
	OwnedRecordCount int `json:"owned_record_count"`
	HeldRecordCount  int `json:"held_record_count"`
	// RunningAddCount counts adds running now (their blocks are not orphans).
	RunningAddCount int `json:"running_add_count"`
	// DiskSize is what the datastore directory occupies on disk, in bytes:
	// more than Size while badger has not yet reclaimed the space of
	// deleted blocks (it rewrites its value log in the background).
	DiskSize int64 `json:"disk_size"`
}

package api

// Health is this node's view of the network (`medmesh health`, GET
// /api/v1/health). Healthy is false when Problems is not empty; Warnings
// do not make it unhealthy.
type Health struct {
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`
	Warnings []string `json:"warnings"`
	Peer     string   `json:"peer"`
	Member   bool     `json:"member"`
	// MemberCount counts the network's members other than this node;
	// ConnectedCount those connected now, Disconnected the others.
	MemberCount    int      `json:"member_count"`
	ConnectedCount int      `json:"connected_count"`
	Disconnected   []string `json:"disconnected"`
	// OwnedCount counts the records (every version) this node owns;
	// UnderReplicatedIDs those with fewer reachable holders (itself
	// included) than the replicas they want.
	OwnedCount           int      `json:"owned_count"`
	UnderReplicatedCount int      `json:"under_replicated_count"`
	UnderReplicatedIDs   []string `json:"under_replicated_ids"`
	// HeldCount counts other members' records this node holds replicas of.
	HeldCount int          `json:"held_count"`
	Ledger    HealthLedger `json:"ledger"`
}

// HealthLedger is the ledger's sync state: heads compared with the
// connected members'.
type HealthLedger struct {
	HeadCount    int `json:"head_count"`
	PendingCount int `json:"pending_count"`
	// ComparedCount is how many connected members answered; AgreeCount
	// how many had the same heads; Ahead lists members that had entries
	// this node still lacked after syncing with them.
	ComparedCount int      `json:"compared_count"`
	AgreeCount    int      `json:"agree_count"`
	Ahead         []string `json:"ahead"`
	InSync        bool     `json:"in_sync"`
	// NoGossip lists connected members (connected for GossipGrace or
	// more) that GossipSub does not list on the ledger's topic: entries
	// between them and this node travel by sync only.
	NoGossip []string `json:"no_gossip"`
	// GossipRepairs counts, since the daemon started, the connected
	// members whose GossipSub streams this node repaired (GossipSub had
	// given one up while the connection stayed): each also in
	// medmesh_ledger_gossip_repairs_total and a warning in the log.
	GossipRepairs int64 `json:"gossip_repairs"`
	// ClockAhead lists the members whose entries this node held back in
	// the last hour because their clocks were more than
	// ledger.MaxClockAhead ahead of its own (a problem: those entries wait
	// until this node's clock catches up; most members listed means this
	// node's clock is behind).
	ClockAhead []string `json:"clock_ahead"`
}

// VersionInfo is `medmesh version --json`.
type VersionInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// BackupState is what `medmesh backup` takes from a running daemon
// (GET /api/v1/backup/state): the datastore rows only this node holds and
// its members' addresses. Secret keys are not in it: the CLI reads them
// from the repo.
type BackupState struct {
	Rows  []BackupRow         `json:"rows"`
	Peers map[string][]string `json:"peers"`
	// AuditLog is the owner's audit log as it is now (absent when empty):
	// GET /api/v1/backup/auditlog?size=TreeSize exports its leaves, Size
	// bytes, whose tree hash is Root (hex).
	AuditLog *BackupAuditLog `json:"audit_log,omitempty"`
}

// BackupAuditLog describes the audit log a backup carries.
type BackupAuditLog struct {
	TreeSize int64  `json:"tree_size"`
	Root     string `json:"root"`
	Size     int64  `json:"size"`
}

// BackupRow is a datastore row (value base64 in JSON).
type BackupRow struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// BackupResult is what `medmesh backup` prints.
type BackupResult struct {
	File     string   `json:"file"`
	Peer     string   `json:"peer"`
	Size     int64    `json:"size"`
	Created  string   `json:"created"`
	Files    []string `json:"files"`
	RowCount int      `json:"row_count"`
	// AuditLogTreeSize is how many entries of the node's audit log it holds.
	AuditLogTreeSize int64 `json:"audit_log_tree_size"`
	// PeerCount is how many members' addresses it holds (a restored node
	// dials them to catch up).
	PeerCount int `json:"peer_count"`
}

// RestoreResult is what `medmesh restore` prints.
type RestoreResult struct {
	Repo          string   `json:"repo"`
	Peer          string   `json:"peer"`
	BackupCreated string   `json:"backup_created"`
	Files         []string `json:"files"`
	RowCount      int      `json:"row_count"`
	PeerCount     int      `json:"peer_count"`
	// AuditLogTreeSize is how many entries of the audit log it restored.
	AuditLogTreeSize int64 `json:"audit_log_tree_size"`
}

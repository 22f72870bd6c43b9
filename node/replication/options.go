package replication

import (
	"time"

	rules "github.com/medmesh/medmesh/sharing/replication"
)

// Options tune the replication manager (see sharing/replication). Zero
// values take the defaults.
type Options struct {
	// Disabled turns the manager off (no placement, repair or challenges).
	// Challenges are still answered: holders answer whoever checks them.
	Disabled bool
	// Interval between placement passes. Default 10s. Ledger changes also
	// trigger a pass.
	Interval time.Duration
	// Grace is how long a holder may be unreachable, or fail its proofs of
	// storage, before it is replaced. Default 10m.
	Grace time.Duration
	// VerifyInterval between proof-of-storage rounds. Default 10m.
	VerifyInterval time.Duration
	// SweepInterval between the starts of sweeps that re-plan every record
	// this node is involved in (a safety net: placement otherwise reacts to
	// ledger entries, liveness changes and failed proofs), SweepBatch
	// records an Interval. Default 10m.
	SweepInterval time.Duration
	// ChallengeBlocks is how many random blocks one challenge asks for.
	// Default 4.
	ChallengeBlocks int
	// ChallengeRecords is how many of the records this node holds one
	// proof round challenges: a random sample, plus the records with a
	// holder failing; after a failed challenge the next round checks every
	// record. Default 64, so a round costs the same with 100 records or
	// 100,000 (issue #16).
	ChallengeRecords int
	// SweepBatch is how many involved records the sweep re-plans per
	// Interval: a sweep starts at most every SweepInterval and takes as
	// many Intervals as it needs, so its cost is spread and bounded.
	// Default 64.
	SweepBatch int
	// ReprovideInterval between DHT re-announcements of every block this
	// node holds. The DHT keeps provider records ~48h. Default 12h.
	ReprovideInterval time.Duration
	// ReprovideBatch is how many CIDs one reprovide batch hands the DHT
	// provider pool (whose concurrency is p2p's ProvideConcurrency).
	// Default 4096.
	ReprovideBatch int
	// FetchConcurrency bounds replicas fetched at once. Default 2.
	FetchConcurrency int
	// DiskReserve is free disk space a replica may not eat into. Default 256 MiB.
	DiskReserve int64
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Minute
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Minute
	}
	if o.VerifyInterval <= 0 {
		o.VerifyInterval = 10 * time.Minute
	}
	if o.ChallengeBlocks <= 0 {
		o.ChallengeBlocks = 4
	}
	if o.ChallengeRecords <= 0 {
		o.ChallengeRecords = 64
	}
	if o.SweepBatch <= 0 {
		o.SweepBatch = 64
	}
	o.ChallengeBlocks = min(o.ChallengeBlocks, rules.MaxChallengeBlocks)
	if o.ReprovideInterval <= 0 {
		o.ReprovideInterval = 12 * time.Hour
	}
	if o.ReprovideBatch <= 0 {
		o.ReprovideBatch = 4096
	}
	if o.FetchConcurrency <= 0 {
		o.FetchConcurrency = 2
	}
	if o.DiskReserve <= 0 {
		o.DiskReserve = 256 << 20
	}
}

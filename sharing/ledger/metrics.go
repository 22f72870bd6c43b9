package ledger

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the ledger's Prometheus collectors.
type metrics struct {
	rejected   *prometheus.CounterVec
	applied    prometheus.Counter
	duplicates prometheus.Counter
	pending    prometheus.Gauge
	heads      prometheus.Gauge
	syncs      *prometheus.CounterVec
	fetched    prometheus.Counter
	// fetchedKnown counts entries a sync brought that were applied here
	// already: what an offer failed to tell the peer.
	fetchedKnown prometheus.Counter
	readErrors   *prometheus.CounterVec
	scopeCkpts   *prometheus.CounterVec
	// forwardedLate counts gossiped entries accepted (and so forwarded)
	// once a sync brought their parents (relay.go).
	forwardedLate prometheus.Counter
	// gossipRepairs counts GossipSub peers given up and asked back
	// (net_gossip.go).
	gossipRepairs prometheus.Counter
	// scopeDrafts counts scope checkpoint drafts (scopeDraftAt).
	scopeDrafts prometheus.Counter
	// ahead counts entries held back for a clock too far ahead (ahead.go).
	ahead prometheus.Counter
	// late counts entries judged far behind the heads (Core.TakeLate).
	late prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_ledger_rejected_total",
			Help: "Ledger entries rejected, by reason."}, []string{"reason"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_applied_total",
			Help: "Ledger entries validated and applied."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_duplicates_total",
			Help: "Ledger entries received again after being applied."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_ledger_pending_entries",
			Help: "Entries waiting for missing parents."}),
		heads: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_ledger_heads",
			Help: "Current number of DAG heads."}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_ledger_syncs_total",
			Help: "Catch-up sync sessions with peers, by result."}, []string{"result"}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_sync_fetched_entries_total",
			Help: "Entries received through the sync protocol."}),
		fetchedKnown: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_sync_fetched_known_entries_total",
			Help: "Entries received through the sync protocol that were applied here already (the peer could not tell from this node's offer)."}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_ledger_read_errors_total",
			Help: "Ledger queries that could not read the state (storage failure) and answered as if empty, by query."}, []string{"query"}),
		scopeCkpts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_ledger_scope_checkpoints_total",
			Help: "Automatic scope checkpoints: proposed and stored (made), proposals that failed (failed), others' proposals co-signed (cosigned) or not (refused)."}, []string{"result"}),
		forwardedLate: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_forwarded_late_entries_total",
			Help: "Entries that arrived through GossipSub before their parents and were forwarded once a sync brought the parents."}),
		gossipRepairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_gossip_repairs_total",
			Help: "Connected members this node's GossipSub had given up (no stream to them) and was asked to open a stream to again."}),
		scopeDrafts: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_scope_drafts_total",
			Help: "Scope checkpoint drafts: replays of a scope from its previous checkpoint, to propose, co-sign or adopt a checkpoint (or for an operator)."}),
		ahead: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_entries_ahead_total",
			Help: "Entries held back (not applied, not rejected) because their clock was more than ledger.MaxClockAhead ahead of this node's; a later sync offers them again."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_late_entries_total",
			Help: "Entries whose parents were more than ledger.LateBehind entries behind this node's heads: judging each walked that much history (its author appended without having caught up, or on purpose)."}),
	}
	if reg == nil {
		return m
	}
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return are.ExistingCollector
			}
		}
		return c
	}
	m.rejected = reg1(m.rejected).(*prometheus.CounterVec)
	m.applied = reg1(m.applied).(prometheus.Counter)
	m.duplicates = reg1(m.duplicates).(prometheus.Counter)
	m.pending = reg1(m.pending).(prometheus.Gauge)
	m.heads = reg1(m.heads).(prometheus.Gauge)
	m.syncs = reg1(m.syncs).(*prometheus.CounterVec)
	m.fetched = reg1(m.fetched).(prometheus.Counter)
	m.fetchedKnown = reg1(m.fetchedKnown).(prometheus.Counter)
	m.readErrors = reg1(m.readErrors).(*prometheus.CounterVec)
	m.scopeCkpts = reg1(m.scopeCkpts).(*prometheus.CounterVec)
	m.forwardedLate = reg1(m.forwardedLate).(prometheus.Counter)
	m.gossipRepairs = reg1(m.gossipRepairs).(prometheus.Counter)
	m.scopeDrafts = reg1(m.scopeDrafts).(prometheus.Counter)
	m.ahead = reg1(m.ahead).(prometheus.Counter)
	m.late = reg1(m.late).(prometheus.Counter)
	return m
}

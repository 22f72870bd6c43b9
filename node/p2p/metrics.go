package p2p

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's own prometheus metrics. Several nodes may share a
// registerer (tests, a multi-node process): they then share the collectors.
type metrics struct {
	refused        prometheus.Counter
	stalls         prometheus.Counter
	fetchedBlocks  prometheus.Counter
	fetchedBytes   prometheus.Counter
	provided       prometheus.Counter
	provideErrors  prometheus.Counter
	bootstrapDials prometheus.Counter
	bulkBlocks     prometheus.Counter
	bulkServed     prometheus.Counter
	bulkRejected   prometheus.Counter
	pskRefused     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		ctr := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		if reg == nil {
			return ctr
		}
		if err := reg.Register(ctr); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
					return existing
				}
			}
			// A conflicting registration (different help or type) must not
			// take the node down: keep counting, unexported.
			return ctr
		}
		return ctr
	}
	return &metrics{
		refused:        c("medmesh_bitswap_refused_blocks_total", "Bitswap block requests refused by the membership check or the block filter."),
		stalls:         c("medmesh_fetch_stalls_total", "Fetches that made no progress for the stall timeout and were restarted."),
		fetchedBlocks:  c("medmesh_fetch_blocks_total", "Blocks fetched from the network and verified."),
		fetchedBytes:   c("medmesh_fetch_bytes_total", "Bytes of blocks fetched from the network and verified."),
		provided:       c("medmesh_dht_provided_total", "CIDs announced on the DHT."),
		provideErrors:  c("medmesh_dht_provide_errors_total", "CIDs whose DHT announcement failed."),
		bootstrapDials: c("medmesh_bootstrap_dials_total", "Dial attempts to bootstrap peers."),
		bulkBlocks:     c("medmesh_bulk_fetched_blocks_total", "Blocks received and verified over the bulk block protocol."),
		bulkServed:     c("medmesh_bulk_served_blocks_total", "Blocks sent over the bulk block protocol."),
		bulkRejected:   c("medmesh_bulk_rejected_blocks_total", "Blocks received over the bulk block protocol whose bytes did not match their CID."),
		pskRefused:     c("medmesh_p2p_network_key_refused_connections_total", "Inbound connections refused because they were protected with no network key this node accepts."),
	}
}

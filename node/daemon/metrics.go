package daemon

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	recordsAdded prometheus.Counter
	bytesAdded   prometheus.Counter
	recordsRead  prometheus.Counter
	refused      prometheus.Counter
	attested     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		recordsAdded: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_records_added_total", Help: "Records stored by this node."}),
		bytesAdded:   prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_record_bytes_added_total", Help: "Plaintext bytes stored by this node."}),
		recordsRead:  prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_records_read_total", Help: "Other nodes' records this node read."}),
		refused:      prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_access_refused_blocks_total", Help: "Block requests refused because the peer may not read the record."}),
		attested:     prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_attested_reads_total", Help: "Reads by grantees this node served and attested on the ledger."}),
	}
	reg.MustRegister(m.recordsAdded, m.bytesAdded, m.recordsRead, m.refused, m.attested)
	return m
}

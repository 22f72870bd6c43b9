package pacs

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	associations *prometheus.CounterVec // result: accepted, rejected
	active       prometheus.Gauge
	operations   *prometheus.CounterVec // op, status category
	received     *prometheus.CounterVec // C-STORE instances: accepted, refused
	receivedB    prometheus.Counter
	stored       *prometheus.CounterVec // result: stored, duplicate, rejected
	storeErrors  prometheus.Counter
	pending      prometheus.Gauge
	sent         *prometheus.CounterVec // by medmesh dicom send: completed, failed
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		associations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_dicom_associations_total",
			Help: "DICOM associations requested of this node's SCP, by result (accepted, rejected)."}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_dicom_associations_active",
			Help: "DICOM associations established now."}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_dicom_operations_total",
			Help: "DIMSE requests answered, by operation (echo, store, find, move, get) and final status (success, warning, failure, cancel)."}, []string{"op", "status"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_dicom_instances_received_total",
			Help: "C-STORE instances received, by result (accepted: in the inbox, refused: answered with a failure)."}, []string{"result"}),
		receivedB: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_dicom_received_bytes_total",
			Help: "Bytes of C-STORE instances accepted (Part 10 files)."}),
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_dicom_inbox_stored_total",
			Help: "Instances received by C-STORE and then stored, by result (stored; duplicate: already stored; rejected: could not be read back, kept in the inbox's .rejected folder)."}, []string{"result"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_dicom_store_errors_total",
			Help: "Attempts to store a received study that failed (kept in the inbox and retried)."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_dicom_inbox_instances",
			Help: "Received instances waiting in the inbox to be stored."}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_dicom_instances_sent_total",
			Help: "Instances sent by `medmesh dicom send`, by result (completed, failed)."}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.associations, m.active, m.operations, m.received, m.receivedB, m.stored, m.storeErrors, m.pending, m.sent} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

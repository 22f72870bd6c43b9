package imaging

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics counts, in reg, the DICOM instances this node stores
// (medmesh_dicom_stored_instances_total: each instance an import or STOW
// adds to a study, and each a de-identification writes). Call it once,
// before the service is used.
func (s *Service) RegisterMetrics(reg prometheus.Registerer) error {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "medmesh_dicom_stored_instances_total",
		Help: "DICOM instances this node stored: new instances of imported (or STOW-RS) studies and of de-identified copies.",
	})
	if err := reg.Register(c); err != nil {
		return err
	}
	s.stored = c
	return nil
}

// countStored adds n stored instances to the metric, if registered.
func (s *Service) countStored(n int) {
	if s.stored != nil && n > 0 {
		s.stored.Add(float64(n))
	}
}

package daemon

import (
	"github.com/medmesh/medmesh/node/erasure"
	"github.com/medmesh/medmesh/node/research"
)

// startResearch builds the research service (consents and datasets) over
// the records and imaging services.
func (d *Daemon) startResearch() error {
	r, err := research.New(research.Config{
		Ledger: erasure.Hide{Ledger: d.Ledger, S: d.erasure}, Records: d.Records, Imaging: d.imaging,
		Self: d.self, Identity: d.ident, Local: d.local,
		Now: d.opts.Now, Logger: d.log,
	})
	if err != nil {
		return err
	}
	d.Research = r
	return nil
}

package daemon

import (
	"net"

	"github.com/medmesh/medmesh/node/pacs"
	"github.com/medmesh/medmesh/node/repo"
)

// dicomSettings are the DICOM application entity's settings: the
// explicit ones if given, else the repo's.
func dicomSettings(r *repo.Repo, explicit *pacs.Settings) (pacs.Settings, error) {
	if explicit != nil {
		return *explicit, nil
	}
	return pacs.Settings{}, nil
}

// DICOMAddr is the DICOM SCP's address, or nil when dicom.listen is off.
func (d *Daemon) DICOMAddr() net.Addr { return d.pacs.Addr() }

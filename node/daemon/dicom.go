package daemon

import (
	"fmt"
	"net"
	"strings"

	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/pacs"
	"github.com/medmesh/medmesh/node/repo"
)

// dicomSettings are the DICOM application entity's settings: the
// explicit ones if given, else the repo's dicom.* settings.
func dicomSettings(c repo.Config, explicit *pacs.Settings) (pacs.Settings, error) {
	if explicit != nil {
		return *explicit, nil
	}
	s := pacs.Settings{
		Listen: c.DICOMListen, AETitle: c.DICOMAETitle, MaxPDU: uint32(c.DICOMMaxPDU), MaxAssociations: c.DICOMMaxAssociations,
		Timeouts:   dimse.Timeouts{ARTIM: c.DICOMAssociationTimeout, Connect: c.DICOMAssociationTimeout, DIMSE: c.DICOMTimeout, Idle: c.DICOMIdleTimeout},
		StoreDelay: c.DICOMStoreDelay,
	}
	var err error
	if s.Allowed, err = dimse.ParseCallers(strings.Join(c.DICOMAllowed, ",")); err != nil {
		return s, fmt.Errorf("config dicom.allowed: %w", err)
	}
	if s.Destinations, err = dimse.ParseDestinations(strings.Join(c.DICOMDestinations, ",")); err != nil {
		return s, fmt.Errorf("config dicom.destinations: %w", err)
	}
	return s, nil
}

// DICOMAddr is the DICOM SCP's address, or nil when dicom.listen is off.
func (d *Daemon) DICOMAddr() net.Addr { return d.pacs.Addr() }

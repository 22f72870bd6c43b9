package imaging

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Export writes a study's original files, byte for byte, as
// dir/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm (only one series if series
// is set), each through a temporary file renamed into place once complete
// and verified. A grantee's read is claimed with purpose and counted, and
// the study joins its index (so DICOMweb finds it by UID).
func (s *Service) Export(ctx context.Context, id cid.Cid, version int, dir, series, purpose string) (*api.DicomExportResult, error) {
	if !filepath.IsAbs(dir) {
		return nil, fault.Invalidf("the CLI sends absolute paths", "output folder %q is not absolute", dir)
	}
	o, err := s.Open(ctx, id, version, purpose)
	if err != nil {
		return nil, err
	}
	type job struct {
		se *dicom.Series
		in *dicom.InstanceRef
	}
	var jobs []job
	for _, se := range o.Study.Series {
		if series != "" && se.UID != series {
			continue
		}
		for _, in := range se.Instances {
			jobs = append(jobs, job{se, in})
		}
	}
	if len(jobs) == 0 {
		return nil, fault.NotFoundf("`medmesh dicom query --study UID --json` lists the study", "study %s has no series %s", o.Study.UID, series)
	}
	out := &api.DicomExportResult{ID: o.Info.ID.String(), StudyUID: o.Study.UID, Files: []string{}}
	for _, j := range jobs {
		sdir := filepath.Join(dir, o.Study.UID, j.se.UID)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return out, fmt.Errorf("create %s: %w", sdir, err)
		}
		path := filepath.Join(sdir, j.in.SOPInstanceUID+".dcm")
		n, err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
			return s.WriteInstance(ctx, o, j.in, w)
		})
		if err != nil {
			return out, fmt.Errorf("export %s: %w", path, err)
		}
		out.Files = append(out.Files, path)
		out.Bytes += n
		out.Instances++
	}
	s.ReadDone(ctx, o, purpose)
	s.indexGranted(ctx, o)
	return out, nil
}

// indexGranted adds a study this node read but does not own to its index.
func (s *Service) indexGranted(ctx context.Context, o *Opened) {
	if o.Info.Owner == s.self {
		return
	}
	if err := s.idx.Put(ctx, o.Info.ID.String(), o.Study); err != nil {
		s.log.Warn("dicom index: add granted study", "record", o.Info.ID, "err", err)
	}
}

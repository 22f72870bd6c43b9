package imaging

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/storage/dicom"
)

// projectKey reads the project key file at path, or the default key file
// (created, 32 random bytes, 0600, on first use) if path is empty.
func projectKey(path, def string) ([]byte, error) {
	if path != "" && !filepath.IsAbs(path) {
		return nil, fault.Invalidf("", "project key file %q is not an absolute path", path)
	}
	if path == "" {
		path = def
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			k := make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return nil, err
			}
			if err := atomicfile.WriteBytes(path, k, 0o600); err != nil {
				return nil, fmt.Errorf("create project key %s: %w", path, err)
			}
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fault.Invalidf("", "project key: %v", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fault.Invalidf("chmod 600 "+path, "project key %s has mode %v: it must be readable by its owner only", path, st.Mode().Perm())
	}
	if st.Size() < 16 || st.Size() > 4096 {
		return nil, fault.Invalidf("", "project key %s must hold 16 to 4096 bytes, has %d", path, st.Size())
	}
	return os.ReadFile(path)
}

// ErrAllExcluded is the cause of Deidentify's error when de-identification
// excluded every instance it was given (a fault.Invalid).
var ErrAllExcluded = errors.New("every instance of the study was excluded from de-identification")

// Deidentified is a de-identified copy of a study, stored as a new record.
type Deidentified struct {
	ID   cid.Cid
	Size int64
	// Study is the new record's study: pseudonymous patient, new UIDs,
	// each instance's Size that of its de-identified file.
	Study *dicom.Study
	// Excluded are the source instances left out (PS3.15 says they need
	// pixel cleaning or are otherwise not de-identifiable).
	Excluded []api.DicomExcluded
}

// Deidentify makes a new "dicom-study" record of the de-identified
// instances of an opened study (PS3.15 Annex E basic profile,
// storage/dicom), only of the series keep selects (all if nil), and
// indexes it. Instances are streamed one at a time from the source record
// through the de-identifier into the record builder; nothing is held whole
// in memory and nothing in clear is written to disk. Two passes are made:
// the first computes each output's size and new UIDs for the study
// metadata (which the manifest needs before the files), the second stores
// the bytes; a difference between the passes fails the add, which then
// rolls back. The caller counts the read of the source (ReadDone).
func (s *Service) Deidentify(ctx context.Context, src *Opened, opts dicom.DeidOptions, keep func(*dicom.Series) bool) (*Deidentified, error) {
	out := &Deidentified{Study: &dicom.Study{}, Excluded: []api.DicomExcluded{}}
	ns := out.Study
	var from []int // source file index of each output file
	var offset int
	for _, se := range src.Study.Series {
		if keep != nil && !keep(se) {
			continue
		}
		var nse *dicom.Series
		for _, in := range se.Instances {
			cw := &countWriter{w: io.Discard}
			res, err := s.deidFile(ctx, src, in.FileIndex, cw, opts)
			if err != nil {
				return nil, fmt.Errorf("de-identify instance %s (file %d) of %s: %w", in.SOPInstanceUID, in.FileIndex, src.Info.ID, err)
			}
			if res.Excluded {
				out.Excluded = append(out.Excluded, api.DicomExcluded{File: in.FileIndex, SeriesUID: se.UID, SOPInstanceUID: in.SOPInstanceUID, Reason: res.Reason})
				continue
			}
			if ns.UID == "" {
				ns.UID, ns.PatientID = res.StudyInstanceUID, res.PatientPseudonym
				ns.PatientName = "ANON^" + strings.TrimPrefix(res.PatientPseudonym, "ANON-")
				offset = res.DateOffsetDays
			}
			if nse == nil || nse.UID != res.SeriesInstanceUID {
				nse = nil
				for _, x := range ns.Series {
					if x.UID == res.SeriesInstanceUID {
						nse = x
					}
				}
				if nse == nil {
					nse = &dicom.Series{UID: res.SeriesInstanceUID, Modality: se.Modality, BodyPart: se.BodyPart, Number: se.Number}
					ns.Series = append(ns.Series, nse)
				}
			}
			nse.Instances = append(nse.Instances, &dicom.InstanceRef{SOPInstanceUID: res.SOPInstanceUID, SOPClassUID: in.SOPClassUID,
				TransferSyntax: in.TransferSyntax, Number: in.Number, Size: cw.n, FileIndex: len(from)})
			from = append(from, in.FileIndex)
		}
	}
	if len(from) == 0 {
		return nil, fault.New(fault.Invalid, "such instances need pixel cleaning, which medmesh does not do", "%w (%d)", ErrAllExcluded, len(out.Excluded))
	}
	if opts.ShiftDates && src.Study.StudyDate != "" {
		if t, err := time.Parse("20060102", src.Study.StudyDate); err == nil {
			ns.StudyDate = t.AddDate(0, 0, offset).Format("20060102")
		}
	}
	meta, err := dicom.EncodeStudyMeta(ns)
	if err != nil {
		return nil, err
	}
	// The files in file-index order: series were built in source order
	// and FileIndex follows that same order.
	files := make([]records.FileSource, 0, len(from))
	for _, se := range ns.Series {
		for _, ni := range se.Instances {
			files = append(files, records.FileSource{Path: se.UID + "/" + ni.SOPInstanceUID + ".dcm", Open: s.deidPipe(ctx, src, from[ni.FileIndex], ni.Size, opts)})
		}
	}
	ar, err := s.rec.Add(ctx, records.AddRequest{Name: DeidStudyName, MediaType: MediaType, Kind: Kind, Class: Class, Meta: meta, Files: files})
	if err != nil {
		return nil, err
	}
	s.countStored(ns.NumInstances())
	if err := s.idx.Put(ctx, ar.ID.String(), ns); err != nil {
		s.log.Warn("dicom index: add de-identified study", "record", ar.ID, "err", err)
	}
	out.ID, out.Size = ar.ID, ar.Size
	return out, nil
}

// DeidentifyRecord de-identifies every series of a study record
// (`medmesh dicom deidentify`) with the request's project key and options,
// and counts the read of the source.
func (s *Service) DeidentifyRecord(ctx context.Context, id cid.Cid, req api.DicomDeidRequest) (*api.DicomDeidResult, error) {
	key, err := s.ProjectKey(req.ProjectKeyFile)
	if err != nil {
		return nil, err
	}
	opts := dicom.DeidOptions{ProjectKey: key, RetainPatientCharacteristics: req.RetainPatientCharacteristics, ShiftDates: req.ShiftDates}
	src, err := s.Open(ctx, id, req.Version, req.Purpose)
	if err != nil {
		return nil, err
	}
	d, err := s.Deidentify(ctx, src, opts, nil)
	if err != nil {
		return nil, err
	}
	s.ReadDone(ctx, src, req.Purpose)
	return &api.DicomDeidResult{ID: d.ID.String(), Source: src.Info.ID.String(), StudyUID: d.Study.UID, Instances: d.Study.NumInstances(),
		Excluded: d.Excluded, Size: d.Size}, nil
}

// deidFile de-identifies file i of an opened study into w, streaming it
// from the record through a pipe.
func (s *Service) deidFile(ctx context.Context, src *Opened, i int, w io.Writer, opts dicom.DeidOptions) (*dicom.DeidResult, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.rec.ReadFiles(ctx, src.Manifest, src.Key, []int{i}, pw)) }()
	res, err := dicom.Deidentify(pr, w, opts)
	if err == nil {
		// Drain what the de-identifier did not need (an excluded instance)
		// so a read error of the record still surfaces.
		_, err = io.Copy(io.Discard, pr)
	}
	pr.CloseWithError(errors.New("de-identification finished"))
	return res, err
}

// deidPipe is a records.FileSource opener: the de-identified bytes of file
// i, produced while the builder reads them, checked against the size the
// first pass measured.
func (s *Service) deidPipe(ctx context.Context, src *Opened, i int, size int64, opts dicom.DeidOptions) func() (io.Reader, error) {
	return func() (io.Reader, error) {
		pr, pw := io.Pipe()
		go func() {
			cw := &countWriter{w: pw}
			res, err := s.deidFile(ctx, src, i, cw, opts)
			if err == nil && (res.Excluded || cw.n != size) {
				err = fmt.Errorf("de-identified file %d differs between passes (%d bytes, then %d)", i, size, cw.n)
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"io"
	"os"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// projectKey reads the project key file, or the repo's default key
// (created, 32 random bytes, 0600, on first use).
func (d *Daemon) projectKey(path string) ([]byte, error) {
	if path == "" {
		path = d.Repo.Path(DicomProjectKeyFile)
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

// DeidentifyDICOM makes a new "dicom-study" record of the de-identified
// instances of a study (PS3.15 Annex E basic profile, storage/dicom).
// Instances are streamed one at a time from the source record through the
// de-identifier into the record builder; nothing is held whole in memory
// and nothing in clear is written to disk. Two passes are made: the first
// computes each output's size and new UIDs for the study metadata (which
// the manifest needs before the files), the second stores the bytes; a
// difference between the passes fails the add, which then rolls back.
func (d *Daemon) DeidentifyDICOM(ctx context.Context, id cid.Cid, req api.DicomDeidRequest) (*api.DicomDeidResult, error) {
	if req.ProjectKeyFile != "" && !isAbs(req.ProjectKeyFile) {
		return nil, fault.Invalidf("", "project key file %q is not an absolute path", req.ProjectKeyFile)
	}
	key, err := d.projectKey(req.ProjectKeyFile)
	if err != nil {
		return nil, err
	}
	opts := dicom.DeidOptions{ProjectKey: key, RetainPatientCharacteristics: req.RetainPatientCharacteristics, ShiftDates: req.ShiftDates}
	info, m, rkey, g, src, err := d.openStudyFor(ctx, id, req.Version, req.Purpose)
	if err != nil {
		return nil, err
	}
	out := &api.DicomDeidResult{Source: info.ID.String(), Excluded: []api.DicomExcluded{}}
	ns := &dicom.Study{}
	type kept struct {
		file int
		size int64
	}
	var keep []kept
	var offset int
	for _, se := range src.Series {
		var nse *dicom.Series
		for _, in := range se.Instances {
			cw := &countWriter{w: io.Discard}
			res, err := d.deidOne(ctx, m, rkey, in.FileIndex, cw, opts)
			if err != nil {
				return nil, fmt.Errorf("de-identify instance %s (file %d): %w", in.SOPInstanceUID, in.FileIndex, err)
			}
			if res.Excluded {
				out.Excluded = append(out.Excluded, api.DicomExcluded{File: in.FileIndex, SeriesUID: se.UID, SOPInstanceUID: in.SOPInstanceUID, Reason: res.Reason})
				continue
			}
			if ns.UID == "" {
				ns.UID, ns.PatientID = res.StudyInstanceUID, res.PatientPseudonym
				ns.PatientName = "ANON^" + trimPrefix(res.PatientPseudonym, "ANON-")
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
			ni := &dicom.InstanceRef{SOPInstanceUID: res.SOPInstanceUID, SOPClassUID: in.SOPClassUID, TransferSyntax: in.TransferSyntax,
				Number: in.Number, Size: cw.n, FileIndex: len(keep)}
			nse.Instances = append(nse.Instances, ni)
			keep = append(keep, kept{file: in.FileIndex, size: cw.n})
		}
	}
	if len(keep) == 0 {
		return nil, fault.Invalidf("such instances need pixel cleaning, which medmesh does not do", "every instance of the study was excluded from de-identification (%d)", len(out.Excluded))
	}
	if opts.ShiftDates && src.StudyDate != "" {
		if t, err := time.Parse("20060102", src.StudyDate); err == nil {
			ns.StudyDate = t.AddDate(0, 0, offset).Format("20060102")
		}
	}
	meta, err := dicom.EncodeStudyMeta(ns)
	if err != nil {
		return nil, err
	}
	files := make([]records.FileSource, 0, len(keep))
	for _, se := range ns.Series {
		for _, ni := range se.Instances {
			k := keep[ni.FileIndex]
			files = append(files, records.FileSource{Path: se.UID + "/" + ni.SOPInstanceUID + ".dcm", Open: d.deidPipe(ctx, m, rkey, k.file, k.size, opts)})
		}
	}
	// files must be in file-index order: series were built in source order
	// and FileIndex follows that same order.
	ar, err := d.Add(ctx, records.AddRequest{Name: "DICOM study (de-identified)", MediaType: DicomMediaType, Kind: DicomKind, Class: DicomClass, Meta: meta, Files: files})
	if err != nil {
		return nil, err
	}
	if idx, err := d.DicomIndex(); err == nil {
		if err := idx.Put(ctx, ar.ID.String(), ns); err != nil {
			d.log.Warn("dicom index: add de-identified study", "record", ar.ID, "err", err)
		}
	}
	d.audit(ctx, info, req.Purpose, g)
	out.ID, out.StudyUID, out.Instances, out.Size = ar.ID.String(), ns.UID, len(keep), ar.Size
	return out, nil
}

func isAbs(p string) bool { return len(p) > 0 && p[0] == '/' }

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// deidOne de-identifies file i of a record into w, streaming it from the
// record through a pipe.
func (d *Daemon) deidOne(ctx context.Context, m *record.Manifest, key record.Key, i int, w io.Writer, opts dicom.DeidOptions) (*dicom.DeidResult, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(d.ReadFiles(ctx, m, key, []int{i}, pw)) }()
	res, err := dicom.Deidentify(pr, w, opts)
	if err == nil {
		// Drain what the de-identifier did not need (an excluded instance)
		// so a read error of the record still surfaces.
		_, err = io.Copy(io.Discard, pr)
	}
	pr.CloseWithError(errors.New("de-identification finished"))
	return res, err
}

// deidPipe is a records.FileSource opener: the de-identified bytes of file i,
// produced while the builder reads them, checked against the size the first
// pass measured.
func (d *Daemon) deidPipe(ctx context.Context, m *record.Manifest, key record.Key, i int, size int64, opts dicom.DeidOptions) func() (io.Reader, error) {
	return func() (io.Reader, error) {
		pr, pw := io.Pipe()
		go func() {
			cw := &countWriter{w: pw}
			res, err := d.deidOne(ctx, m, key, i, cw, opts)
			if err == nil && (res.Excluded || cw.n != size) {
				err = fmt.Errorf("de-identified file %d differs between passes (%d bytes, then %d)", i, size, cw.n)
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
}

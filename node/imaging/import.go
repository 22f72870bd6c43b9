package imaging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// Import parses the files and folders at paths (absolute; folders walked
// recursively) and stores each study as a "dicom-study" record, one file
// per instance, streamed from disk. A study the node already owns gets a
// new version holding the union of its instances and the new ones
// (MergeStudy). Every file ends up in a stored study, in Rejected or in
// Skipped; Files has the outcome of each by path.
func (s *Service) Import(ctx context.Context, paths []string) (*api.DicomImportResult, error) {
	if len(paths) == 0 {
		return nil, fault.Invalidf("name files or folders to import", "no paths to import")
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fault.Invalidf("the CLI sends absolute paths", "path %q is not absolute", p)
		}
	}
	res := &api.DicomImportResult{Studies: []api.DicomStudyResult{}, Rejected: []api.DicomReject{}, Skipped: []api.DicomReject{}, Warnings: []api.DicomWarning{},
		Files: map[string]*api.DicomFileOutcome{}}
	studies, err := dicom.Scan(ctx, paths, func(r dicom.Reject) {
		msg := r.Err.Error()
		res.Files[r.Path] = &api.DicomFileOutcome{Err: msg}
		if errors.Is(r.Err, dicom.ErrDICOMDIR) || errors.Is(r.Err, dicom.ErrDuplicate) {
			if errors.Is(r.Err, dicom.ErrDuplicate) {
				res.Files[r.Path].Err = ""
			}
			res.Skipped = append(res.Skipped, api.DicomReject{Path: r.Path, Error: msg})
			return
		}
		res.Rejected = append(res.Rejected, api.DicomReject{Path: r.Path, Error: msg})
	})
	if err != nil {
		return nil, err
	}
	for _, st := range studies {
		for _, in := range st.Instances() {
			res.Files[in.Path] = &api.DicomFileOutcome{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, StudyUID: st.UID}
		}
		sr, skipped, err := s.importStudy(ctx, st)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			for _, in := range st.Instances() {
				msg := fmt.Sprintf("%s: study not stored (nothing of it was kept): %v", in.Path, err)
				res.Files[in.Path].Err = msg
				res.Rejected = append(res.Rejected, api.DicomReject{Path: in.Path, Error: msg})
			}
			continue
		}
		res.Skipped = append(res.Skipped, skipped...)
		res.Studies = append(res.Studies, *sr)
		for _, in := range st.Instances() {
			if len(in.Warnings) > 0 {
				res.Warnings = append(res.Warnings, api.DicomWarning{Path: in.Path, Warning: in.Path + ": " + strings.Join(in.Warnings, "; ")})
			}
		}
	}
	return res, nil
}

// ownedStudy finds the newest version of the record this node owns for a
// study UID, through the index.
func (s *Service) ownedStudy(ctx context.Context, studyUID string) (ledger.RecordInfo, bool, error) {
	hits, err := s.idx.Query(ctx, dicom.Filter{StudyUID: studyUID})
	if err != nil {
		return ledger.RecordInfo{}, false, err
	}
	var best ledger.RecordInfo
	found := false
	for _, h := range hits {
		id, err := cid.Decode(h.RecordID)
		if err != nil || !s.mine(id) {
			continue
		}
		latest := s.rec.LatestVersion(id)
		if !found || latest.Version > best.Version {
			best, found = latest, true
		}
	}
	return best, found, nil
}

// importStudy stores one scanned study: a new record, or a new version of
// the record this node owns for the study.
func (s *Service) importStudy(ctx context.Context, in *dicom.Study) (*api.DicomStudyResult, []api.DicomReject, error) {
	defer s.lockStudy(in.UID)()
	prev, found, err := s.ownedStudy(ctx, in.UID)
	if err != nil {
		return nil, nil, err
	}
	var stored *Opened
	if found {
		if stored, err = s.Open(ctx, prev.ID, int(prev.Version), ""); err != nil {
			return nil, nil, fmt.Errorf("open the stored version of the study: %w", err)
		}
		prev = stored.Info
	}
	var storedStudy *dicom.Study
	if stored != nil {
		storedStudy = stored.Study
	}
	mg := MergeStudy(storedStudy, in)
	var skipped []api.DicomReject
	for _, x := range mg.Skipped {
		skipped = append(skipped, api.DicomReject{Path: x.Path, Error: fmt.Sprintf("%s: instance %s is already stored in record %s", x.Path, x.SOPInstanceUID, prev.ID)})
	}
	if mg.Added == 0 {
		if stored == nil {
			return nil, nil, fmt.Errorf("study %s has no instances", in.UID)
		}
		return &api.DicomStudyResult{ID: prev.ID.String(), StudyUID: in.UID, Series: len(mg.Study.Series), Instances: mg.Study.NumInstances(),
			Version: int(prev.Version), Unchanged: true, Size: stored.Manifest.Size()}, skipped, nil
	}
	meta, err := dicom.EncodeStudyMeta(mg.Study)
	if err != nil {
		return nil, nil, err
	}
	files := make([]records.FileSource, 0, len(mg.Files))
	for _, f := range mg.Files {
		if f.Prev < 0 {
			files = append(files, records.FileSource{Path: f.Name, Open: openSized(f.Path, f.Instance.Size)})
		} else {
			files = append(files, records.FileSource{Path: f.Name, Open: s.pipeFile(ctx, stored.Manifest, stored.Key, f.Prev)})
		}
	}
	req := records.AddRequest{Name: StudyName, MediaType: MediaType, Kind: Kind, Class: Class, Meta: meta, Files: files}
	var ar *records.AddResult
	if found {
		req.Prev = prev.ID
		ar, err = s.rec.Update(ctx, req)
	} else {
		ar, err = s.rec.Add(ctx, req)
	}
	if err != nil {
		return nil, nil, err
	}
	s.countStored(mg.Added)
	if err := s.idx.Put(ctx, ar.ID.String(), mg.Study); err != nil {
		return nil, nil, fmt.Errorf("record %s stored but not indexed: %w", ar.ID, err)
	}
	if found {
		if err := s.idx.Delete(ctx, prev.ID.String()); err != nil {
			s.log.Warn("dicom index: drop superseded version", "record", prev.ID, "err", err)
		}
	}
	out := &api.DicomStudyResult{ID: ar.ID.String(), StudyUID: in.UID, Series: len(mg.Study.Series), Instances: mg.Study.NumInstances(),
		Added: mg.Added, Version: ar.Version, Size: ar.Size}
	if found {
		out.Prev = prev.ID.String()
	}
	return out, skipped, nil
}

// pipeFile streams file i of an opened record through a pipe, so a new
// version re-encrypts the old instances without holding them in memory.
// Add closes the reader, which stops the writer if the add fails early.
func (s *Service) pipeFile(ctx context.Context, m *record.Manifest, key record.Key, i int) func() (io.Reader, error) {
	return func() (io.Reader, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(s.rec.ReadFiles(ctx, m, key, []int{i}, pw)) }()
		return pr, nil
	}
}

// openSized opens a file for Add lazily and fails the read if the file no
// longer has the size it had when it was parsed.
func openSized(path string, size int64) func() (io.Reader, error) {
	return func() (io.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &sizedReader{f: f, path: path, want: size}, nil
	}
}

type sizedReader struct {
	f    *os.File
	path string
	want int64
	n    int64
}

func (s *sizedReader) Read(b []byte) (int, error) {
	n, err := s.f.Read(b)
	s.n += int64(n)
	if s.n > s.want || (err == io.EOF && s.n != s.want) {
		return n, fmt.Errorf("%s changed while it was imported (was %d bytes)", s.path, s.want)
	}
	return n, err
}

func (s *sizedReader) Close() error { return s.f.Close() }

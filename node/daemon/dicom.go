package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// Record kind, ledger class and media type of a DICOM study record.
const (
	DicomKind      = "dicom-study"
	DicomClass     = "imaging"
	DicomMediaType = "application/dicom"
	// DicomProjectKeyFile is the default de-identification project key
	// (32 random bytes, 0600) in the repo.
	DicomProjectKeyFile = "dicom-project.key"
)

// dicomState is the per-daemon DICOM state: the encrypted study index and
// the lock that serialises read-modify-write of study versions.
type dicomState struct {
	mu  sync.Mutex
	idx *dicom.Index
}

// dicomIndexKey derives the node-local index key from the node's identity
// key: nothing more to persist, and it never leaves the node.
func (d *Daemon) dicomIndexKey() ([]byte, error) {
	raw, err := d.ident.Raw()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("medmesh dicom local index key v1"))
	return m.Sum(nil), nil
}

// dicomState returns the daemon's DICOM state, opening the index on first use.
func (d *Daemon) dicomState() (*dicomState, error) {
	d.dicomOnce.Do(func() {
		key, err := d.dicomIndexKey()
		if err != nil {
			d.dicomErr = err
			return
		}
		idx, err := dicom.NewIndex(d.Store.DS, key)
		if err != nil {
			d.dicomErr = err
			return
		}
		d.dicom = &dicomState{idx: idx}
	})
	return d.dicom, d.dicomErr
}

// DicomIndex returns the node's encrypted local study index.
func (d *Daemon) DicomIndex() (*dicom.Index, error) {
	st, err := d.dicomState()
	if err != nil {
		return nil, err
	}
	return st.idx, nil
}

// ImportDICOM parses the files and folders at paths (absolute; folders
// walked recursively) and stores each study as a "dicom-study" record, one
// file per instance, streamed from disk. A study the node already owns gets
// a new version holding the union of its instances and the new ones.
func (d *Daemon) ImportDICOM(ctx context.Context, paths []string) (*api.DicomImportResult, error) {
	if len(paths) == 0 {
		return nil, fault.Invalidf("name files or folders to import", "no paths to import")
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fault.Invalidf("the CLI sends absolute paths", "path %q is not absolute", p)
		}
	}
	st, err := d.dicomState()
	if err != nil {
		return nil, err
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
	for _, s := range studies {
		for _, in := range s.Instances() {
			res.Files[in.Path] = &api.DicomFileOutcome{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, StudyUID: s.UID}
		}
		sr, skipped, err := d.importStudy(ctx, st, s)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			for _, in := range s.Instances() {
				msg := fmt.Sprintf("%s: study not stored (nothing of it was kept): %v", in.Path, err)
				res.Files[in.Path].Err = msg
				res.Rejected = append(res.Rejected, api.DicomReject{Path: in.Path, Error: msg})
			}
			continue
		}
		res.Skipped = append(res.Skipped, skipped...)
		res.Studies = append(res.Studies, *sr)
		for _, in := range s.Instances() {
			if len(in.Warnings) > 0 {
				res.Warnings = append(res.Warnings, api.DicomWarning{Path: in.Path, Warning: in.Path + ": " + strings.Join(in.Warnings, "; ")})
			}
		}
	}
	return res, nil
}

// ownedStudy finds the newest version of the record this node owns for a
// study UID, through the index.
func (d *Daemon) ownedStudy(ctx context.Context, idx *dicom.Index, studyUID string) (ledger.RecordInfo, bool, error) {
	hits, err := idx.Query(ctx, dicom.Filter{StudyUID: studyUID})
	if err != nil {
		return ledger.RecordInfo{}, false, err
	}
	var best ledger.RecordInfo
	found := false
	for _, h := range hits {
		id, err := cid.Decode(h.RecordID)
		if err != nil {
			continue
		}
		info, ok := d.Ledger.Record(id)
		if !ok || info.Owner != d.self {
			continue
		}
		latest := d.latestVersion(id)
		if !found || latest.Version > best.Version {
			best, found = latest, true
		}
	}
	return best, found, nil
}

// openStudy opens a study record (newest readable version if version is 0)
// and decodes its study metadata, checking it against the manifest.
func (d *Daemon) openStudy(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, *dicom.Study, error) {
	return d.openStudyFor(ctx, id, version, "")
}

// openStudyFor is openStudy stating the purpose of the read (OpenFor).
func (d *Daemon) openStudyFor(ctx context.Context, id cid.Cid, version int, purpose string) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, *dicom.Study, error) {
	info, m, key, g, err := d.OpenFor(ctx, id, version, purpose)
	if err != nil {
		return info, nil, key, nil, nil, err
	}
	if m.Kind != DicomKind {
		return info, nil, key, nil, nil, fault.Invalidf("", "record %s is a %q record, not a DICOM study", info.ID, m.Kind)
	}
	// DecodeStudyMeta checks every UID with dicom.CheckUID, the rule the
	// import applied: UIDs read back are safe as file and URL path names.
	s, err := dicom.DecodeStudyMeta(m.Meta)
	if err != nil {
		return info, nil, key, nil, nil, fmt.Errorf("record %s: %w", info.ID, err)
	}
	if n := s.NumInstances(); n != len(m.Files) {
		return info, nil, key, nil, nil, fmt.Errorf("record %s: study metadata lists %d instances but the record has %d files", info.ID, n, len(m.Files))
	}
	return info, m, key, g, s, nil
}

// fileSource is where a study instance's bytes come from when a record is
// (re)built: a local file or a file of a previous version.
type fileSource struct {
	in   *dicom.InstanceRef
	path string // local file, or "" for a previous version's file
	old  int    // file index in the previous version
}

func (d *Daemon) importStudy(ctx context.Context, st *dicomState, s *dicom.Study) (*api.DicomStudyResult, []api.DicomReject, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	prev, found, err := d.ownedStudy(ctx, st.idx, s.UID)
	if err != nil {
		return nil, nil, err
	}
	merged := &dicom.Study{}
	src := map[*dicom.InstanceRef]fileSource{}
	var prevM *record.Manifest
	var prevKey record.Key
	have := map[string]bool{}
	if found {
		var old *dicom.Study
		prev, prevM, prevKey, _, old, err = d.openStudy(ctx, prev.ID, int(prev.Version))
		if err != nil {
			return nil, nil, fmt.Errorf("open the stored version of the study: %w", err)
		}
		merged = old
		for _, in := range old.Instances() {
			have[in.SOPInstanceUID] = true
			src[in] = fileSource{in: in, old: in.FileIndex}
		}
	}
	merged.Complete(s)
	var skipped []api.DicomReject
	added := 0
	for _, se := range s.Series {
		var dst *dicom.Series
		for _, x := range merged.Series {
			if x.UID == se.UID {
				dst = x
			}
		}
		for _, in := range se.Instances {
			if have[in.SOPInstanceUID] {
				skipped = append(skipped, api.DicomReject{Path: in.Path, Error: fmt.Sprintf("%s: instance %s is already stored in record %s", in.Path, in.SOPInstanceUID, prev.ID)})
				continue
			}
			if dst == nil {
				dst = &dicom.Series{UID: se.UID, Modality: se.Modality, BodyPart: se.BodyPart, Number: se.Number, Description: se.Description}
				merged.Series = append(merged.Series, dst)
			}
			cp := *in
			dst.Instances = append(dst.Instances, &cp)
			src[&cp] = fileSource{in: &cp, path: in.Path}
			have[in.SOPInstanceUID] = true
			added++
		}
	}
	if added == 0 {
		return &api.DicomStudyResult{ID: prev.ID.String(), StudyUID: s.UID, Series: len(merged.Series), Instances: merged.NumInstances(),
			Version: int(prev.Version), Unchanged: true, Size: prevM.Size()}, skipped, nil
	}
	dicom.SortStudy(merged)
	meta, err := dicom.EncodeStudyMeta(merged)
	if err != nil {
		return nil, nil, err
	}
	files := make([]records.FileSource, 0, merged.NumInstances())
	for _, in := range merged.Instances() {
		fs := src[in]
		name := in.SOPInstanceUID + ".dcm"
		for _, se := range merged.Series {
			for _, x := range se.Instances {
				if x == in {
					name = se.UID + "/" + name
				}
			}
		}
		if fs.path != "" {
			files = append(files, records.FileSource{Path: name, Open: openSized(fs.path, in.Size)})
		} else {
			files = append(files, records.FileSource{Path: name, Open: d.pipeFile(ctx, prevM, prevKey, fs.old)})
		}
	}
	req := records.AddRequest{Name: "DICOM study", MediaType: DicomMediaType, Kind: DicomKind, Class: DicomClass, Meta: meta, Files: files}
	var ar *records.AddResult
	if found {
		req.Prev = prev.ID
		ar, err = d.Update(ctx, req)
	} else {
		ar, err = d.Add(ctx, req)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := st.idx.Put(ctx, ar.ID.String(), merged); err != nil {
		return nil, nil, fmt.Errorf("record %s stored but not indexed: %w", ar.ID, err)
	}
	if found {
		if err := st.idx.Delete(ctx, prev.ID.String()); err != nil {
			d.log.Warn("dicom index: drop superseded version", "record", prev.ID, "err", err)
		}
	}
	out := &api.DicomStudyResult{ID: ar.ID.String(), StudyUID: s.UID, Series: len(merged.Series), Instances: merged.NumInstances(),
		Added: added, Version: ar.Version, Size: ar.Size}
	if found {
		out.Prev = prev.ID.String()
	}
	return out, skipped, nil
}

// pipeFile streams file i of an opened record through a pipe, so a new
// version re-encrypts the old instances without holding them in memory.
// Add closes the reader, which stops the writer if the add fails early.
func (d *Daemon) pipeFile(ctx context.Context, m *record.Manifest, key record.Key, i int) func() (io.Reader, error) {
	return func() (io.Reader, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(d.ReadFiles(ctx, m, key, []int{i}, pw)) }()
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

// QueryDICOM searches the local study index.
func (d *Daemon) QueryDICOM(ctx context.Context, f dicom.Filter) ([]api.DicomStudyHit, error) {
	var err error
	if f.From, err = normDate(f.From); err != nil {
		return nil, err
	}
	if f.To, err = normDate(f.To); err != nil {
		return nil, err
	}
	idx, err := d.DicomIndex()
	if err != nil {
		return nil, err
	}
	hits, err := idx.Query(ctx, f)
	if err != nil {
		return nil, err
	}
	out := []api.DicomStudyHit{}
	for _, h := range hits {
		mine := false
		if id, err := cid.Decode(h.RecordID); err == nil {
			if info, ok := d.Ledger.Record(id); ok {
				mine = info.Owner == d.self
			}
		}
		mods := h.Modalities
		if mods == nil {
			mods = []string{}
		}
		out = append(out, api.DicomStudyHit{ID: h.RecordID, StudyUID: h.StudyUID, PatientID: h.PatientID, PatientName: h.PatientName,
			Modality: strings.Join(mods, `\`), Modalities: mods, StudyDate: h.StudyDate, Description: h.Description,
			Instances: h.Instances, Mine: mine})
	}
	return out, nil
}

// normDate accepts YYYYMMDD or YYYY-MM-DD.
func normDate(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	n := strings.ReplaceAll(s, "-", "")
	if len(n) != 8 || strings.Trim(n, "0123456789") != "" {
		return "", fault.Invalidf("write dates as YYYYMMDD or YYYY-MM-DD", "bad date %q", s)
	}
	return n, nil
}

// ExportDICOM writes a study's original files, byte for byte, as
// dir/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm (only one series if series
// is set), each through a temporary file renamed into place once complete
// and verified. A grantee's read is audited.
func (d *Daemon) ExportDICOM(ctx context.Context, id cid.Cid, version int, dir, series, purpose string) (*api.DicomExportResult, error) {
	if !filepath.IsAbs(dir) {
		return nil, fault.Invalidf("the CLI sends absolute paths", "output folder %q is not absolute", dir)
	}
	info, m, key, g, s, err := d.openStudyFor(ctx, id, version, purpose)
	if err != nil {
		return nil, err
	}
	type job struct {
		se *dicom.Series
		in *dicom.InstanceRef
	}
	var jobs []job
	for _, se := range s.Series {
		if series != "" && se.UID != series {
			continue
		}
		for _, in := range se.Instances {
			jobs = append(jobs, job{se, in})
		}
	}
	if len(jobs) == 0 {
		return nil, fault.NotFoundf("`medmesh dicom query --study UID --json` lists the study", "study %s has no series %s", s.UID, series)
	}
	out := &api.DicomExportResult{ID: info.ID.String(), StudyUID: s.UID, Files: []string{}}
	for _, j := range jobs {
		sdir := filepath.Join(dir, s.UID, j.se.UID)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return out, fmt.Errorf("create %s: %w", sdir, err)
		}
		path := filepath.Join(sdir, j.in.SOPInstanceUID+".dcm")
		n, err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
			return d.ReadFiles(ctx, m, key, []int{j.in.FileIndex}, w)
		})
		if err != nil {
			return out, fmt.Errorf("export %s: %w", path, err)
		}
		out.Files = append(out.Files, path)
		out.Bytes += n
		out.Instances++
	}
	d.audit(ctx, info, purpose, g)
	d.indexGranted(ctx, info, s)
	return out, nil
}

// indexGranted adds a study this node read but does not own to its index.
func (d *Daemon) indexGranted(ctx context.Context, info ledger.RecordInfo, s *dicom.Study) {
	if info.Owner == d.self {
		return
	}
	idx, err := d.DicomIndex()
	if err == nil {
		err = idx.Put(ctx, info.ID.String(), s)
	}
	if err != nil {
		d.log.Warn("dicom index: add granted study", "record", info.ID, "err", err)
	}
}

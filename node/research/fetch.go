package research

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

// fetchStudy is one opened study of a fetch.
type fetchStudy struct {
	ref     *datasetRef
	ds      dataset.Study
	o       *imaging.Opened
	holders []peer.ID // the record's owner and replica holders
	left    atomic.Int64
	fetched atomic.Int64
}

type instanceJob struct {
	st  *fetchStudy
	se  *dicom.Series
	in  *dicom.InstanceRef
	rel string
}

// FetchDataset fetches every study of the named datasets into req.Dir as
// <StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm, in parallel across studies
// and instances (each read streams the instance's blocks from the study
// record's owner and replica holders over the bulk block protocol, falling
// back to bitswap; nothing fetched is kept), verifying each file's SHA-256
// against the record manifest, then writes manifest.csv. Every study read
// is audited on the ledger with purpose research. With req.Job set, its
// progress can be read with FetchProgress while it runs and for a minute
// after. onProgress, if set, is called after each instance, one call at a
// time, each with a snapshot at least as far along as the one before.
func (s *Service) FetchDataset(ctx context.Context, req api.DatasetFetchRequest, onProgress func(api.DatasetProgress)) (*api.DatasetFetchResult, error) {
	if !filepath.IsAbs(req.Dir) {
		return nil, fault.Invalidf("the CLI sends absolute paths", "output folder %q is not absolute", req.Dir)
	}
	if len(req.Datasets) == 0 {
		return nil, fault.Invalidf("", "name a dataset to fetch")
	}
	if req.Parallel <= 0 {
		req.Parallel = 8
	}
	if req.Parallel > 64 {
		req.Parallel = 64
	}
	if len(req.Job) > 64 {
		return nil, fault.Invalidf("", "job name too long")
	}
	run := &fetchRun{s: s, dir: req.Dir, cnt: &fetchCounters{start: time.Now()}, onProgress: onProgress}
	if req.Job != "" {
		s.fetches.add(req.Job, run.cnt)
		defer s.fetches.finish(run.cnt)
	}
	refs, err := s.resolve(ctx, req.Datasets)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		s.rec.ReadDone(ctx, r.info, ledger.PurposeResearch, r.g)
	}
	if err := os.MkdirAll(req.Dir, 0o755); err != nil {
		return nil, err
	}
	if run.state, err = openFetchState(req.Dir); err != nil {
		return nil, err
	}
	defer run.state.f.Close()
	studies, err := s.openStudies(ctx, refs, req.Parallel)
	if err != nil {
		return nil, err
	}
	run.cnt.studies.Store(int64(len(studies)))
	jobs := run.plan(studies)
	err = parallel(ctx, req.Parallel, len(jobs), func(ctx context.Context, i int) error { return run.fetch(ctx, jobs[i]) })
	if err != nil {
		// Studies partly read by this run are audited too.
		for _, fs := range studies {
			if fs.fetched.Load() > 0 && fs.left.Load() > 0 {
				s.rec.ReadDone(context.WithoutCancel(ctx), fs.o.Info, ledger.PurposeResearch, fs.o.Grant)
			}
		}
		return nil, err
	}
	csvPath := filepath.Join(req.Dir, "manifest.csv")
	if _, err := atomicfile.Write(csvPath, 0o600, func(w io.Writer) error { return writeDatasetCSV(w, jobs) }); err != nil {
		return nil, err
	}
	res := &api.DatasetFetchResult{DatasetProgress: run.cnt.snapshot(), Dir: req.Dir, CSV: csvPath, Datasets: []api.DatasetInfo{}}
	res.Done = true
	if res.Seconds > 0 {
		res.MBps = float64(res.BytesFetched) / 1e6 / res.Seconds
	}
	for _, r := range refs {
		res.Datasets = append(res.Datasets, s.refInfo(r))
	}
	return res, nil
}

// resolve finds the datasets a fetch names (IDs or names), each once.
func (s *Service) resolve(ctx context.Context, names []string) ([]*datasetRef, error) {
	var refs []*datasetRef
	seen := map[cid.Cid]bool{}
	for _, name := range names {
		rs, err := s.find(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if !seen[r.info.ID] {
				seen[r.info.ID] = true
				refs = append(refs, r)
			}
		}
	}
	return refs, nil
}

// openStudies opens every study of the datasets (manifest and study
// metadata, checked against the dataset's entry), k at a time.
func (s *Service) openStudies(ctx context.Context, refs []*datasetRef, k int) ([]*fetchStudy, error) {
	var studies []*fetchStudy
	uids := map[string]bool{}
	for _, r := range refs {
		for _, st := range r.man.Studies {
			if uids[st.StudyUID] {
				return nil, fmt.Errorf("study %s appears in two datasets", st.StudyUID)
			}
			uids[st.StudyUID] = true
			studies = append(studies, &fetchStudy{ref: r, ds: st})
		}
	}
	err := parallel(ctx, k, len(studies), func(ctx context.Context, i int) error {
		fs := studies[i]
		id, err := fs.ds.RecordID()
		if err != nil {
			return err
		}
		fs.o, err = s.img.Open(ctx, id, 0, ledger.PurposeResearch)
		if err != nil {
			return fmt.Errorf("study %s: %w", fs.ds.StudyUID, err)
		}
		if fs.o.Study.UID != fs.ds.StudyUID || fs.o.Study.NumInstances() != int(fs.ds.Instances) {
			return fmt.Errorf("study record %s does not match its dataset entry", id)
		}
		fs.holders = s.rec.Holders(fs.o.Info)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return studies, nil
}

// fetchRun is one fetch into one folder.
type fetchRun struct {
	s          *Service
	dir        string
	state      *fetchState
	cnt        *fetchCounters
	onProgress func(api.DatasetProgress)
	// progressMu serializes onProgress: the instances are fetched in
	// parallel, and a caller's callback need not be safe for concurrent
	// calls nor see an older snapshot after a newer one.
	progressMu sync.Mutex
}

// plan lists the instances of the opened studies, one job each, and counts
// them.
func (r *fetchRun) plan(studies []*fetchStudy) []instanceJob {
	var jobs []instanceJob
	for _, fs := range studies {
		for _, se := range fs.o.Study.Series {
			for _, in := range se.Instances {
				f := fs.o.Manifest.Files[in.FileIndex]
				jobs = append(jobs, instanceJob{st: fs, se: se, in: in, rel: filepath.Join(fs.o.Study.UID, se.UID, in.SOPInstanceUID+".dcm")})
				r.cnt.bytes.Add(f.Size)
				fs.left.Add(1)
			}
		}
	}
	r.cnt.instances.Store(int64(len(jobs)))
	return jobs
}

// fetch writes one instance into the folder, unless an earlier run did
// and the file is still as verified then.
func (r *fetchRun) fetch(ctx context.Context, j instanceJob) error {
	f := j.st.o.Manifest.Files[j.in.FileIndex]
	if r.state.verified(r.dir, j.rel, f.SHA256, f.Size) {
		r.cnt.skipped.Add(1)
		r.cnt.bytesDone.Add(f.Size)
		r.done(ctx, j.st)
		return nil
	}
	path := filepath.Join(r.dir, j.rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var h hash.Hash
	// Naming the holders sends even a one-chunk instance through the
	// bulk protocol (GetMany asks the DHT for bulk holders only from 4
	// blocks up); bitswap spread each block over every provider and
	// received 15-25% of them twice. The bulk path spreads instances
	// over the holders by CID (p2p's leaderFirst).
	n, err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
		h = sha256.New()
		return r.s.rec.ReadFiles(p2p.WithHolders(ctx, j.st.holders...), j.st.o.Manifest, j.st.o.Key, []int{j.in.FileIndex}, io.MultiWriter(w, h))
	})
	if err != nil {
		return fmt.Errorf("fetch %s: %w", j.rel, err)
	}
	if n != f.Size || !bytes.Equal(h.Sum(nil), f.SHA256[:]) {
		os.Remove(path)
		return fmt.Errorf("fetch %s: content does not match the record manifest", j.rel)
	}
	if err := r.state.add(stateEntry{Path: j.rel, SHA256: hex.EncodeToString(f.SHA256[:]), Size: n}); err != nil {
		return err
	}
	r.cnt.fetched.Add(1)
	r.cnt.bytesDone.Add(n)
	r.cnt.bytesFetched.Add(n)
	j.st.fetched.Add(1)
	r.done(ctx, j.st)
	return nil
}

// done counts an instance of fs as written (or verified), and the study
// as read once it was its last.
func (r *fetchRun) done(ctx context.Context, fs *fetchStudy) {
	if fs.left.Add(-1) == 0 {
		r.cnt.studiesDone.Add(1)
		// Every study read is on the audit trail, even one whose
		// files were all verified by an earlier, interrupted run.
		r.s.rec.ReadDone(context.WithoutCancel(ctx), fs.o.Info, ledger.PurposeResearch, fs.o.Grant)
	}
	if r.onProgress != nil {
		r.progressMu.Lock()
		r.onProgress(r.cnt.snapshot())
		r.progressMu.Unlock()
	}
}

func writeDatasetCSV(w io.Writer, jobs []instanceJob) error {
	rows := make([][]string, 0, len(jobs))
	for _, j := range jobs {
		f := j.st.o.Manifest.Files[j.in.FileIndex]
		rows = append(rows, []string{j.st.ds.Patient, j.st.o.Study.UID, j.se.UID, j.in.SOPInstanceUID, j.se.Modality, j.se.BodyPart,
			filepath.ToSlash(j.rel), fmt.Sprint(f.Size), hex.EncodeToString(f.SHA256[:]), j.st.ref.man.Name, fmt.Sprint(j.st.ref.man.Version)})
	}
	sort.Slice(rows, func(a, b int) bool { return rows[a][6] < rows[b][6] })
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"patient", "study_uid", "series_uid", "sop_instance_uid", "modality", "body_part", "path", "size", "sha256", "dataset", "version"}); err != nil {
		return err
	}
	if err := cw.WriteAll(rows); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// parallel runs f(0..n-1) on up to k goroutines; the first error cancels
// the rest and is returned.
func parallel(ctx context.Context, k, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	if k > n {
		k = n
	}
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

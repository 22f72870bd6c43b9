package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
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
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// DatasetStateFile, in the output folder, lists the instances a fetch has
// written and verified (one JSON object a line: path, sha256, size), so an
// interrupted fetch resumes without fetching them again.
const DatasetStateFile = ".medmesh-dataset-state.jsonl"

type fetchCounters struct {
	studies, studiesDone, instances, fetched, skipped, bytes, bytesDone, bytesFetched atomic.Int64
	start                                                                             time.Time
	done                                                                              atomic.Bool
}

func (c *fetchCounters) snapshot() api.DatasetProgress {
	return api.DatasetProgress{Studies: c.studies.Load(), StudiesDone: c.studiesDone.Load(), Instances: c.instances.Load(),
		Fetched: c.fetched.Load(), Skipped: c.skipped.Load(), Bytes: c.bytes.Load(), BytesDone: c.bytesDone.Load(),
		BytesFetched: c.bytesFetched.Load(), Seconds: time.Since(c.start).Seconds(), Done: c.done.Load()}
}

var fetchJobs sync.Map // job string -> *fetchCounters

// DatasetFetchProgress returns the progress of a running (or just
// finished) fetch job.
func (d *Daemon) DatasetFetchProgress(job string) (api.DatasetProgress, bool) {
	v, ok := fetchJobs.Load(job)
	if !ok {
		return api.DatasetProgress{}, false
	}
	return v.(*fetchCounters).snapshot(), true
}

type stateEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// fetchState is the resumable list of verified files.
type fetchState struct {
	mu   sync.Mutex
	f    *os.File
	have map[string]stateEntry
}

func openFetchState(dir string) (*fetchState, error) {
	path := filepath.Join(dir, DatasetStateFile)
	st := &fetchState{have: map[string]stateEntry{}}
	if b, err := os.ReadFile(path); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 4096), 1<<20)
		for sc.Scan() {
			var e stateEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Path != "" && len(e.SHA256) == 64 {
				st.have[e.Path] = e
			} // a torn last line (crash mid-write) is ignored
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st.f = f
	return st, nil
}

func (s *fetchState) add(e stateEntry) error {
	b, _ := json.Marshal(e)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(append(b, '\n')); err != nil {
		return err
	}
	s.have[e.Path] = e
	return s.f.Sync()
}

func (s *fetchState) verified(dir string, rel string, sum [32]byte, size int64) bool {
	s.mu.Lock()
	e, ok := s.have[rel]
	s.mu.Unlock()
	if !ok || e.SHA256 != hex.EncodeToString(sum[:]) || e.Size != size {
		return false
	}
	// Re-hash the local file: cheap next to a fetch, and it catches a file
	// changed or truncated since.
	f, err := os.Open(filepath.Join(dir, rel))
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return err == nil && n == size && bytes.Equal(h.Sum(nil), sum[:])
}

// fetchStudy is one opened study of a fetch.
type fetchStudy struct {
	ref     *datasetRef
	ds      dataset.Study
	info    ledger.RecordInfo
	m       *record.Manifest
	key     record.Key
	g       *ledger.Grant
	s       *dicom.Study
	holders []peer.ID // the record's owner and replica holders
	left    atomic.Int64
	fetched atomic.Int64
}

type fetchJob struct {
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
// against the record manifest, then writes manifest.csv. Every study read is audited on the
// ledger with purpose research. onProgress, if set, is called after each
// instance.
func (d *Daemon) FetchDataset(ctx context.Context, req api.DatasetFetchRequest, onProgress func(api.DatasetProgress)) (*api.DatasetFetchResult, error) {
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
	cnt := &fetchCounters{start: time.Now()}
	if req.Job != "" {
		if len(req.Job) > 64 {
			return nil, fault.Invalidf("", "job name too long")
		}
		fetchJobs.Store(req.Job, cnt)
		defer func() {
			cnt.done.Store(true)
			time.AfterFunc(time.Minute, func() { fetchJobs.Delete(req.Job) })
		}()
	}
	var refs []*datasetRef
	seen := map[cid.Cid]bool{}
	for _, name := range req.Datasets {
		rs, err := d.findDatasets(ctx, name)
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
	for _, r := range refs {
		d.audit(ctx, r.info, ledger.PurposeResearch, r.g)
	}
	if err := os.MkdirAll(req.Dir, 0o755); err != nil {
		return nil, err
	}
	state, err := openFetchState(req.Dir)
	if err != nil {
		return nil, err
	}
	defer state.f.Close()

	// Open every study (manifest + study metadata) in parallel.
	var studies []*fetchStudy
	uids := map[string]bool{}
	for _, r := range refs {
		for _, s := range r.man.Studies {
			if uids[s.StudyUID] {
				return nil, fmt.Errorf("study %s appears in two datasets", s.StudyUID)
			}
			uids[s.StudyUID] = true
			studies = append(studies, &fetchStudy{ref: r, ds: s})
		}
	}
	cnt.studies.Store(int64(len(studies)))
	if err := parallel(ctx, req.Parallel, len(studies), func(ctx context.Context, i int) error {
		fs := studies[i]
		id, err := fs.ds.RecordID()
		if err != nil {
			return err
		}
		o, err := d.imaging.Open(ctx, id, 0, ledger.PurposeResearch)
		if err != nil {
			return fmt.Errorf("study %s: %w", fs.ds.StudyUID, err)
		}
		fs.info, fs.m, fs.key, fs.g, fs.s = o.Info, o.Manifest, o.Key, o.Grant, o.Study
		if fs.s.UID != fs.ds.StudyUID || fs.s.NumInstances() != int(fs.ds.Instances) {
			return fmt.Errorf("study record %s does not match its dataset entry", id)
		}
		fs.holders = d.holders(fs.info)
		return nil
	}); err != nil {
		return nil, err
	}
	var jobs []fetchJob
	for _, fs := range studies {
		for _, se := range fs.s.Series {
			for _, in := range se.Instances {
				f := fs.m.Files[in.FileIndex]
				jobs = append(jobs, fetchJob{st: fs, se: se, in: in, rel: filepath.Join(fs.s.UID, se.UID, in.SOPInstanceUID+".dcm")})
				cnt.bytes.Add(f.Size)
				fs.left.Add(1)
			}
		}
	}
	cnt.instances.Store(int64(len(jobs)))
	finishStudy := func(ctx context.Context, fs *fetchStudy) {
		if fs.left.Add(-1) == 0 {
			cnt.studiesDone.Add(1)
			// Every study read is on the audit trail, even one whose
			// files were all verified by an earlier, interrupted run.
			d.audit(context.WithoutCancel(ctx), fs.info, ledger.PurposeResearch, fs.g)
		}
	}
	err = parallel(ctx, req.Parallel, len(jobs), func(ctx context.Context, i int) error {
		j := jobs[i]
		f := j.st.m.Files[j.in.FileIndex]
		if state.verified(req.Dir, j.rel, f.SHA256, f.Size) {
			cnt.skipped.Add(1)
			cnt.bytesDone.Add(f.Size)
			finishStudy(ctx, j.st)
			if onProgress != nil {
				onProgress(cnt.snapshot())
			}
			return nil
		}
		path := filepath.Join(req.Dir, j.rel)
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
			return d.ReadFiles(p2p.WithHolders(ctx, j.st.holders...), j.st.m, j.st.key, []int{j.in.FileIndex}, io.MultiWriter(w, h))
		})
		if err != nil {
			return fmt.Errorf("fetch %s: %w", j.rel, err)
		}
		if n != f.Size || !bytes.Equal(h.Sum(nil), f.SHA256[:]) {
			os.Remove(path)
			return fmt.Errorf("fetch %s: content does not match the record manifest", j.rel)
		}
		if err := state.add(stateEntry{Path: j.rel, SHA256: hex.EncodeToString(f.SHA256[:]), Size: n}); err != nil {
			return err
		}
		cnt.fetched.Add(1)
		cnt.bytesDone.Add(n)
		cnt.bytesFetched.Add(n)
		j.st.fetched.Add(1)
		finishStudy(ctx, j.st)
		if onProgress != nil {
			onProgress(cnt.snapshot())
		}
		return nil
	})
	if err != nil {
		// Studies partly read by this run are audited too.
		for _, fs := range studies {
			if fs.fetched.Load() > 0 && fs.left.Load() > 0 {
				d.audit(context.WithoutCancel(ctx), fs.info, ledger.PurposeResearch, fs.g)
			}
		}
		return nil, err
	}
	csvPath := filepath.Join(req.Dir, "manifest.csv")
	if _, err := atomicfile.Write(csvPath, 0o600, func(w io.Writer) error { return writeDatasetCSV(w, jobs) }); err != nil {
		return nil, err
	}
	res := &api.DatasetFetchResult{DatasetProgress: cnt.snapshot(), Dir: req.Dir, CSV: csvPath, Datasets: []api.DatasetInfo{}}
	res.Done = true
	if res.Seconds > 0 {
		res.MBps = float64(res.BytesFetched) / 1e6 / res.Seconds
	}
	for _, r := range refs {
		res.Datasets = append(res.Datasets, refInfo(d, r))
	}
	return res, nil
}

func writeDatasetCSV(w io.Writer, jobs []fetchJob) error {
	rows := make([][]string, 0, len(jobs))
	for _, j := range jobs {
		f := j.st.m.Files[j.in.FileIndex]
		rows = append(rows, []string{j.st.ds.Patient, j.st.s.UID, j.se.UID, j.in.SOPInstanceUID, j.se.Modality, j.se.BodyPart,
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

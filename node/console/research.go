package console

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// maxJobs bounds the dataset fetches the console remembers.
const maxJobs = 16

// fetchJob is one dataset fetch the console started.
type fetchJob struct {
	ID      string
	Dataset string // as asked: an ID or a name
	Name    string // its name
	Dir     string
	Started time.Time

	mu     sync.Mutex
	pr     api.DatasetProgress
	done   bool
	err    string
	result *api.DatasetFetchResult
}

// jobState is a fetch job as its page and progress bar see it.
type jobState struct {
	ID       string              `json:"job"`
	Dataset  string              `json:"dataset"`
	Name     string              `json:"name"`
	Dir      string              `json:"dir"`
	Progress api.DatasetProgress `json:"progress"`
	Done     bool                `json:"done"`
	Error    string              `json:"error,omitempty"`
	CSV      string              `json:"csv,omitempty"`
	Percent  int                 `json:"percent"`
}

func (j *fetchJob) state() jobState {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := jobState{ID: j.ID, Dataset: j.Dataset, Name: j.Name, Dir: j.Dir, Progress: j.pr, Done: j.done, Error: j.err}
	if j.result != nil {
		st.CSV = j.result.CSV
	}
	if j.pr.Bytes > 0 {
		st.Percent = int(100 * j.pr.BytesDone / j.pr.Bytes)
	}
	if j.done && j.err == "" {
		st.Percent = 100
	}
	return st
}

type fetchJobs struct {
	mu   sync.Mutex
	jobs []*fetchJob
}

func newFetchJobs() *fetchJobs { return &fetchJobs{} }

func (fj *fetchJobs) add(j *fetchJob) {
	fj.mu.Lock()
	defer fj.mu.Unlock()
	if len(fj.jobs) >= maxJobs {
		fj.jobs = fj.jobs[1:]
	}
	fj.jobs = append(fj.jobs, j)
}

func (fj *fetchJobs) get(id string) *fetchJob {
	fj.mu.Lock()
	defer fj.mu.Unlock()
	for _, j := range fj.jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

func (fj *fetchJobs) all() []jobState {
	fj.mu.Lock()
	jobs := slices.Clone(fj.jobs)
	fj.mu.Unlock()
	out := []jobState{}
	for i := len(jobs) - 1; i >= 0; i-- {
		out = append(out, jobs[i].state())
	}
	return out
}

type researchData struct {
	Available bool
	Datasets  []api.DatasetInfo
	Consents  []api.ConsentInfo
	Purposes  []string
	Jobs      []jobState
	Job       string
}

func (k *Console) researchPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := &researchData{Available: k.cfg.Research != nil, Purposes: ledger.Purposes(), Job: r.URL.Query().Get("job")}
	if d.Available {
		d.Datasets = k.cfg.Research.ListDatasets(r.Context())
		cs, err := k.cfg.Research.Consents(r.Context(), "", "")
		if err != nil {
			k.fail(w, r, s, err)
			return
		}
		d.Consents = cs
		d.Jobs = k.jobs.all()
	}
	k.render(w, http.StatusOK, "research", k.newView(r.Context(), s, "Research", "research", d))
}

func (k *Console) research() error {
	if k.cfg.Research == nil {
		return fault.Unavailablef("", "this node has no research service")
	}
	return nil
}

func (k *Console) addConsent(w http.ResponseWriter, r *http.Request, s *session) {
	if err := k.research(); err != nil {
		k.fail(w, r, s, err)
		return
	}
	f := r.PostForm
	c, err := k.cfg.Research.AddConsent(r.Context(), api.ConsentRequest{Patient: f.Get("patient"), Purpose: f.Get("purpose"),
		Modality: f.Get("modality"), BodyPart: f.Get("body_part"), Expires: f.Get("expires")})
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	s.addFlash("ok", fmt.Sprintf("Consent for %s recorded; the ledger names the patient only by pseudonym %s…", c.Purpose, c.Patient[:min(12, len(c.Patient))]))
	redirect(w, r, Prefix+"research")
}

func (k *Console) revokeConsent(w http.ResponseWriter, r *http.Request, s *session) {
	if err := k.research(); err != nil {
		k.fail(w, r, s, err)
		return
	}
	f := r.PostForm
	if _, err := k.cfg.Research.RevokeConsent(r.Context(), api.ConsentRequest{Patient: f.Get("patient"), Purpose: f.Get("purpose")}); err != nil {
		k.fail(w, r, s, err)
		return
	}
	s.addFlash("ok", "Consent withdrawn: datasets created from now on leave this patient's studies out.")
	redirect(w, r, Prefix+"research")
}

// startFetch starts fetching a dataset into a folder on this machine, in
// the background (it ends with the daemon at the latest).
func (k *Console) startFetch(w http.ResponseWriter, r *http.Request, s *session) {
	if err := k.research(); err != nil {
		k.fail(w, r, s, err)
		return
	}
	f := r.PostForm
	ds, dir := f.Get("dataset"), f.Get("dir")
	if ds == "" {
		k.fail(w, r, s, fault.Invalidf("choose a dataset", "no dataset chosen"))
		return
	}
	if !filepath.IsAbs(dir) {
		k.fail(w, r, s, fault.Invalidf("give a full path, such as /data/datasets/lung-ct", "the folder %q is not a full path", dir))
		return
	}
	j := &fetchJob{ID: secret()[:12], Dataset: ds, Name: ds, Dir: filepath.Clean(dir), Started: k.cfg.Now()}
	for _, d := range k.cfg.Research.ListDatasets(r.Context()) {
		if d.ID == ds {
			j.Name = fmt.Sprintf("%s v%d", d.Name, d.Version)
		}
	}
	k.jobs.add(j)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		res, err := k.cfg.Research.FetchDataset(k.ctx, api.DatasetFetchRequest{Datasets: []string{ds}, Dir: j.Dir}, func(p api.DatasetProgress) {
			j.mu.Lock()
			j.pr = p
			j.mu.Unlock()
		})
		j.mu.Lock()
		defer j.mu.Unlock()
		j.done = true
		if err != nil {
			j.err = err.Error()
			if context.Cause(k.ctx) != nil {
				j.err = "stopped: the daemon shut down"
			}
			return
		}
		j.result, j.pr = res, res.DatasetProgress
	}()
	redirect(w, r, Prefix+"research?job="+j.ID)
}

func (k *Console) fetchProgress(w http.ResponseWriter, r *http.Request, s *session) {
	j := k.jobs.get(r.PathValue("job"))
	if j == nil {
		plain(w, http.StatusNotFound, "no such fetch")
		return
	}
	jsonReply(w, j.state())
}

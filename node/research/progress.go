package research

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// fetchCounters are a fetch's progress, updated by its workers.
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

// keepFinished is how long a finished fetch's progress stays readable: the
// CLI's last poll may come after the fetch returned.
const keepFinished = time.Minute

// fetchJobs is the progress of the service's named fetches: running ones,
// and finished ones for keepFinished. It belongs to one service, so two
// nodes in one process never see each other's jobs; finished jobs are
// dropped when the registry is next used (no timers).
type fetchJobs struct {
	mu   sync.Mutex
	jobs map[string]*namedFetch
}

type namedFetch struct {
	cnt   *fetchCounters
	ended time.Time // zero while running
}

// add registers a running fetch under name (replacing an earlier job of
// that name).
func (j *fetchJobs) add(name string, c *fetchCounters) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.prune(time.Now())
	if j.jobs == nil {
		j.jobs = map[string]*namedFetch{}
	}
	j.jobs[name] = &namedFetch{cnt: c}
}

// finish marks the fetch counted by c as done.
func (j *fetchJobs) finish(c *fetchCounters) {
	c.done.Store(true)
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, job := range j.jobs {
		if job.cnt == c {
			job.ended = time.Now()
		}
	}
}

// get returns a job's progress.
func (j *fetchJobs) get(name string) (api.DatasetProgress, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.prune(time.Now())
	job, ok := j.jobs[name]
	if !ok {
		return api.DatasetProgress{}, false
	}
	return job.cnt.snapshot(), true
}

func (j *fetchJobs) prune(now time.Time) {
	for name, job := range j.jobs {
		if !job.ended.IsZero() && now.Sub(job.ended) > keepFinished {
			delete(j.jobs, name)
		}
	}
}

// FetchProgress returns the progress of a running (or just finished) fetch
// job (api.DatasetFetchRequest.Job).
func (s *Service) FetchProgress(job string) (api.DatasetProgress, bool) {
	return s.fetches.get(job)
}

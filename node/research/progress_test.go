package research

import (
	"testing"
	"time"
)

// TestFetchJobs: a named fetch's progress is readable while it runs and
// for keepFinished after it ends, then dropped; each service has its own
// jobs (no state shared between nodes in one process).
func TestFetchJobs(t *testing.T) {
	var a, b fetchJobs
	c := &fetchCounters{start: time.Now()}
	c.instances.Store(12)
	c.fetched.Store(3)
	a.add("job1", c)
	p, ok := a.get("job1")
	if !ok || p.Instances != 12 || p.Fetched != 3 || p.Done {
		t.Fatalf("running job: %+v %v", p, ok)
	}
	if _, ok := b.get("job1"); ok {
		t.Fatal("another service sees the job")
	}
	if _, ok := a.get("job2"); ok {
		t.Fatal("unknown job found")
	}
	a.finish(c)
	if p, ok := a.get("job1"); !ok || !p.Done {
		t.Fatalf("finished job: %+v %v", p, ok)
	}
	// A second fetch under the same name replaces the first, and the
	// first one finishing does not end it.
	c2 := &fetchCounters{start: time.Now()}
	a.add("job1", c2)
	a.finish(c)
	if p, _ := a.get("job1"); p.Done {
		t.Fatal("the replaced job's end ended its successor")
	}
	a.finish(c2)
	a.mu.Lock()
	a.prune(time.Now().Add(keepFinished / 2))
	kept := len(a.jobs)
	a.prune(time.Now().Add(keepFinished + time.Second))
	left := len(a.jobs)
	a.mu.Unlock()
	if kept != 1 || left != 0 {
		t.Fatalf("finished jobs kept %d then %d", kept, left)
	}
}

// TestFetchJobsRunningNotPruned: a running job stays however long it runs.
func TestFetchJobsRunningNotPruned(t *testing.T) {
	var a fetchJobs
	a.add("long", &fetchCounters{start: time.Now()})
	a.mu.Lock()
	a.prune(time.Now().Add(24 * time.Hour))
	n := len(a.jobs)
	a.mu.Unlock()
	if n != 1 {
		t.Fatal("a running job was dropped")
	}
}

package pacs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// C-STORE: every instance is written, as sent, to a Part 10 file in the
// repo's inbox (Dir/dicom-inbox, 0700) and checked (it parses, its UIDs
// are the command's and usable) before it is acknowledged. Instances wait
// there per study; once the associations that brought a study have ended
// and nothing more has arrived for it for Settings.StoreDelay, the study is
// stored, grouped exactly as `medmesh dicom import` groups a folder: one
// record per study, a new version of a study the node already stores. So
// an association may carry several studies, and a study sent over several
// associations in a row ends as one version.
//
// A new study is encrypted and stored while it arrives (imaging's
// StudyWriter, fed by one goroutine per study), so that when its last
// association ends only its manifest is left to write; a study the node
// already stores, or one whose stream failed, is imported from the inbox
// at the end (imaging's Import merges it into a new version).
//
// An acknowledged instance is never lost: what a stopped or killed daemon
// left in the inbox is stored when it starts again, and a study that
// could not be stored (a full disk) stays in the inbox and is tried again.
// The inbox holds instances in clear, as the staging of `dicom import` and
// STOW-RS does, only until they are stored encrypted.

// InboxDir is the inbox folder in the repo.
const InboxDir = "dicom-inbox"

const incomingDir = ".incoming" // files being received, not yet acknowledged

// retryAfter is how long a study that could not be stored waits before
// the next attempt.
const retryAfter = time.Minute

type inbox struct {
	s     *Service
	dir   string
	retry time.Duration // after a failed import

	mu      sync.Mutex
	open    map[string]*bucket                          // by Study Instance UID: receiving
	queued  []*bucket                                   // waiting for their delay (or a retry)
	byAssoc map[*dimse.AssociationInfo]map[*bucket]bool // buckets an open association brought instances to
	seq     int
	stop    bool
	wake    chan struct{}
	idle    *sync.Cond // signalled when nothing is being stored
	busy    bool
	bufs    sync.Pool // copy buffers of receive
}

// bucket is one study's instances received since its last import.
type bucket struct {
	study string
	dir   string
	n     int
	size  int64
	last  time.Time // last arrival, or end of the last association that brought one
	live  int       // open associations that brought instances
	retry time.Time // after a failed import: not before

	// The study's stream (a new study is stored as it arrives): a queue
	// of received instances for its writer goroutine.
	q       []*dicom.Instance
	closed  bool
	wake    *sync.Cond // on in.mu
	wdone   chan struct{}
	w       *imaging.StudyWriter // nil: imported from the inbox at the end
	streamN int                  // instances the writer stored
}

func newInbox(s *Service) *inbox {
	in := &inbox{s: s, dir: filepath.Join(s.cfg.Dir, InboxDir), retry: retryAfter, open: map[string]*bucket{},
		byAssoc: map[*dimse.AssociationInfo]map[*bucket]bool{}, wake: make(chan struct{}, 1)}
	in.idle = sync.NewCond(&in.mu)
	in.bufs.New = func() any { b := make([]byte, 256<<10); return &b }
	return in
}

// load creates the inbox, drops files whose reception never completed
// (never acknowledged) and queues what a stopped daemon left.
func (in *inbox) load() error {
	if err := os.MkdirAll(filepath.Join(in.dir, incomingDir), 0o700); err != nil {
		return fmt.Errorf("dicom inbox: %w", err)
	}
	if err := os.Chmod(in.dir, 0o700); err != nil {
		return fmt.Errorf("dicom inbox: %w", err)
	}
	inc, err := os.ReadDir(filepath.Join(in.dir, incomingDir))
	if err != nil {
		return fmt.Errorf("dicom inbox: %w", err)
	}
	for _, e := range inc {
		os.Remove(filepath.Join(in.dir, incomingDir, e.Name()))
	}
	ents, err := os.ReadDir(in.dir)
	if err != nil {
		return fmt.Errorf("dicom inbox: %w", err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		files, err := os.ReadDir(filepath.Join(in.dir, e.Name()))
		if err != nil {
			return fmt.Errorf("dicom inbox: %w", err)
		}
		if len(files) == 0 {
			os.Remove(filepath.Join(in.dir, e.Name()))
			continue
		}
		in.queued = append(in.queued, &bucket{dir: filepath.Join(in.dir, e.Name()), n: len(files)})
		in.s.m.pending.Add(float64(len(files)))
	}
	if len(in.queued) > 0 {
		in.s.log.Info("dicom: storing instances received before the last stop", "studies", len(in.queued))
		in.kick()
	}
	return nil
}

func (in *inbox) kick() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// Store implements dimse.StoreHandler.
func (s *Service) Store(ctx context.Context, req *dimse.StoreRequest, data io.Reader) error {
	if !s.led.IsMember(s.cfg.Self) {
		s.m.received.WithLabelValues("refused").Inc()
		return dimse.NewStatus(dimse.StatusOutOfResources, "node not yet a member of its network: nothing can be stored")
	}
	err := s.in.receive(req, data)
	if err != nil {
		s.m.received.WithLabelValues("refused").Inc()
		return err
	}
	s.m.received.WithLabelValues("accepted").Inc()
	return nil
}

// receive writes one instance to the inbox, checks it and files it under
// its study.
func (in *inbox) receive(req *dimse.StoreRequest, data io.Reader) error {
	f, err := os.CreateTemp(filepath.Join(in.dir, incomingDir), "*.dcm")
	if err != nil {
		return fmt.Errorf("dicom inbox: %w", err)
	}
	tmp := f.Name()
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmp)
		}
	}()
	p10, err := dimse.Part10(req.FileMeta(), data)
	if err != nil {
		f.Close()
		return err
	}
	// PDUs bring up to dicom.max_pdu bytes at a time: a buffer of that
	// order writes an instance in a few syscalls, not one per 32 KiB.
	buf := in.bufs.Get().(*[]byte)
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, io.LimitReader(p10, dicom.MaxFileSize+1), *buf)
	in.bufs.Put(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dicom inbox: write %s: %w", req.SOPInstanceUID, err)
	}
	if n > dicom.MaxFileSize {
		return dimse.NewStatus(dimse.StatusOutOfResources, fmt.Sprintf("instance larger than %d bytes", int64(dicom.MaxFileSize)))
	}
	inst, err := dicom.ParseFile(tmp)
	if err != nil {
		var pe *dicom.ParseError
		if errors.As(err, &pe) {
			return dimse.NewStatus(dimse.StatusUnableToProcess, "cannot understand: "+pe.Reason.Error())
		}
		return err
	}
	if inst.SOPInstanceUID != req.SOPInstanceUID || inst.SOPClassUID != req.SOPClassUID {
		return dimse.NewStatus(dimse.StatusIdentifierMismatch, "data set's SOP Class/Instance UID differ from the command's")
	}
	if inst.StudyInstanceUID == "" || inst.SeriesInstanceUID == "" {
		return dimse.NewStatus(dimse.StatusIdentifierMismatch, "no Study or Series Instance UID: cannot be filed in a study")
	}
	for _, u := range []string{inst.StudyInstanceUID, inst.SeriesInstanceUID, inst.SOPInstanceUID, inst.SOPClassUID} {
		if _, err := dicom.CheckUID(u); err != nil {
			return dimse.NewStatus(dimse.StatusIdentifierMismatch, "unusable UID: "+err.Error())
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	b := in.open[inst.StudyInstanceUID]
	if b == nil {
		in.seq++
		b = &bucket{study: inst.StudyInstanceUID, dir: filepath.Join(in.dir, fmt.Sprintf("%d-%06d", time.Now().UnixNano(), in.seq)),
			wake: sync.NewCond(&in.mu), wdone: make(chan struct{})}
		if err := os.Mkdir(b.dir, 0o700); err != nil {
			return fmt.Errorf("dicom inbox: %w", err)
		}
		in.open[b.study] = b
		go in.write(b)
	}
	dst := filepath.Join(b.dir, inst.SOPInstanceUID+".dcm")
	_, statErr := os.Stat(dst)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("dicom inbox: %w", err)
	}
	keep = true
	if statErr != nil { // a resent instance replaces the one waiting
		b.n++
		in.s.m.pending.Inc()
	}
	inst.Path = dst
	b.q = append(b.q, inst)
	b.wake.Signal()
	b.size += n
	b.last = time.Now()
	if a := req.Association; a != nil {
		m := in.byAssoc[a]
		if m == nil {
			m = map[*bucket]bool{}
			in.byAssoc[a] = m
		}
		if !m[b] {
			m[b] = true
			b.live++
		}
	}
	in.s.m.receivedB.Add(float64(n))
	return nil
}

// ended is called when an association ends: the studies it brought wait
// their delay from now.
func (in *inbox) ended(a *dimse.AssociationInfo) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for b := range in.byAssoc[a] {
		b.live--
		b.last = time.Now()
	}
	delete(in.byAssoc, a)
	in.kick()
}

// due moves the open buckets whose delay has passed to the queue and
// returns the first queued bucket that may be stored now (nil if none),
// and how long until the next one may.
func (in *inbox) due(now time.Time) (*bucket, time.Duration) {
	delay := in.s.set.StoreDelay
	next := time.Duration(-1)
	soonest := func(d time.Duration) {
		if next < 0 || d < next {
			next = d
		}
	}
	for k, b := range in.open {
		if b.live > 0 {
			continue
		}
		if wait := b.last.Add(delay).Sub(now); wait > 0 && !in.stop {
			soonest(wait)
			continue
		}
		delete(in.open, k)
		in.queued = append(in.queued, b)
	}
	for i, b := range in.queued {
		if wait := b.retry.Sub(now); wait > 0 {
			if !in.stop { // when stopping, a failed study waits for the next start
				soonest(wait)
			}
			continue
		}
		in.queued = append(in.queued[:i:i], in.queued[i+1:]...)
		return b, 0
	}
	return nil, next
}

// run stores studies as they become due, one at a time, until ctx ends.
func (in *inbox) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		in.mu.Lock()
		b, wait := in.due(time.Now())
		if b != nil {
			in.busy = true
		}
		in.mu.Unlock()
		if b != nil {
			in.store(ctx, b)
			in.mu.Lock()
			in.busy = false
			in.idle.Broadcast()
			in.mu.Unlock()
			continue
		}
		if wait < 0 {
			wait = time.Hour
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-in.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// closing makes every waiting study due at once and waits (up to a
// minute) for them to be stored; what is left is stored at the next
// start.
func (in *inbox) closing() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.stop = true
	late := false
	tm := time.AfterFunc(time.Minute, func() {
		in.mu.Lock()
		late = true
		in.idle.Broadcast()
		in.mu.Unlock()
	})
	defer tm.Stop()
	for !late && (in.busy || len(in.open) > 0 || in.readyLocked()) {
		in.kick()
		in.idle.Wait()
	}
	// What is left (the minute ran out, or a failed study waits for its
	// retry) stays in the inbox for the next start: stop its writers.
	var left []*bucket
	for _, b := range in.open {
		left = append(left, b)
	}
	left = append(left, in.queued...)
	for _, b := range left {
		if b.wake != nil {
			b.closed = true
			b.wake.Broadcast()
		}
	}
	in.mu.Unlock()
	for _, b := range left {
		if b.wake == nil {
			continue
		}
		<-b.wdone
		if b.w != nil {
			b.w.Abort()
			b.w = nil
		}
	}
	in.mu.Lock()
}

// readyLocked reports whether a queued study may be stored now (not
// waiting for a retry).
func (in *inbox) readyLocked() bool {
	now := time.Now()
	for _, b := range in.queued {
		if !b.retry.After(now) {
			return true
		}
	}
	return false
}

// write is a study's writer goroutine: it stores each received instance
// as it is queued, until the bucket is closed. If the study cannot be
// streamed (it is already stored) or an instance fails, it stops writing
// and the study is imported from the inbox at the end.
func (in *inbox) write(b *bucket) {
	defer close(b.wdone)
	ctx := in.s.ctx
	w, err := in.s.img.WriteStudy(ctx, b.study)
	if err != nil {
		w = nil
		if !errors.Is(err, imaging.ErrStudyStored) {
			in.s.log.Warn("dicom: cannot store the study as it arrives; it is imported when complete", "study", b.study, "err", err)
		}
	}
	in.mu.Lock()
	b.w = w
	in.mu.Unlock()
	for {
		in.mu.Lock()
		for len(b.q) == 0 && !b.closed {
			b.wake.Wait()
		}
		if len(b.q) == 0 {
			in.mu.Unlock()
			return
		}
		inst := b.q[0]
		b.q = b.q[1:]
		w = b.w
		in.mu.Unlock()
		if w == nil {
			continue // drain: imported at the end
		}
		added, err := w.Add(ctx, inst)
		if err != nil {
			in.s.log.Warn("dicom: storing an instance as it arrived failed; the study is imported when complete", "study", b.study, "sop", inst.SOPInstanceUID, "err", err)
			w.Abort()
			in.mu.Lock()
			b.w = nil
			in.mu.Unlock()
			continue
		}
		if added {
			in.mu.Lock()
			b.streamN++
			in.mu.Unlock()
		}
	}
}

// finishStream closes a bucket's queue, waits for its writer and, if the
// study was streamed, finishes it. ok is false when the study must be
// imported from the inbox instead.
func (in *inbox) finishStream(ctx context.Context, b *bucket) bool {
	if b.wake == nil {
		return false // left by a stopped daemon: imported
	}
	in.mu.Lock()
	b.closed = true
	b.wake.Signal()
	in.mu.Unlock()
	<-b.wdone
	in.mu.Lock()
	w := b.w
	b.w = nil
	in.mu.Unlock()
	if w == nil {
		return false
	}
	start := time.Now()
	res, err := w.Finish(ctx)
	if err != nil {
		in.s.log.Warn("dicom: storing a streamed study failed; it is imported from the inbox", "study", b.study, "err", err)
		return false
	}
	in.s.log.Info("dicom: stored received study", "study", res.StudyUID, "record", res.ID, "version", res.Version,
		"added", res.Added, "instances", res.Instances, "finish", time.Since(start).Round(time.Millisecond))
	in.s.m.stored.WithLabelValues("stored").Add(float64(res.Added))
	in.s.m.stored.WithLabelValues("duplicate").Add(float64(b.n - res.Added))
	in.s.m.pending.Sub(float64(b.n))
	if err := os.RemoveAll(b.dir); err != nil {
		in.s.log.Warn("dicom: remove stored inbox folder", "dir", b.dir, "err", err)
	}
	return true
}

// store stores one study: finishes its stream, or imports its instances
// from the inbox. On success the bucket's folder is removed; on failure
// it stays queued and is tried again later.
func (in *inbox) store(ctx context.Context, b *bucket) {
	if in.finishStream(ctx, b) {
		return
	}
	start := time.Now()
	res, err := in.s.img.Import(ctx, []string{b.dir})
	if err != nil {
		in.s.m.storeErrors.Inc()
		in.s.log.Error("dicom: storing received instances failed; they stay in the inbox and are tried again", "study", b.study,
			"instances", b.n, "dir", b.dir, "retry_in", in.retry, "err", err)
		in.mu.Lock()
		b.retry = time.Now().Add(in.retry)
		in.queued = append(in.queued, b)
		in.mu.Unlock()
		return
	}
	added, dup := 0, len(res.Skipped)
	for _, st := range res.Studies {
		added += st.Added
	}
	for _, st := range res.Studies {
		in.s.log.Info("dicom: stored received study", "study", st.StudyUID, "record", st.ID, "version", st.Version,
			"added", st.Added, "instances", st.Instances, "took", time.Since(start).Round(time.Millisecond))
	}
	in.s.m.stored.WithLabelValues("stored").Add(float64(added))
	in.s.m.stored.WithLabelValues("duplicate").Add(float64(dup))
	if len(res.Rejected) > 0 {
		in.s.m.stored.WithLabelValues("rejected").Add(float64(len(res.Rejected)))
		keep := filepath.Join(in.dir, ".rejected")
		os.MkdirAll(keep, 0o700)
		var paths []string
		for _, r := range res.Rejected {
			paths = append(paths, r.Path)
			os.Rename(r.Path, filepath.Join(keep, filepath.Base(r.Path)))
		}
		sort.Strings(paths)
		in.s.log.Error("dicom: received instances could not be stored; kept in the inbox's .rejected folder", "count", len(paths),
			"first", res.Rejected[0].Error)
	}
	in.s.m.pending.Sub(float64(b.n))
	if err := os.RemoveAll(b.dir); err != nil {
		in.s.log.Warn("dicom: remove stored inbox folder", "dir", b.dir, "err", err)
	}
}

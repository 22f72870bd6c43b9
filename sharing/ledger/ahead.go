package ledger

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Entries from the future. An entry's clock is its author's word: the
// rules only require it to be after its parents', so every node reaches
// the same verdict whenever the entry arrives. But the clock of every
// later entry must be after it too, and the rules judge lifetimes against
// it (a grant may not expire before it is made, nor an emergency grant
// more than 24 hours after; a read claim's time must fall after its
// grant's). One entry a member signed with a clock a century ahead, once
// applied, would carry every later entry's clock with it: no grant with
// an expiry could be made any more on any node, and an emergency grant's
// 24 hours would end a century from now by every node's clock.
//
// So a node holds back an entry whose clock is more than MaxClockAhead
// ahead of its own: it neither applies, stores, buffers nor forwards it,
// and does not reject it either (the verdict would then depend on when it
// arrived). A later sync offers it again, and it applies once this node's
// clock is within MaxClockAhead of it. An entry of an honest node whose
// clock runs fast is delayed by the difference; a century-ahead one waits
// a century. The same holds for its descendants, whose clocks are later
// still. Each node logs the first entry it holds back from an author
// (then at most once a minute), counts them
// (medmesh_ledger_entries_ahead_total), and `medmesh health` names the
// authors held back in the last hour: when that is most members, it is
// this node's clock that is behind.
//
// Entries from the past are applied as they come (their parents vouch for
// their clocks), but one whose parents are far behind the heads costs every
// node a walk of the history since them; reportLate counts and logs those
// (Core.TakeLate) the same way.

// MaxClockAhead is how far ahead of a node's clock an entry's clock may be
// for the node to apply it now (see ahead.go).
const MaxClockAhead = 10 * time.Minute

// ErrAhead reports an entry held back because its clock is ahead of this
// node's by more than MaxClockAhead. It wraps ErrPending: a later sync
// offers the entry again.
var ErrAhead = fmt.Errorf("%w (its clock is more than %s ahead of this node's: held back until this node's clock catches up with it)", ErrPending, MaxClockAhead)

// aheadLogEvery is the most often a node logs entries held back from one
// author.
const aheadLogEvery = time.Minute

// aheadWindow is how long an author stays in ClockAhead after its last
// entry held back.
const aheadWindow = time.Hour

// reportLate counts and logs entries judged far behind the heads
// (Core.TakeLate), per author at most once every aheadLogEvery.
func (l *Ledger) reportLate(late []LateEntry) {
	now := l.now()
	for _, w := range late {
		l.met.late.Inc()
		if l.lateLog.seen(w.Author, now) {
			l.log.Warn("entry judged far behind the heads", "entry", w.Entry.String(), "author", w.Author.String(), "type", w.Type, "behind", w.Behind,
				"hint", "its parents were that many entries behind this node's heads, and judging it walked them: its author appended without having caught up (back from a long absence), or is making every node walk the history on purpose; if one member's entries keep doing this, the admin can remove it")
		}
	}
}

// aheadLog remembers, per author, when an entry of it was last noted (held
// back for its clock, or judged far behind) and when that was last logged.
type aheadLog struct {
	mu      sync.Mutex
	authors map[peer.ID]aheadNote
}

type aheadNote struct{ at, logged time.Time }

// seen notes an entry of author at now and reports whether to log it: the
// first from its author, then at most once every aheadLogEvery.
func (a *aheadLog) seen(author peer.ID, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.authors == nil {
		a.authors = map[peer.ID]aheadNote{}
	}
	n := a.authors[author]
	log := now.Sub(n.logged) >= aheadLogEvery
	n.at = now
	if log {
		n.logged = now
	}
	a.authors[author] = n
	return log
}

// isAhead reports whether e's clock is more than MaxClockAhead after now.
func isAhead(e *Entry, now time.Time) bool {
	return int64(e.Clock.Wall) > now.Add(MaxClockAhead).UnixMilli()
}

// ClockAhead lists the authors of entries this node held back in the last
// hour because their clocks were more than MaxClockAhead ahead of its own,
// sorted.
func (l *Ledger) ClockAhead() []peer.ID {
	now := l.now()
	l.ahead.mu.Lock()
	defer l.ahead.mu.Unlock()
	var out []peer.ID
	for p, n := range l.ahead.authors {
		if now.Sub(n.at) > aheadWindow {
			delete(l.ahead.authors, p)
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// holdBackAhead splits es into the entries to ingest now and, in results,
// the ErrAhead result of each entry held back (nil elsewhere); it counts
// and logs those.
func (l *Ledger) holdBackAhead(es []*Entry) ([]*Entry, []Result) {
	now := l.now()
	var results []Result
	kept := es
	for i, e := range es {
		if !isAhead(e, now) {
			if results != nil {
				kept = append(kept, e)
			}
			continue
		}
		if results == nil {
			results = make([]Result, len(es))
			kept = append([]*Entry(nil), es[:i]...)
		}
		results[i] = Result{Status: Pending, Err: ErrAhead}
		l.met.ahead.Inc()
		if l.ahead.seen(e.Author, now) {
			by := time.UnixMilli(int64(e.Clock.Wall)).Sub(now)
			l.log.Warn("entry held back: its clock is ahead of this node's", "entry", e.cid.String(), "author", e.Author.String(),
				"type", e.Type, "ahead", by.Round(time.Second).String(), "max", MaxClockAhead.String(),
				"hint", "it applies once this node's clock is within the max of it; if entries of most members are held back, this node's clock is behind: check its time synchronisation (NTP)")
		}
	}
	return kept, results
}

package ledger

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/ipfs/go-cid"
)

// A ledger that catches up a long history caches the metadata of every
// entry it applies (dag.cache, up to maxNodeCache nodes) and the answers
// of its causality walks: the walks of a catch-up lean on them, and they
// are what a node's heap grew by. Once the cache has not grown for
// trimQuiet (nothing applied, no walk into uncached history, as when this
// node serves a peer's catch-up), they are let go, and when that frees a
// catch-up's worth the memory goes back to the system at once rather than
// at the runtime's pace: a node that synced 100,000 entries it neither
// owns nor holds otherwise idles at twice the RSS of the same node
// restarted. An idle node's syncs read heads it has cached: no growth.
// Ten seconds: a catch-up grows the cache continuously, and a trickle of
// entries after a trim refills fewer than trimFloor, so the next trims are
// no-ops; the memory goes back once per burst.
const (
	trimEvery = 5 * time.Second
	trimQuiet = 10 * time.Second
	// trimFloor is the number of cached nodes left alone: a quiet node's
	// syncs read a few heads, not worth a trim.
	trimFloor = 4096
	// releaseAt is the number of nodes dropped from which the memory is
	// returned to the system (debug.FreeOSMemory: a full collection).
	releaseAt = 1 << 14
)

// trimState is what the trim loop last saw of the node cache.
type trimState struct {
	added uint64    // dag.added then
	since time.Time // when it was first seen at that count
}

// trimLoop trims the caches every trimEvery while the ledger is quiet.
func (l *Ledger) trimLoop(ctx context.Context) {
	l.every(ctx, trimEvery, func() { l.trimIfQuiet(trimFloor, releaseAt) })
}

// trimIfQuiet drops the DAG caches when the node cache has not grown for
// trimQuiet and holds more than floor nodes, returns the memory to the
// system when at least release nodes went, and returns how many did.
func (l *Ledger) trimIfQuiet(floor, release int) int {
	now := l.now()
	l.mu.Lock()
	if added := l.core.d.added; added != l.trim.added || l.trim.since.IsZero() {
		l.trim = trimState{added: added, since: now}
		l.mu.Unlock()
		return 0
	}
	if now.Sub(l.trim.since) < trimQuiet {
		l.mu.Unlock()
		return 0
	}
	n := l.core.d.trim(floor)
	l.mu.Unlock()
	if n >= release {
		debug.FreeOSMemory()
		l.log.Info("ledger quiet: let its caches go", "nodes", n)
	}
	return n
}

// trim drops the node and ancestry caches when the node cache holds more
// than floor nodes, and returns how many nodes it held. New maps, not
// clear: a cleared map keeps its buckets.
func (d *dag) trim(floor int) int {
	n := len(d.cache)
	if n <= floor {
		return 0
	}
	d.cache = make(map[cid.Cid]*node)
	d.anc = make(map[[2]cid.Cid]bool)
	return n
}

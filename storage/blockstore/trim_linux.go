//go:build linux

package blockstore

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Badger writes its value log by copying into a shared, writable memory
// mapping of each .vlog file and keeps every file mapped while the database
// is open. The kernel counts each page touched there in the process's
// resident set, so adding a 1 GiB record made a daemon "use" more than
// 1 GiB of memory although those pages are ordinary file cache that the
// kernel may reclaim at any time.
//
// Badger maps its tables (.sst) the same way, read-only: every key and
// small value read or compacted leaves its pages resident.
//
// The trimmer hands those pages back: every interval it asks the kernel to
// page out the value-log and table mappings (madvise MADV_PAGEOUT). The advice is not
// destructive: dirty pages are written back first, later reads fault them
// in again from the page cache or disk, and if a mapping moved between
// reading /proc/self/maps and the call, advising someone else's anonymous
// memory is harmless (without swap it stays put). MADV_DONTNEED, which would
// discard, is never used.

// The trimmer looks at the process's resident file pages (statm's
// "shared") every trimPoll and trims only once they have grown by trimSlack
// since the last trim. Paging out is not free: each call unmaps pages that
// other threads may have in their TLBs, and trimming every 250ms whether or
// not anything grew cost a quarter of an add's throughput (BenchmarkAdd
// 512 MiB: 315 MB/s against 426 without a trimmer). Trims triggered by
// growth cost little, and the slack bounds what a daemon keeps resident:
// with early writeback (below) the pages are clean when trimmed, and a
// 32 MiB slack kept a daemon adding 1 GiB at VmHWM 173-194 MiB against
// 200-236 with 64 MiB, at the same speed (scripts/bench.sh).
//
// The same goroutine starts the writeback of the value-log file being
// written whenever kickStep more bytes are resident (sync_file_range,
// asynchronous). badger syncs a full value-log file inside its write path
// when it moves to the next one, and with hundreds of MiB still dirty that
// sync held every write for a few hundred milliseconds (seen as Msync in
// goroutine dumps of a slow 1 GiB add). Started early, the writeback runs
// beside the add and the sync at rotation finds little left to do; the
// trimmer's page-outs then find clean pages to drop. Durability is
// unchanged: badger still syncs at rotation and on Sync.
//
// Polling statm every 20 ms is itself a cost when nothing happens: 1.5% of
// a core of an idle daemon went to reading it (issue #16). So the trimmer
// polls every trimPoll only while the file pages grow or blocks are
// written, and every trimIdlePoll once they have not grown by trimQuiet
// for trimQuietPolls polls; the next block written (markingDS tells it)
// brings the fast polls back at once. Ledger and index writes grow table
// pages slowly: the idle poll sees them.
const (
	trimPoll       = 20 * time.Millisecond
	trimIdlePoll   = time.Second
	trimQuiet      = 1 << 20
	trimQuietPolls = 50
	trimSlack      = 32 << 20
	kickStep       = 8 << 20
)

func (s *Store) startTrimmer(dir string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	if _, ok := residentFileBytes(); !ok {
		return // no /proc: nothing to measure, nothing to trim
	}
	s.stopTrim = make(chan struct{})
	s.trimDone = make(chan struct{})
	go func() {
		defer close(s.trimDone)
		t := time.NewTimer(trimPoll)
		defer t.Stop()
		floor, _ := residentFileBytes()
		kicked, last := floor, floor
		quiet := 0 // polls since the file pages last grew by trimQuiet
		var wb writeback
		defer wb.close()
		for {
			var wake chan struct{} // only heard between idle polls
			if quiet >= trimQuietPolls {
				wake = s.wake
			}
			select {
			case <-s.stopTrim:
				return
			case <-t.C:
			case <-wake:
				quiet = 0 // t.Reset below: since Go 1.23 no stale tick is left
			}
			s.trimPolls.Add(1)
			cur, ok := residentFileBytes()
			if ok {
				if cur-last >= trimQuiet {
					quiet = 0
				} else if quiet < trimQuietPolls {
					quiet++
				}
				last = cur
				if cur < floor {
					floor = cur // something else was reclaimed: follow it down
				}
				if cur < kicked || cur-kicked >= kickStep {
					wb.kick(abs)
					kicked = cur
				}
				if cur-floor >= trimSlack {
					s.trimmed.Add(trimValueLog(abs))
					if after, ok := residentFileBytes(); ok {
						floor, kicked, last = after, after, after
					}
				}
			}
			next := trimPoll
			if quiet >= trimQuietPolls {
				next = trimIdlePoll
				select { // a write told during the fast polls is seen
				case <-s.wake:
					next, quiet = trimPoll, 0
				default:
				}
			}
			t.Reset(next)
		}
	}()
}

// writeback starts the kernel writing back the newest value-log file.
type writeback struct {
	f *os.File
}

func (w *writeback) kick(dir string) {
	name := newestValueLog(dir)
	if name == "" {
		return
	}
	if w.f == nil || w.f.Name() != name {
		if w.f != nil {
			// The file badger moved on from: it synced it; nothing to do.
			w.f.Close()
			w.f = nil
		}
		f, err := os.Open(name) // sync_file_range needs no write access
		if err != nil {
			return
		}
		w.f = f
	}
	_ = unix.SyncFileRange(int(w.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

func (w *writeback) close() {
	if w.f != nil {
		w.f.Close()
	}
}

// newestValueLog returns the path of the value-log file with the highest
// number in dir (the one badger appends to), or "".
func newestValueLog(dir string) string {
	names, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		return ""
	}
	best, bestID := "", int64(-1)
	for _, n := range names {
		id, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(n), ".vlog"), 10, 64)
		if err == nil && id > bestID {
			best, bestID = n, id
		}
	}
	return best
}

// residentFileBytes reads the process's resident shared (file-backed) memory
// from /proc/self/statm.
func residentFileBytes() (int64, bool) {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// trimValueLog pages out the value-log and table mappings of the database
// in dir and returns how many bytes of mappings it advised. Tables (.sst)
// are mapped too, and values under the value threshold (ledger entries,
// small records) live in them: a node that applied 100,000 records'
// announcements had 300 MiB of table pages resident, which counted in its
// RSS as if it held them (issue #16).
func trimValueLog(dir string) int64 {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0
	}
	var advised int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		start, end, path, ok := parseMapsLine(sc.Text())
		if !ok || !(strings.HasSuffix(path, ".vlog") || strings.HasSuffix(path, ".sst")) || filepath.Dir(path) != dir {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_PAGEOUT); errno == 0 {
			advised += int64(end - start)
		}
	}
	return advised
}

// parseMapsLine reads "start-end perms offset dev inode path".
func parseMapsLine(line string) (start, end uintptr, path string, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 {
		return 0, 0, "", false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, "", false
	}
	a, err1 := strconv.ParseUint(lo, 16, 64)
	b, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || b <= a {
		return 0, 0, "", false
	}
	return uintptr(a), uintptr(b), strings.Join(f[5:], " "), true
}

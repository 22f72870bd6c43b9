//go:build linux

package blockstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// vlogSum sums the given /proc/self/smaps fields (e.g. "Rss") over this
// process's mappings of .vlog files under dir, in bytes.
func vlogSum(t *testing.T, dir string, fields ...string) int64 {
	return mapSum(t, dir, ".vlog", fields...)
}

// mapSum sums smaps fields over the mappings of files with suffix in dir.
func mapSum(t *testing.T, dir, suffix string, fields ...string) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	var total int64
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		if _, _, path, ok := parseMapsLine(line); ok {
			in = strings.HasSuffix(path, suffix) && filepath.Dir(path) == dir
			continue
		}
		name, rest, found := strings.Cut(line, ":")
		if !in || !found || !slices.Contains(fields, name) {
			continue
		}
		if f := strings.Fields(rest); len(f) > 0 {
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			total += kb << 10
		}
	}
	return total
}

func vlogRSS(t *testing.T, dir string) int64 { return vlogSum(t, dir, "Rss") }

func vlogDirty(t *testing.T, dir string) int64 {
	return vlogSum(t, dir, "Shared_Dirty", "Private_Dirty")
}

// storeRandom opens a store in a fresh directory and puts n random 1 MiB
// blocks into it; it returns the store, the directory's absolute path and
// the blocks.
func storeRandom(t *testing.T, n int) (*Store, string, []blocks.Block) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	abs, _ := filepath.Abs(dir)
	pref := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	var stored []blocks.Block
	for range n {
		data := make([]byte, 1<<20)
		rand.Read(data)
		c, _ := pref.Sum(data)
		b, _ := blocks.NewBlockWithCid(data, c)
		if err := s.Blocks.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, b)
	}
	return s, abs, stored
}

func TestTrimmerReleasesValueLogPages(t *testing.T) {
	// Well past the slack that triggers a trim.
	s, abs, stored := storeRandom(t, 4*trimSlack>>20)
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	// The trimmer lets up to trimSlack grow before it trims (measured on
	// all of the process's file pages, which other reclaim moves too);
	// without it all 4*trimSlack would stay resident.
	for vlogRSS(t, abs) > 2*trimSlack {
		if time.Now().After(deadline) {
			t.Fatalf("value-log mappings still hold %d MiB after 5 s", vlogRSS(t, abs)>>20)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.trimmed.Load() == 0 {
		t.Fatal("trimmer never advised a value-log mapping")
	}
	// Paged-out data reads back intact (and is re-verified against its CID).
	for _, b := range stored {
		got, err := s.Blocks.Get(ctx, b.Cid())
		if err != nil || !bytes.Equal(got.RawData(), b.RawData()) {
			t.Fatalf("block %s after trimming: %v", b.Cid(), err)
		}
	}
}

// Table pages (small values live in the LSM tree) are paged out too.
func TestTrimReleasesTablePages(t *testing.T) {
	dir := t.TempDir()
	abs, _ := filepath.Abs(dir)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pref := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	var stored []blocks.Block
	for range 20000 { // 40 MiB of 2 KiB blocks: well under the value threshold
		data := make([]byte, 2<<10)
		rand.Read(data)
		c, _ := pref.Sum(data)
		b, _ := blocks.NewBlockWithCid(data, c)
		stored = append(stored, b)
	}
	if err := s.Blocks.PutMany(ctx, stored); err != nil {
		t.Fatal(err)
	}
	s.Close() // flushes the memtables into tables
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	read := func() {
		for _, b := range stored {
			got, err := s.Blocks.Get(ctx, b.Cid())
			if err != nil || !bytes.Equal(got.RawData(), b.RawData()) {
				t.Fatalf("block %s: %v", b.Cid(), err)
			}
		}
	}
	read()
	before := mapSum(t, abs, ".sst", "Rss")
	if before < 16<<20 {
		t.Skipf("only %d MiB of table pages resident after reading 40 MiB", before>>20)
	}
	trimValueLog(abs)
	if after := mapSum(t, abs, ".sst", "Rss"); after > before/2 {
		t.Fatalf("table mappings hold %d MiB after a trim, %d before", after>>20, before>>20)
	}
	read() // paged-out tables read back intact
}

// Writes below the trim slack are written back early, not left dirty for
// badger to sync inside its write path when it moves to the next file
// (without the kick they stay dirty for the kernel's 30 s expiry).
func TestWritebackStartsEarly(t *testing.T) {
	_, abs, _ := storeRandom(t, trimSlack>>20-4) // below the slack: no trim
	deadline := time.Now().Add(5 * time.Second)
	// What was written after the last kick may stay dirty: less than
	// kickStep, give or take what the poll interval lets through.
	for vlogDirty(t, abs) > 2*kickStep {
		if time.Now().After(deadline) {
			t.Fatalf("value log still has %d MiB dirty after 5 s", vlogDirty(t, abs)>>20)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An idle store's trimmer looks at the resident pages about once a second,
// not every trimPoll, and a block written brings the fast polls back.
func TestTrimmerIdlesWhenNothingIsWritten(t *testing.T) {
	s, _, _ := storeRandom(t, 1)
	polls := func(d time.Duration) int64 {
		p0 := s.trimPolls.Load()
		time.Sleep(d)
		return s.trimPolls.Load() - p0
	}
	time.Sleep(trimQuietPolls*trimPoll + 2*trimIdlePoll) // quiet: idle polls
	if n := polls(3 * trimIdlePoll); n > 5 {
		t.Fatalf("an idle trimmer polled %d times in %v (fast polls: %v each)", n, 3*trimIdlePoll, trimPoll)
	}
	pref := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a slow writer: a small block every 100 ms
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			data := []byte("block " + strconv.Itoa(i))
			c, _ := pref.Sum(data)
			b, _ := blocks.NewBlockWithCid(data, c)
			if err := s.Blocks.Put(context.Background(), b); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	n := polls(time.Second)
	close(stop)
	<-done
	if n < 10 {
		t.Fatalf("the trimmer polled %d times in a second of writes", n)
	}
}

//go:build linux

package blockstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// vlogRSS sums the resident size of this process's mappings of .vlog files
// under dir (from /proc/self/smaps).
func vlogRSS(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if _, _, path, ok := parseMapsLine(line); ok {
			in = strings.HasSuffix(path, ".vlog") && filepath.Dir(path) == dir
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

func TestTrimmerReleasesValueLogPages(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	abs, _ := filepath.Abs(dir)
	ctx := context.Background()
	pref := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	var stored []blocks.Block
	for i := 0; i < 4*trimSlack>>20; i++ { // well past the slack that triggers a trim
		data := make([]byte, 1<<20)
		rand.Read(data)
		c, _ := pref.Sum(data)
		b, _ := blocks.NewBlockWithCid(data, c)
		if err := s.Blocks.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, b)
	}
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

// vlogDirty sums the dirty pages of this process's mappings of .vlog files
// under dir (from /proc/self/smaps).
func vlogDirty(t *testing.T, dir string) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	var total int64
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		if _, _, path, ok := parseMapsLine(line); ok {
			in = strings.HasSuffix(path, ".vlog") && filepath.Dir(path) == dir
			continue
		}
		if in && (strings.HasPrefix(line, "Shared_Dirty:") || strings.HasPrefix(line, "Private_Dirty:")) {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// Writes below the trim slack are written back early, not left dirty for
// badger to sync inside its write path when it moves to the next file
// (without the kick they stay dirty for the kernel's 30 s expiry).
func TestWritebackStartsEarly(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	abs, _ := filepath.Abs(dir)
	pref := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	for i := 0; i < trimSlack>>20-4; i++ { // below the slack: no trim
		data := make([]byte, 1<<20)
		rand.Read(data)
		c, _ := pref.Sum(data)
		b, _ := blocks.NewBlockWithCid(data, c)
		if err := s.Blocks.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
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

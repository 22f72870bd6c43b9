// Command vloggc measures what badger's value-log GC has to do in a
// stopped node's datastore: it opens the datastore as a daemon does and
// runs the GC passes go-ds-badger's periodic GC would (RunValueLogGC at
// its discard ratio, again while one rewrites a file), and prints how many
// files were rewritten, the CPU time it took and the value log's size
// before and after.
//
//	go run ./scripts/vloggc REPO [REPO...]
//
// It changes the datastore (the GC runs for real): use it on a copy or a
// repo you are done with (scripts/idle-cost.sh with KEEP=1). Issue #16,
// session 11: checkpoints' state blocks used to leave garbage there.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"
	badger "github.com/ipfs/go-ds-badger4"
	"github.com/medmesh/medmesh/storage/blockstore"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vloggc REPO [REPO...]")
		os.Exit(2)
	}
	fmt.Println("| repo | value log before | files rewritten | CPU | wall | value log after | checkpoints/ |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, repo := range os.Args[1:] {
		if err := run(repo); err != nil {
			fmt.Fprintf(os.Stderr, "vloggc: %s: %v\n", repo, err)
			os.Exit(1)
		}
	}
}

func run(repo string) error {
	dir := filepath.Join(repo, "datastore")
	before := size(dir, "*.vlog")
	st, err := blockstore.Open(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	ratio := badger.DefaultOptions.GcDiscardRatio
	cpu0, t0 := cpu(), time.Now()
	rounds := 0
	for {
		err := st.DS.DB.RunValueLogGC(ratio)
		if errors.Is(err, badgerdb.ErrNoRewrite) {
			break
		}
		if err != nil {
			return err
		}
		rounds++
	}
	took, wall := cpu()-cpu0, time.Since(t0)
	if err := st.Close(); err != nil {
		return err
	}
	after := size(dir, "*.vlog")
	fmt.Printf("| %s | %.0f MiB | %d | %.2f s | %.2f s | %.0f MiB | %.0f MiB |\n", filepath.Base(repo), mib(before), rounds, took.Seconds(), wall.Seconds(), mib(after), mib(size(filepath.Join(repo, "checkpoints"), "*/*")))
	return nil
}

func size(dir, pattern string) int64 {
	ms, _ := filepath.Glob(filepath.Join(dir, pattern))
	var n int64
	for _, m := range ms {
		if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

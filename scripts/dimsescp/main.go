// Command dimsescp runs node/dimse's SCP with a C-STORE handler that
// discards what it receives or writes each instance as a Part 10 file, and
// (with -send) node/dimse's SCU. scripts/bench-dimse.sh measures the
// protocol layer with them, beside Orthanc.
//
//	go run ./scripts/dimsescp -listen 127.0.0.1:11112 -handler fs -dir DIR
//	go run ./scripts/dimsescp -send DIR -to MEDMESH@127.0.0.1:11112
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/medmesh/medmesh/node/dimse"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:11112", "address to serve on")
	aet := flag.String("aet", "MEDMESH", "our AE title")
	allowed := flag.String("allowed", "STORESCU@127.0.0.1,BENCH@127.0.0.1", "allowed callers: AE@host,...")
	handler := flag.String("handler", "discard", "C-STORE handler: discard, or fs (a Part 10 file per instance in -dir)")
	dir := flag.String("dir", "", "directory for -handler fs")
	maxPDU := flag.Uint("max-pdu", dimse.DefaultMaxPDULength, "maximum PDU length we accept")
	send := flag.String("send", "", "instead of serving: send every Part 10 file under this directory")
	to := flag.String("to", "", "with -send: AE@host:port")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	if *send != "" {
		err = sendDir(*send, *aet, *to, uint32(*maxPDU), log)
	} else {
		err = serve(*listen, *aet, *allowed, *handler, *dir, uint32(*maxPDU), log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dimsescp:", err)
		os.Exit(1)
	}
}

// discard reads every data set to the end and keeps nothing.
type discard struct {
	n, bytes atomic.Int64
	// first and last are when the first and the last instance were
	// stored (Unix nanoseconds), for time-to-first/last measurements.
	first, last atomic.Int64
}

func (d *discard) stored(n int64) {
	d.n.Add(1)
	d.bytes.Add(n)
	t := time.Now().UnixNano()
	d.first.CompareAndSwap(0, t)
	d.last.Store(t)
}

func (d *discard) Store(ctx context.Context, req *dimse.StoreRequest, r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	d.stored(n)
	return err
}

// fsStore writes each instance as DIR/<SOP Instance UID>.dcm (temp file,
// then rename; no fsync, as Orthanc writes its storage area).
type fsStore struct {
	dir string
	discard
}

func (f *fsStore) Store(ctx context.Context, req *dimse.StoreRequest, r io.Reader) error {
	p10, err := dimse.Part10(req.FileMeta(), r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.dir, ".incoming-*")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(tmp, 256<<10)
	n, err := io.Copy(w, p10)
	if err == nil {
		err = w.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(f.dir, req.SOPInstanceUID+".dcm"))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	f.stored(n)
	return nil
}

func serve(listen, aet, allowed, handler, dir string, maxPDU uint32, log *slog.Logger) error {
	callers, err := dimse.ParseCallers(allowed)
	if err != nil {
		return err
	}
	var store dimse.StoreHandler
	var counts *discard
	switch handler {
	case "discard":
		d := &discard{}
		store, counts = d, d
	case "fs":
		if dir == "" {
			return errors.New("-handler fs needs -dir")
		}
		f := &fsStore{dir: dir}
		store, counts = f, &f.discard
	default:
		return fmt.Errorf("unknown -handler %q (choices: discard, fs)", handler)
	}
	s, err := dimse.NewServer(dimse.ServerOptions{AETitle: aet, Allowed: callers, Store: store, MaxPDULength: maxPDU,
		MaxAssociations: 64, Logger: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	fmt.Fprintf(os.Stderr, "dimsescp: %s serving on %s (handler %s)\n", aet, listen, handler)
	err = s.ListenAndServe(listen)
	fmt.Fprintf(os.Stderr, "dimsescp: stored %d instances, %d bytes\n", counts.n.Load(), counts.bytes.Load())
	fmt.Fprintf(os.Stderr, "dimsescp: first %d last %d\n", counts.first.Load(), counts.last.Load())
	if errors.Is(err, dimse.ErrServerClosed) {
		return nil
	}
	return err
}

// sendDir sends every file under dir over one association.
func sendDir(dir, aet, to string, maxPDU uint32, log *slog.Logger) error {
	called, addr, ok := strings.Cut(to, "@")
	if !ok {
		return fmt.Errorf("-to %q: want AE@host:port", to)
	}
	var paths []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	var params []dimse.StoreParams
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		sp, _, err := dimse.Part10Params(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		params = append(params, sp)
	}
	ctx := context.Background()
	start := time.Now()
	a, err := dimse.Dial(ctx, addr, dimse.ClientOptions{CallingAE: aet, CalledAE: called, Proposals: dimse.StorageProposals(params),
		MaxPDULength: maxPDU, Logger: log})
	if err != nil {
		return err
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			a.Abort()
			return err
		}
		_, err = a.StorePart10(ctx, f)
		f.Close()
		if err != nil {
			a.Abort()
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := a.Release(ctx); err != nil {
		return err
	}
	fmt.Printf("%d %.3f\n", len(paths), time.Since(start).Seconds())
	return nil
}

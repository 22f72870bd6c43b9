package dimse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
	lib "github.com/suyashkumar/dicom"
)

// testLogger logs to the test's output when -v, else discards.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// startServer starts a Server on 127.0.0.1:0 and returns its address.
func startServer(t testing.TB, o ServerOptions) (*Server, string) {
	t.Helper()
	if o.AETitle == "" {
		o.AETitle = "MEDMESH"
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if o.Timeouts.ARTIM == 0 {
		o.Timeouts.ARTIM = 5 * time.Second
	}
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, l.Addr().String()
}

func mustCallers(t testing.TB, s ...string) []Caller {
	t.Helper()
	var out []Caller
	for _, x := range s {
		c, err := ParseCaller(x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func hostPort(t testing.TB, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// needTool skips the test when a dcmtk (or other) tool is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install dcmtk): skipping the interop test", name)
	}
	return p
}

// run runs a command with a deadline and returns its combined output.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sharedDir returns the shared DICOM test data directory, if present.
func sharedDir() (string, bool) {
	dir := os.Getenv("MEDMESH_DICOM_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "testdata", "dicom")
	}
	_, err := os.Stat(filepath.Join(dir, "MANIFEST.md"))
	return dir, err == nil
}

// testdataDir returns the shared DICOM test data directory or skips.
func testdataDir(t testing.TB) string {
	t.Helper()
	dir, ok := sharedDir()
	if !ok {
		t.Skipf("DICOM test data not found at %s (set MEDMESH_DICOM_TESTDATA)", dir)
	}
	return dir
}

// syntheticStudies writes synthetic Part 10 files (storage/dicom/dicomtest:
// two patients, two series of three instances each, several modalities),
// the stand-in for the shared test data where it is absent.
func syntheticStudies(t testing.TB, seed int64) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for i, mod := range []string{"CT", "MR"} {
		paths, err := dicomtest.WriteStudy(filepath.Join(dir, mod), dicomtest.Options{Patients: 1, SeriesPerStudy: 2,
			InstancesPerSeries: 3, Rows: 16, Cols: 16, Modality: mod, Seed: seed + int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, paths...)
	}
	return out
}

// memStore is a StoreHandler keeping data sets in memory, by SOP instance.
type memStore struct {
	mu   sync.Mutex
	data map[string][]byte
	reqs map[string]StoreRequest
	fail func(*StoreRequest) error
}

func newMemStore() *memStore {
	return &memStore{data: map[string][]byte{}, reqs: map[string]StoreRequest{}}
}

func (m *memStore) Store(ctx context.Context, req *StoreRequest, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if m.fail != nil {
		if err := m.fail(req); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[req.SOPInstanceUID] = b
	m.reqs[req.SOPInstanceUID] = *req
	return nil
}

func (m *memStore) get(uid string) ([]byte, StoreRequest, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.data[uid]
	return b, m.reqs[uid], ok
}

func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.data)
}

// part10File is a Part 10 file split into its meta and data set.
type part10File struct {
	Path string
	Meta *FileMeta
	Data []byte
}

func readPart10(t testing.TB, path string) part10File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, ds, err := OpenPart10(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(ds)
	if err != nil {
		t.Fatal(err)
	}
	return part10File{Path: path, Meta: m, Data: b}
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b))[:16] }

// seqOf turns a slice into an iter.Seq2 without errors.
func seqOf[T any](xs []T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, x := range xs {
			if !yield(x, nil) {
				return
			}
		}
	}
}

func mustElement(t testing.TB, tg interface{}, v any) *lib.Element {
	t.Helper()
	_ = tg
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

type manifestEntry struct {
	File  string
	Parse bool
}

// readManifest reads MANIFEST.md's table: file and intent (parse/reject).
func readManifest(t testing.TB, dir string) []manifestEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "MANIFEST.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []manifestEntry
	intentCol := -1
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cols := strings.Split(line, "|")
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		if intentCol < 0 {
			for i, c := range cols {
				if c == "intent" {
					intentCol = i
				}
			}
			continue
		}
		if len(cols) <= intentCol || !strings.HasPrefix(cols[1], "`") {
			continue
		}
		out = append(out, manifestEntry{File: strings.Trim(cols[1], "`"), Parse: strings.HasPrefix(cols[intentCol], "**parse")})
	}
	if len(out) == 0 {
		t.Fatal("MANIFEST.md: no table rows")
	}
	return out
}

func (m *memStore) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data, m.reqs = map[string][]byte{}, map[string]StoreRequest{}
}

package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// DICOM import and de-identification on one real daemon (devnet, one node,
// through its API as `medmesh dicom import` calls it), on an N-instance
// series (default 500, MEDMESH_BENCH_DICOM_N) made from the shared test
// file valid/ct1_full_explicit_le.dcm (512x512 CT, 530 KB) by rewriting its
// UIDs and Instance Number; without the shared data, from a synthetic
// 512x512 CT instance (the same size). Figures: docs/BENCHMARKS.md.
//
//	go test -run '^$' -bench 'DICOM' -benchtime 3x ./node/daemon

// benchDicomN is the series length.
func benchDicomN(b *testing.B) int {
	n := 500
	if s := os.Getenv("MEDMESH_BENCH_DICOM_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("MEDMESH_BENCH_DICOM_N=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

// benchDicomSource is the real CT file, or a synthetic one written to a
// temp dir when the shared test data is absent.
func benchDicomSource(b *testing.B) string {
	dir := os.Getenv("MEDMESH_DICOM_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "testdata", "dicom")
	}
	src := filepath.Join(dir, "valid", "ct1_full_explicit_le.dcm")
	if _, err := os.Stat(src); err == nil {
		return src
	}
	b.Logf("shared DICOM test data not found at %s: using a synthetic 512x512 CT instance", dir)
	paths, err := dicomtest.WriteStudy(b.TempDir(), dicomtest.Options{Rows: 512, Cols: 512, Modality: "CT", Seed: 99})
	if err != nil {
		b.Fatal(err)
	}
	return paths[0]
}

// benchSeries writes a series of n instances under a fresh folder and
// returns the folder and its total size in bytes.
func benchSeries(b *testing.B, src string, n int, seed int64) (string, int64) {
	dir, err := os.MkdirTemp(b.TempDir(), "series-")
	if err != nil {
		b.Fatal(err)
	}
	paths, err := dicomtest.WriteSeriesFrom(src, dir, n, seed)
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		size += st.Size()
	}
	return dir, size
}

func benchNode(b *testing.B) *devnet.Node {
	n, err := devnet.Start(context.Background(), b.TempDir(), []string{"radiology"}, devnet.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return n.Nodes[0]
}

func benchImport(b *testing.B, nd *devnet.Node, dir string, n int) api.DicomStudyResult {
	var res api.DicomImportResult
	if err := nd.API.Do(context.Background(), "POST", api.Prefix+"/dicom/import", api.DicomImportRequest{Paths: []string{dir}}, &res); err != nil {
		b.Fatal(err)
	}
	if len(res.Studies) != 1 || res.Studies[0].Added != n || len(res.Rejected) != 0 {
		b.Fatalf("import: want one study with %d new instances, got %+v (rejected %d)", n, res.Studies, len(res.Rejected))
	}
	return res.Studies[0]
}

// heapSampler records the peak of runtime.MemStats.HeapAlloc (live and
// not yet swept heap objects) every 10 ms while it runs. devnet runs the
// daemon in this process, so the figure is the daemon's heap plus the
// (small) benchmark's own.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak uint64
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapAlloc)
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	return h.peak
}

// BenchmarkDICOMImport imports a fresh N-instance series per iteration (new
// UIDs each time, generated outside the timer) into one node: instances/s,
// MB/s (SetBytes: the files' bytes, 1 MB = 10^6 B) and peak heap during
// the imports, with the heap in use before them for reference.
func BenchmarkDICOMImport(b *testing.B) {
	n := benchDicomN(b)
	src := benchDicomSource(b)
	nd := benchNode(b)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	var el time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir, size := benchSeries(b, src, n, int64(1000+i))
		b.SetBytes(size)
		runtime.GC()
		h := startHeapSampler()
		b.StartTimer()
		t0 := time.Now()
		benchImport(b, nd, dir, n)
		el += time.Since(t0)
		b.StopTimer()
		peak = max(peak, h.Stop())
		os.RemoveAll(dir)
	}
	b.ReportMetric(float64(n*b.N)/el.Seconds(), "instances/s")
	b.ReportMetric(float64(peak)/1e6, "peak-heap-MB")
	b.ReportMetric(float64(base)/1e6, "base-heap-MB")
}

// BenchmarkDICOMDeidentify de-identifies an imported N-instance study
// (PS3.15 basic profile, dates shifted) into a new record per iteration:
// instances/s and MB/s of source instances, and peak heap.
func BenchmarkDICOMDeidentify(b *testing.B) {
	n := benchDicomN(b)
	src := benchDicomSource(b)
	nd := benchNode(b)
	dir, size := benchSeries(b, src, n, 2000)
	st := benchImport(b, nd, dir, n)
	os.RemoveAll(dir)
	b.SetBytes(size)
	runtime.GC()
	h := startHeapSampler()
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		var dr api.DicomDeidResult
		if err := nd.API.Do(context.Background(), "POST", api.Prefix+"/dicom/deidentify", api.DicomDeidRequest{Record: st.ID, ShiftDates: true}, &dr); err != nil {
			b.Fatal(err)
		}
		if dr.Instances != n {
			b.Fatalf("deidentify: %d instances kept of %d (%d excluded: %+v)", dr.Instances, n, len(dr.Excluded), dr.Excluded)
		}
	}
	el := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/el.Seconds(), "instances/s")
	b.ReportMetric(float64(h.Stop())/1e6, "peak-heap-MB")
}

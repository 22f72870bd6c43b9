package dicom

import (
	"context"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

var (
	benchOnce  sync.Once
	benchPaths []string
	benchBytes int64
	benchErr   error
	benchDir   string
)

// benchSeries writes one 500-instance synthetic CT series (128x128, 16-bit).
func benchSeries(b *testing.B) []string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "medmesh-dicom-bench")
		if benchErr != nil {
			return
		}
		benchPaths, benchErr = dicomtest.WriteStudy(benchDir, dicomtest.Options{InstancesPerSeries: 500, Rows: 128, Cols: 128})
		for _, p := range benchPaths {
			if st, err := os.Stat(p); err == nil {
				benchBytes += st.Size()
			}
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPaths
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// BenchmarkParse parses a 500-instance series per iteration.
func BenchmarkParse(b *testing.B) {
	paths := benchSeries(b)
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range paths {
			if _, err := ParseFile(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(paths))/b.Elapsed().Seconds(), "instances/s")
}

// BenchmarkScan scans and groups the 500-instance series per iteration.
func BenchmarkScan(b *testing.B) {
	benchSeries(b)
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := Scan(context.Background(), []string{benchDir}, nil)
		if err != nil || len(st) != 1 || st[0].NumInstances() != 500 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "instances/s")
}

// BenchmarkDeidentify de-identifies the 500-instance series per iteration.
func BenchmarkDeidentify(b *testing.B) {
	paths := benchSeries(b)
	opts := DeidOptions{ProjectKey: testKey, ShiftDates: true}
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			res, err := Deidentify(f, io.Discard, opts)
			f.Close()
			if err != nil || res.Excluded {
				b.Fatal(err, res)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(paths))/b.Elapsed().Seconds(), "instances/s")
}

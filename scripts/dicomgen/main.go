// Command dicomgen writes an N-instance DICOM series made from one real
// file (new SOP Instance UIDs, Instance Numbers 1..N, a new series and
// study), or from a synthetic 512x512 CT instance when the file is absent.
// scripts/bench-dicom.sh uses it.
//
//	go run ./scripts/dicomgen -src FILE.dcm -n 500 -out DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

func main() {
	src := flag.String("src", "", "DICOM file to copy (synthetic 512x512 CT if empty or absent)")
	n := flag.Int("n", 500, "instances")
	out := flag.String("out", "", "output folder (created)")
	seed := flag.Int64("seed", 1, "UID seed")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "dicomgen: -out is required")
		os.Exit(2)
	}
	if err := run(*src, *out, *n, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "dicomgen:", err)
		os.Exit(1)
	}
}

func run(src, out string, n int, seed int64) error {
	from := "synthetic"
	if _, err := os.Stat(src); src == "" || err != nil {
		tmp, err := os.MkdirTemp("", "dicomgen-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		paths, err := dicomtest.WriteStudy(tmp, dicomtest.Options{Rows: 512, Cols: 512, Modality: "CT", Seed: seed})
		if err != nil {
			return err
		}
		src = paths[0]
	} else {
		from = src
	}
	paths, err := dicomtest.WriteSeriesFrom(src, out, n, seed)
	if err != nil {
		return err
	}
	var bytes int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		bytes += st.Size()
	}
	fmt.Printf("%d %d %s %s\n", len(paths), bytes, filepath.Clean(out), from)
	return nil
}

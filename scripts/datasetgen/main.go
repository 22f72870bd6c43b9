// Command datasetgen writes synthetic DICOM studies (storage/dicom/dicomtest):
// one study per patient, P patients, S series of I instances each, Rows x
// Cols 16-bit. It prints the patient IDs, one a line, for `medmesh consent
// add`. scripts/bench-dataset.sh uses it.
//
//	go run ./scripts/datasetgen -out DIR -patients 8 -series 1 -instances 16 -size 512
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

func main() {
	out := flag.String("out", "", "output folder (created)")
	patients := flag.Int("patients", 8, "patients (one study each)")
	series := flag.Int("series", 1, "series per study")
	instances := flag.Int("instances", 16, "instances per series")
	size := flag.Int("size", 512, "rows and columns")
	modality := flag.String("modality", "MR", "modality")
	seed := flag.Int64("seed", 1, "UID seed")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "datasetgen: -out is required")
		os.Exit(2)
	}
	if _, err := dicomtest.WriteStudy(*out, dicomtest.Options{Patients: *patients, SeriesPerStudy: *series, InstancesPerSeries: *instances,
		Rows: *size, Cols: *size, Modality: *modality, Seed: *seed}); err != nil {
		fmt.Fprintln(os.Stderr, "datasetgen:", err)
		os.Exit(1)
	}
	for p := 1; p <= *patients; p++ {
		fmt.Println(dicomtest.PatientID(p))
	}
}

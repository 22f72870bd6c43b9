// Package dicomtest generates synthetic, valid DICOM Part 10 files (Explicit
// VR Little Endian, synthetic 16-bit pixel data, fake "DEMO^PATIENTn"
// identities) with github.com/suyashkumar/dicom's writer, for the demo,
// benchmarks and self-contained tests.
package dicomtest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// Options describes the synthetic data set: one study per patient.
type Options struct {
	Patients           int    // default 1
	SeriesPerStudy     int    // default 1
	InstancesPerSeries int    // default 1
	Rows, Cols         int    // default 64 x 64
	Modality           string // "CT" (default), "MR", "CR", "PT", "US", "OT"
	// Seed makes UIDs distinct between data sets; the same Seed and layout
	// produce the same UIDs.
	Seed int64
	// ExtraElements are added to every instance (e.g. private tags in tests).
	ExtraElements []*lib.Element
}

var sopClass = map[string]string{
	"CT": "1.2.840.10008.5.1.4.1.1.2",
	"MR": "1.2.840.10008.5.1.4.1.1.4",
	"CR": "1.2.840.10008.5.1.4.1.1.1",
	"PT": "1.2.840.10008.5.1.4.1.1.128",
	"US": "1.2.840.10008.5.1.4.1.1.6.1",
	"OT": "1.2.840.10008.5.1.4.1.1.7",
}

// UID returns a deterministic "2.25." UID for the given parts.
func UID(seed int64, parts ...any) string {
	h := sha256.Sum256([]byte(fmt.Sprint(append([]any{seed}, parts...)...)))
	return "2.25." + new(big.Int).SetBytes(h[:16]).String()
}

// PatientName and PatientID return the fake identity of patient p (1-based).
func PatientName(p int) string { return fmt.Sprintf("DEMO^PATIENT%d", p) }

// PatientID returns the fake patient ID of patient p (1-based).
func PatientID(p int) string { return fmt.Sprintf("DEMO%04d", p) }

// WriteStudy writes the data set under dir as dir/P<p>/S<s>/I<i>.dcm and
// returns the paths in generation order.
func WriteStudy(dir string, o Options) ([]string, error) {
	if o.Patients <= 0 {
		o.Patients = 1
	}
	if o.SeriesPerStudy <= 0 {
		o.SeriesPerStudy = 1
	}
	if o.InstancesPerSeries <= 0 {
		o.InstancesPerSeries = 1
	}
	if o.Rows <= 0 {
		o.Rows = 64
	}
	if o.Cols <= 0 {
		o.Cols = 64
	}
	if o.Modality == "" {
		o.Modality = "CT"
	}
	cls, ok := sopClass[o.Modality]
	if !ok {
		cls = sopClass["OT"]
	}
	var paths []string
	pix := make([]byte, o.Rows*o.Cols*2)
	for p := 1; p <= o.Patients; p++ {
		study := UID(o.Seed, "study", p)
		for s := 1; s <= o.SeriesPerStudy; s++ {
			series := UID(o.Seed, "series", p, s)
			sdir := filepath.Join(dir, fmt.Sprintf("P%d", p), fmt.Sprintf("S%d", s))
			if err := os.MkdirAll(sdir, 0o755); err != nil {
				return nil, err
			}
			for i := 1; i <= o.InstancesPerSeries; i++ {
				sop := UID(o.Seed, "sop", p, s, i)
				for k := 0; k < len(pix); k += 2 {
					binary.LittleEndian.PutUint16(pix[k:], uint16((k/2+i*7)%4096))
				}
				elems := []struct {
					t tag.Tag
					v any
				}{
					{tag.MediaStorageSOPClassUID, []string{cls}},
					{tag.MediaStorageSOPInstanceUID, []string{sop}},
					{tag.TransferSyntaxUID, []string{"1.2.840.10008.1.2.1"}},
					{tag.SpecificCharacterSet, []string{"ISO_IR 192"}},
					{tag.SOPClassUID, []string{cls}},
					{tag.SOPInstanceUID, []string{sop}},
					{tag.StudyDate, []string{"20240115"}},
					{tag.SeriesDate, []string{"20240115"}},
					{tag.StudyTime, []string{"101500"}},
					{tag.AccessionNumber, []string{fmt.Sprintf("ACC%06d", p)}},
					{tag.Modality, []string{o.Modality}},
					{tag.InstitutionName, []string{"DEMO GENERAL HOSPITAL"}},
					{tag.ReferringPhysicianName, []string{"DEMO^REFERRER"}},
					{tag.StudyDescription, []string{"DEMO STUDY " + strconv.Itoa(p)}},
					{tag.SeriesDescription, []string{"DEMO SERIES " + strconv.Itoa(s)}},
					{tag.PatientName, []string{PatientName(p)}},
					{tag.PatientID, []string{PatientID(p)}},
					{tag.PatientBirthDate, []string{fmt.Sprintf("19%02d0101", 40+p%50)}},
					{tag.PatientSex, []string{"O"}},
					{tag.BodyPartExamined, []string{"CHEST"}},
					{tag.StudyInstanceUID, []string{study}},
					{tag.SeriesInstanceUID, []string{series}},
					{tag.StudyID, []string{"S" + strconv.Itoa(p)}},
					{tag.SeriesNumber, []string{strconv.Itoa(s)}},
					{tag.InstanceNumber, []string{strconv.Itoa(i)}},
					{tag.FrameOfReferenceUID, []string{UID(o.Seed, "for", p)}},
					{tag.SamplesPerPixel, []int{1}},
					{tag.PhotometricInterpretation, []string{"MONOCHROME2"}},
					{tag.Rows, []int{o.Rows}},
					{tag.Columns, []int{o.Cols}},
					{tag.BitsAllocated, []int{16}},
					{tag.BitsStored, []int{12}},
					{tag.HighBit, []int{11}},
					{tag.PixelRepresentation, []int{0}},
					{tag.BurnedInAnnotation, []string{"NO"}},
				}
				ds := lib.Dataset{}
				for _, e := range elems {
					el, err := lib.NewElement(e.t, e.v)
					if err != nil {
						return nil, fmt.Errorf("dicomtest: element %v: %w", e.t, err)
					}
					ds.Elements = append(ds.Elements, el)
				}
				ds.Elements = append(ds.Elements, o.ExtraElements...)
				pe, err := lib.NewElement(tag.PixelData, lib.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pix})
				if err != nil {
					return nil, err
				}
				pe.RawValueRepresentation = "OW"
				pe.ValueLength = uint32(len(pix))
				ds.Elements = append(ds.Elements, pe)
				path := filepath.Join(sdir, fmt.Sprintf("I%d.dcm", i))
				if err := writeFile(path, ds); err != nil {
					return nil, err
				}
				paths = append(paths, path)
			}
		}
	}
	return paths, nil
}

func writeFile(path string, ds lib.Dataset) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := lib.Write(f, ds); err != nil {
		f.Close()
		return fmt.Errorf("dicomtest: write %s: %w", path, err)
	}
	return f.Close()
}

package dicomtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// WriteSeriesFrom writes n instances of one new series of one new study,
// made from the DICOM file src, as dir/I<i>.dcm (i from 1), and returns the
// paths in order. src is parsed once with github.com/suyashkumar/dicom
// (pixel data kept as raw bytes) and written n times with its writer; only
// the identity of each copy changes: SOP Instance UID and Media Storage SOP
// Instance UID (distinct per instance), Instance Number (i), and Series and
// Study Instance UID (shared by all, distinct from src's). UIDs are
// deterministic "2.25." UIDs of seed, so the same seed makes the same
// series. Benchmarks use it to build realistic series from one real file.
func WriteSeriesFrom(src, dir string, n int, seed int64) ([]string, error) {
	if n <= 0 {
		return nil, fmt.Errorf("dicomtest: series of %d instances", n)
	}
	ds, err := parseSource(src)
	if err != nil {
		return nil, err
	}
	var el [5]*lib.Element
	for k, t := range []tag.Tag{tag.SOPInstanceUID, tag.MediaStorageSOPInstanceUID, tag.InstanceNumber, tag.SeriesInstanceUID, tag.StudyInstanceUID} {
		if el[k], err = findOrAdd(&ds, t); err != nil {
			return nil, fmt.Errorf("dicomtest: %s: %v: %w", src, t, err)
		}
	}
	if err := setString(el[3], UID(seed, "series-from", src)); err != nil {
		return nil, err
	}
	if err := setString(el[4], UID(seed, "study-from", src)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := make([]string, 0, n)
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		sop := UID(seed, "sop-from", src, i)
		if err := setString(el[0], sop); err != nil {
			return nil, err
		}
		if err := setString(el[1], sop); err != nil {
			return nil, err
		}
		if err := setString(el[2], strconv.Itoa(i)); err != nil {
			return nil, err
		}
		buf.Reset()
		if err := lib.Write(&buf, ds, lib.SkipVRVerification(), lib.SkipValueTypeVerification()); err != nil {
			return nil, fmt.Errorf("dicomtest: write instance %d of %s: %w", i, src, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("I%04d.dcm", i))
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// RewriteUIDs writes a copy of the DICOM file src to dst in which the Study,
// Series and SOP Instance UIDs (and the Media Storage SOP Instance UID) are
// the given strings, written as they are: they need not be conformant UIDs
// (tests use it to make what real archives hold, e.g. 64 hex digits). Empty
// arguments leave that UID unchanged. The rest of the dataset is src's,
// re-encoded by github.com/suyashkumar/dicom's writer.
func RewriteUIDs(src, dst, study, series, sop string) error {
	ds, err := parseSource(src)
	if err != nil {
		return err
	}
	for _, r := range []struct {
		t tag.Tag
		v string
	}{{tag.StudyInstanceUID, study}, {tag.SeriesInstanceUID, series}, {tag.SOPInstanceUID, sop}, {tag.MediaStorageSOPInstanceUID, sop}} {
		if r.v == "" {
			continue
		}
		e, err := findOrAdd(&ds, r.t)
		if err != nil {
			return fmt.Errorf("dicomtest: %s: %v: %w", src, r.t, err)
		}
		if err := setString(e, r.v); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if err := lib.Write(&buf, ds, lib.SkipVRVerification(), lib.SkipValueTypeVerification()); err != nil {
		return fmt.Errorf("dicomtest: write %s: %w", dst, err)
	}
	return os.WriteFile(dst, buf.Bytes(), 0o644)
}

// parseSource parses a DICOM file for rewriting (pixel data kept as raw bytes).
func parseSource(src string) (lib.Dataset, error) {
	ds, err := lib.ParseFile(src, nil, lib.SkipProcessingPixelDataValue(),
		lib.AllowUnknownSpecificCharacterSet(), lib.AllowMissingMetaElementGroupLength())
	if err != nil {
		return lib.Dataset{}, fmt.Errorf("dicomtest: parse %s: %w", src, err)
	}
	return ds, nil
}

// findOrAdd returns ds's element t, added (empty) if src lacks it, so that
// every copy carries it.
func findOrAdd(ds *lib.Dataset, t tag.Tag) (*lib.Element, error) {
	if e, err := ds.FindElementByTag(t); err == nil {
		return e, nil
	}
	e, err := lib.NewElement(t, []string{""})
	if err != nil {
		return nil, err
	}
	ds.Elements = append(ds.Elements, e)
	return e, nil
}

func setString(e *lib.Element, v string) error {
	val, err := lib.NewValue([]string{v})
	if err != nil {
		return err
	}
	e.Value = val
	return nil
}

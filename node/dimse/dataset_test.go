package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func sampleIdentifier(t testing.TB) *lib.Dataset {
	t.Helper()
	item := []*lib.Element{elem(t, tag.CodeValue, "T-12345"), elem(t, tag.CodingSchemeDesignator, "SRT")}
	seq, err := lib.NewElement(tag.ProcedureCodeSequence, [][]*lib.Element{item})
	if err != nil {
		t.Fatal(err)
	}
	num, err := lib.NewElement(tag.NumberOfStudyRelatedInstances, []string{"12"})
	if err != nil {
		t.Fatal(err)
	}
	return &lib.Dataset{Elements: []*lib.Element{
		elem(t, tag.SpecificCharacterSet, "ISO_IR 100"),
		elem(t, tag.StudyDate, "20200101-20201231"),
		elem(t, tag.QueryRetrieveLevel, "STUDY"),
		elem(t, tag.ModalitiesInStudy, "CT", "MR"),
		seq,
		elem(t, tag.PatientName, "DOE^J*"),
		elem(t, tag.PatientID, ""),
		elem(t, tag.StudyInstanceUID, "1.2.840.113619.2.55.3"),
		num,
	}}
}

func TestIdentifierRoundTrip(t *testing.T) {
	ds := sampleIdentifier(t)
	for _, ts := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian} {
		b, err := EncodeIdentifier(ds, ts)
		if err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		got, err := DecodeIdentifier(b, ts)
		if err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		for _, k := range []tag.Tag{tag.StudyDate, tag.QueryRetrieveLevel, tag.PatientName, tag.StudyInstanceUID, tag.PatientID} {
			if stringValue(got, k) != stringValue(ds, k) {
				t.Errorf("%s: %v = %q, want %q", ts, k, stringValue(got, k), stringValue(ds, k))
			}
		}
		e, err := got.FindElementByTag(tag.ProcedureCodeSequence)
		if err != nil {
			t.Fatalf("%s: sequence lost", ts)
		}
		items, _ := e.Value.GetValue().([]*lib.SequenceItemValue)
		if len(items) != 1 {
			t.Fatalf("%s: %d items", ts, len(items))
		}
		again, err := EncodeIdentifier(got, ts)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%s: re-encoding differs: %v", ts, err)
		}
	}
	if _, err := EncodeIdentifier(ds, "1.2.840.10008.1.2.4.50"); err == nil {
		t.Fatal("identifier encoded in JPEG Baseline")
	}
}

func TestDecodeIdentifierRejects(t *testing.T) {
	el := func(g, e uint16, vr string, v []byte) []byte {
		b := binary.LittleEndian.AppendUint16(nil, g)
		b = binary.LittleEndian.AppendUint16(b, e)
		b = append(b, vr...)
		if longVR(vr) {
			b = append(b, 0, 0)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		} else {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		}
		return append(b, v...)
	}
	undef := func(g, e uint16, vr string) []byte {
		b := binary.LittleEndian.AppendUint16(nil, g)
		b = binary.LittleEndian.AppendUint16(b, e)
		b = append(b, vr...)
		return append(b, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	}
	item := func(n uint32) []byte {
		return binary.LittleEndian.AppendUint32([]byte{0xFE, 0xFF, 0x00, 0xE0}, n)
	}
	nested := undef(0x0008, 0x1110, "SQ")
	for i := 0; i < 40; i++ {
		nested = append(nested, item(0xFFFFFFFF)...)
		nested = append(nested, undef(0x0008, 0x1110, "SQ")...)
	}
	for name, b := range map[string][]byte{
		"truncated header":        {0x10, 0x00, 0x10},
		"length past the end":     append(el(0x10, 0x10, "PN", []byte("AB")), 0x10, 0, 0x20, 0, 'L', 'O', 0x40, 0),
		"no VR":                   {0x10, 0x00, 0x10, 0x00, 0x01, 0x02, 0x00, 0x00},
		"undefined length on PN":  undef(0x10, 0x10, "PN"),
		"item outside a sequence": item(0),
		"sequence never ends":     append(undef(0x0008, 0x1110, "SQ"), item(0)...),
		"item past its sequence":  append(el(0x0008, 0x1110, "SQ", item(100)), 0, 0),
		"nested 40 deep":          nested,
	} {
		if _, err := DecodeIdentifier(b, ExplicitVRLittleEndian); !errors.Is(err, ErrIdentifier) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if ds, err := DecodeIdentifier(nil, ImplicitVRLittleEndian); err != nil || len(ds.Elements) != 0 {
		t.Errorf("empty identifier: %v", err)
	}
	// a UID padded with NUL reads back without it
	ds, err := DecodeIdentifier(el(0x20, 0x0D, "UI", []byte("1.2.3\x00")), ExplicitVRLittleEndian)
	if err != nil || stringValue(ds, tag.StudyInstanceUID) != "1.2.3" {
		t.Errorf("padded UID: %q %v", stringValue(ds, tag.StudyInstanceUID), err)
	}
}

func identifierSeeds(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	var cur []byte
	for _, b := range loadSeeds(t, ".pdu") {
		if b[0] != TypePDataTF {
			continue
		}
		p, _ := DecodePDU(b)
		for _, v := range p.(*PDataTF).Items {
			if !v.Command && len(v.Data) < 4096 {
				cur = append(cur, v.Data...)
				if v.Last {
					out = append(out, cur)
					cur = nil
				}
			}
		}
	}
	return out
}

func FuzzDecodeIdentifier(f *testing.F) {
	for _, b := range identifierSeeds(f) {
		for sel := byte(0); sel < 3; sel++ {
			f.Add(sel, b)
		}
	}
	for _, ts := range []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian} {
		b, _ := EncodeIdentifier(sampleIdentifier(f), ts)
		f.Add(byte(len(ts)%3), b)
	}
	syntaxes := []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
	f.Fuzz(func(t *testing.T, sel byte, b []byte) {
		ts := syntaxes[int(sel)%3]
		ds, err := DecodeIdentifier(b, ts)
		if err != nil {
			return
		}
		_ = stringValue(ds, tag.QueryRetrieveLevel)
		if enc, err := EncodeIdentifier(ds, ts); err == nil {
			if _, err := DecodeIdentifier(enc, ts); err != nil {
				t.Fatalf("re-encoded identifier does not decode: %v", err)
			}
		}
	})
}

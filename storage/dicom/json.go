package dicom

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MetadataJSON renders an instance's header as DICOM JSON (PS3.18 F.2): an
// object keyed by the 8-digit uppercase hex tag, each value {"vr", "Value"}.
// Person names use {"Alphabetic": ...}; IS/DS and binary numeric VRs are JSON
// numbers; sequences nest. Private attributes and bulk binary values (OB, OW,
// OF, UN, pixel data) are omitted. in must come from ParseFile/ParseReader.
func MetadataJSON(in *Instance) ([]byte, error) {
	return MetadataJSONBulk(in, nil)
}

// MetadataJSONBulk is MetadataJSON with bulk data: every top-level binary
// value (OB, OW, OF, OD, OL, OV, UN), pixel data included, is given as
// {"vr", "BulkDataURI": bulkURI(tag)}, and binary values nested in
// sequences inline (InlineBinary, base64) up to 64 KiB. A nil bulkURI
// leaves binary values out.
func MetadataJSONBulk(in *Instance, bulkURI func(tag uint32) string) ([]byte, error) {
	if in == nil || in.ts.BO == nil {
		return nil, errors.New("dicom: MetadataJSON: instance has no parsed elements")
	}
	return json.Marshal(jsonDataset(in.elems, in.ts.BO, bulkURI, 0))
}

// maxInlineBinary bounds a binary value nested in a sequence that
// metadata carries inline.
const maxInlineBinary = 64 << 10

func jsonDataset(es []*element, bo binary.ByteOrder, bulkURI func(uint32) string, depth int) map[string]any {
	out := map[string]any{}
	for _, e := range es {
		if e.group()%2 == 1 || e.group() == 0xFFFE {
			continue
		}
		if e.Pixel {
			if bulkURI != nil && depth == 0 {
				vr := e.VR
				if vr == "" || e.VL == undefinedLength {
					vr = "OB"
					if e.VL != undefinedLength {
						vr = "OW"
					}
				}
				out[fmt.Sprintf("%08X", e.Tag)] = map[string]any{"vr": vr, "BulkDataURI": bulkURI(e.Tag)}
			}
			continue
		}
		key := fmt.Sprintf("%08X", e.Tag)
		vr := e.VR
		if e.IsSeq {
			items := []any{}
			for _, it := range e.Items {
				items = append(items, jsonDataset(it.Elems, bo, bulkURI, depth+1))
			}
			out[key] = map[string]any{"vr": "SQ", "Value": items}
			continue
		}
		switch vr {
		case "OB", "OW", "OF", "OD", "OL", "OV", "UN":
			switch {
			case bulkURI == nil:
			case depth == 0:
				out[key] = map[string]any{"vr": vr, "BulkDataURI": bulkURI(e.Tag)}
			case len(e.Value) <= maxInlineBinary && !e.Encap:
				out[key] = map[string]any{"vr": vr, "InlineBinary": base64.StdEncoding.EncodeToString(littleEndian(vr, e.Value, bo))}
			}
			continue
		}
		obj := map[string]any{"vr": vr}
		if vals := jsonValues(vr, e.Value, bo); len(vals) > 0 {
			obj["Value"] = vals
		}
		out[key] = obj
	}
	return out
}

func jsonValues(vr string, v []byte, bo binary.ByteOrder) []any {
	var out []any
	fixed := func(n int, conv func([]byte) any) {
		for i := 0; i+n <= len(v); i += n {
			out = append(out, conv(v[i:i+n]))
		}
	}
	switch vr {
	case "US":
		fixed(2, func(b []byte) any { return bo.Uint16(b) })
	case "SS":
		fixed(2, func(b []byte) any { return int16(bo.Uint16(b)) })
	case "UL":
		fixed(4, func(b []byte) any { return bo.Uint32(b) })
	case "SL":
		fixed(4, func(b []byte) any { return int32(bo.Uint32(b)) })
	case "FL":
		fixed(4, func(b []byte) any { return finite(float64(math.Float32frombits(bo.Uint32(b)))) })
	case "FD":
		fixed(8, func(b []byte) any { return finite(math.Float64frombits(bo.Uint64(b))) })
	case "AT":
		fixed(4, func(b []byte) any { return fmt.Sprintf("%04X%04X", bo.Uint16(b), bo.Uint16(b[2:])) })
	default:
		s := strings.TrimRight(string(v), " \x00")
		if s == "" {
			return nil
		}
		parts := []string{s}
		switch vr {
		case "LT", "ST", "UT", "UR":
		default:
			parts = strings.Split(s, `\`)
		}
		for _, p := range parts {
			p = strings.TrimSpace(p)
			switch vr {
			case "PN":
				if p == "" {
					out = append(out, nil)
				} else {
					out = append(out, map[string]string{"Alphabetic": decodeText(&element{Value: []byte(p)})})
				}
			case "IS":
				if n, err := strconv.ParseInt(p, 10, 64); err == nil {
					out = append(out, n)
				} else {
					out = append(out, nil)
				}
			case "DS":
				if f, err := strconv.ParseFloat(p, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
					out = append(out, f)
				} else {
					out = append(out, nil)
				}
			default:
				if p == "" {
					out = append(out, nil)
				} else {
					out = append(out, decodeText(&element{Value: []byte(p)}))
				}
			}
		}
	}
	return out
}

// littleEndian returns a binary value in little endian order (DICOM JSON
// and octet-stream bulk data are little endian).
func littleEndian(vr string, v []byte, bo binary.ByteOrder) []byte {
	if n := swapSize(vr); n > 0 && bo == binary.BigEndian && len(v)%n == 0 {
		v = append([]byte(nil), v...)
		swap(v, n)
	}
	return v
}

func finite(f float64) any {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil
	}
	return f
}

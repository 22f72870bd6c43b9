package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"sort"
	"strings"
	"time"
)

// DeidOptions configures Deidentify.
type DeidOptions struct {
	// ProjectKey keys the UID mapping, the patient pseudonym and the derived
	// date offsets. At least 16 bytes. The same key gives the same outputs,
	// so instances of one project stay linked; without it the mapping cannot
	// be reversed or recomputed.
	ProjectKey []byte
	// RetainPatientCharacteristics keeps sex, age, size, weight and the like
	// (PS3.15 E.3.7, code 113108).
	RetainPatientCharacteristics bool
	// ShiftDates applies the Retain Longitudinal Temporal Information with
	// Modified Dates option (E.3.6, code 113107): the dates of the patient's
	// timeline (DA and DT values: study, series, acquisition, content,
	// procedure, treatment dates...) are moved by a per-patient number of
	// days; times are kept. Patient's Birth Date follows Table E.1-1 (the
	// option does not cover it), and DA/DT attributes that date a
	// definition rather than an event of the patient's care (Context Group
	// Version and Local Version, Template Version, hanging protocol,
	// implant template and product dates; see notTimeline) are never
	// shifted: Table E.1-1 decides for those it lists, the others are kept
	// as they are. Without ShiftDates dates are removed, emptied or replaced
	// by dummies as Table E.1-1 says.
	ShiftDates bool
	// DateOffsetDays returns the shift for a patient (original Patient ID).
	// nil: derived from ProjectKey, -1..-3650 days.
	DateOffsetDays func(patientID string) int
}

// DeidResult describes one de-identified (or excluded) instance.
type DeidResult struct {
	// Excluded is true when the instance was not written because it may
	// carry burned-in identifying text and no pixel cleaning is done.
	Excluded bool
	Reason   string
	// PatientPseudonym is the new Patient ID (also the basis of the name).
	PatientPseudonym string
	// New UIDs.
	StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID string
	DateOffsetDays                                      int
	// Counters of actions taken.
	Removed, Emptied, Replaced, Remapped, Shifted, PrivateRemoved int
}

var (
	errExcluded = errors.New("excluded")
	// Our implementation identity in the File Meta Information.
	deidImplClassUID = "2.25.207416349398812343389420416185624316711"
	deidImplVersion  = "MEDMESH_DEID1"
)

// Secondary capture and ultrasound SOP classes: commonly carry burned-in text
// without setting BurnedInAnnotation.
var burnedInClasses = map[string]string{
	"1.2.840.10008.5.1.4.1.1.7":     "Secondary Capture",
	"1.2.840.10008.5.1.4.1.1.7.1":   "Multi-frame Single Bit Secondary Capture",
	"1.2.840.10008.5.1.4.1.1.7.2":   "Multi-frame Grayscale Byte Secondary Capture",
	"1.2.840.10008.5.1.4.1.1.7.3":   "Multi-frame Grayscale Word Secondary Capture",
	"1.2.840.10008.5.1.4.1.1.7.4":   "Multi-frame True Color Secondary Capture",
	"1.2.840.10008.5.1.4.1.1.6":     "Ultrasound (retired)",
	"1.2.840.10008.5.1.4.1.1.6.1":   "Ultrasound",
	"1.2.840.10008.5.1.4.1.1.6.2":   "Enhanced Ultrasound Volume",
	"1.2.840.10008.5.1.4.1.1.3":     "Ultrasound Multi-frame (retired)",
	"1.2.840.10008.5.1.4.1.1.3.1":   "Ultrasound Multi-frame",
	"1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
}

// PseudonymizeUID returns the keyed replacement of a UID: "2.25." followed by
// the decimal value of the first 128 bits of HMAC-SHA256(key, uid). The
// result is a conformant UID (PS3.5 9.1) whatever uid is, e.g. one made of
// hex digits.
func PseudonymizeUID(key []byte, uid string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(uid))
	return "2.25." + new(big.Int).SetBytes(m.Sum(nil)[:16]).String()
}

// PatientPseudonym returns the keyed pseudonym that replaces a Patient ID.
func PatientPseudonym(key []byte, patientID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("medmesh patient\x00" + patientID))
	return "ANON-" + strings.ToUpper(hex.EncodeToString(m.Sum(nil)[:10]))
}

func derivedOffset(key []byte, patientID string) int {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("medmesh date offset\x00" + patientID))
	return -int(binary.BigEndian.Uint32(m.Sum(nil))%3650) - 1
}

type deid struct {
	opts    DeidOptions
	res     *DeidResult
	offset  int
	secrets []string // identifying strings that must not survive in retained text
	enc     *encoder
}

// Deidentify reads one DICOM Part 10 instance from r and writes a
// de-identified copy to w, applying the PS3.15 Annex E Basic Application
// Level Confidentiality Profile (Table E.1-1, in sequences too), removing all
// private attributes, remapping UIDs with PseudonymizeUID (also the Media
// Storage SOP Instance UID), replacing Patient Name/ID with a keyed
// pseudonym and recording the method (0012,0062-0064) and (0028,0303).
//
// Pixel data is streamed through unchanged (encapsulated fragments
// included); the output keeps the input's transfer syntax. Instances that may
// carry burned-in identifying text (BurnedInAnnotation YES, secondary
// capture and ultrasound SOP classes, modality US) are not written: the
// result has Excluded set and the error is nil. Nothing is written to w
// before that decision.
func Deidentify(r io.Reader, w io.Writer, opts DeidOptions) (res *DeidResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, perr(ErrMalformed, -1, "internal error: %v", p)
		}
	}()
	if len(opts.ProjectKey) < 16 {
		return nil, errors.New("dicom: Deidentify: ProjectKey must be at least 16 bytes")
	}
	size := int64(-1)
	switch v := r.(type) {
	case *os.File:
		if st, err := v.Stat(); err == nil && st.Mode().IsRegular() {
			if pos, err := v.Seek(0, io.SeekCurrent); err == nil {
				size = st.Size() - pos
			}
		}
	case *bytes.Reader:
		size = int64(v.Len())
	}
	x := &deid{opts: opts, res: &DeidResult{}}
	bw := bufio.NewWriterSize(w, 64<<10)
	var meta *file
	started := false
	written := 0
	// start decides exclusion, computes the patient context and writes the
	// File Meta Information.
	start := func(top []*element) error {
		started = true
		if err := x.prepare(meta, top); err != nil {
			return err
		}
		x.enc = &encoder{w: bw, bo: meta.TS.BO, implicit: meta.TS.Implicit}
		if err := x.writeMeta(meta); err != nil {
			return err
		}
		if meta.TS.Deflate {
			fw, err := flate.NewWriter(bw, flate.DefaultCompression)
			if err != nil {
				return err
			}
			x.enc.w, x.enc.closer = fw, fw
		}
		return nil
	}
	flushTop := func(top []*element, final bool) error {
		if !started {
			if err := start(top); err != nil {
				return err
			}
			top = x.finishTop(x.transform(top, 0), true)
		} else {
			top = x.finishTop(x.transform(top, 0), false)
		}
		for _, e := range top {
			if err := x.enc.element(e); err != nil {
				return err
			}
		}
		return nil
	}
	pixel := func(d *decoder, e *element) error {
		if err := flushTop(d.top[written:], false); err != nil {
			return err
		}
		written = len(d.top) + 1
		vr := e.VR
		if vr == "" {
			vr = "OW"
		}
		if err := x.enc.header(e.Tag, vr, e.VL); err != nil {
			return err
		}
		return d.copyPixel(x.enc.w, e)
	}
	f, err := readPart10(r, size, pixel, func(f *file, _ *decoder) error { meta = f; return nil })
	if errors.Is(err, errExcluded) {
		return x.res, nil
	}
	if err != nil {
		return nil, err
	}
	var rest []*element
	if written < len(f.Data) {
		rest = f.Data[written:]
	}
	if err := flushTop(rest, true); err != nil {
		if errors.Is(err, errExcluded) {
			return x.res, nil
		}
		return nil, err
	}
	if x.enc.closer != nil {
		if err := x.enc.closer.Close(); err != nil {
			return nil, err
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	return x.res, nil
}

// prepare checks exclusion and derives the per-patient context.
func (x *deid) prepare(meta *file, top []*element) error {
	cls := find(top, 0x00080016).str()
	if cls == "" {
		cls = find(meta.Meta, 0x00020002).str()
	}
	switch {
	case cls == MediaStorageDirectoryUID:
		x.res.Excluded, x.res.Reason = true, "DICOMDIR (directory index, not an instance)"
	case strings.EqualFold(find(top, 0x00280301).str(), "YES"):
		x.res.Excluded, x.res.Reason = true, "BurnedInAnnotation is YES"
	case burnedInClasses[cls] != "":
		x.res.Excluded, x.res.Reason = true, "SOP class "+burnedInClasses[cls]+" may carry burned-in text"
	case strings.EqualFold(find(top, 0x00080060).str(), "US"):
		x.res.Excluded, x.res.Reason = true, "modality US may carry burned-in text"
	}
	if x.res.Excluded {
		return errExcluded
	}
	pid := find(top, 0x00100020).str()
	basis := pid
	if basis == "" {
		basis = "name:" + find(top, 0x00100010).str()
	}
	x.res.PatientPseudonym = PatientPseudonym(x.opts.ProjectKey, basis)
	if x.opts.ShiftDates {
		if x.opts.DateOffsetDays != nil {
			x.offset = x.opts.DateOffsetDays(pid)
		} else {
			x.offset = derivedOffset(x.opts.ProjectKey, basis)
		}
		x.res.DateOffsetDays = x.offset
	}
	add := func(s string) {
		s = strings.TrimSpace(s)
		if len(s) >= 3 {
			x.secrets = append(x.secrets, strings.ToUpper(s))
		}
	}
	// Patient, accession, institution and physician identities.
	for _, t := range []uint32{0x00100020, 0x00101000, 0x00080050, 0x00100030, 0x00100010, 0x00101001, 0x00101005,
		0x00080080, 0x00080081, 0x00080090, 0x00081048, 0x00081050, 0x00081060, 0x00081070, 0x00321032} {
		v := find(top, t).str()
		add(v)
		for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == '^' || r == '=' || r == '\\' }) {
			add(part)
		}
	}
	return nil
}

func (x *deid) writeMeta(meta *file) error {
	var out []*element
	for _, e := range meta.Meta {
		switch e.Tag {
		case 0x00020000, 0x00020012, 0x00020013, 0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102:
			continue // recomputed, replaced, or identifying (AE titles, private info)
		case 0x00020003:
			e = x.remapUID(e)
		}
		out = append(out, e)
	}
	if find(out, 0x00020001) == nil {
		out = append(out, &element{Tag: 0x00020001, VR: "OB", Value: []byte{0, 1}})
	}
	out = append(out,
		&element{Tag: 0x00020012, VR: "UI", Value: padValue("UI", deidImplClassUID)},
		&element{Tag: 0x00020013, VR: "SH", Value: padValue("SH", deidImplVersion)})
	sortElems(out)
	var body bytes.Buffer
	me := &encoder{w: &body, bo: binary.LittleEndian}
	for _, e := range out {
		if err := me.element(e); err != nil {
			return err
		}
	}
	gl := make([]byte, 4)
	binary.LittleEndian.PutUint32(gl, uint32(body.Len()))
	var pre [132]byte
	copy(pre[128:], "DICM")
	if _, err := x.enc.w.Write(pre[:]); err != nil {
		return err
	}
	if err := me.withWriter(x.enc.w).element(&element{Tag: 0x00020000, VR: "UL", Value: gl}); err != nil {
		return err
	}
	_, err := x.enc.w.Write(body.Bytes())
	return err
}

// finishTop sorts top-level elements and, on the first call, adds the
// de-identification method attributes.
func (x *deid) finishTop(es []*element, first bool) []*element {
	if !first {
		return es
	}
	var out []*element
	for _, e := range es {
		switch e.Tag {
		case 0x00120062, 0x00120063, 0x00120064, 0x00280303:
			continue
		}
		out = append(out, e)
	}
	method := "DICOM PS3.15 E.1.1 Basic Profile"
	codes := [][3]string{{"113100", "DCM", "Basic Application Confidentiality Profile"}}
	if x.opts.ShiftDates {
		method += "; Modified Dates"
		codes = append(codes, [3]string{"113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"})
	}
	if x.opts.RetainPatientCharacteristics {
		method += "; Retain Patient Chars"
		codes = append(codes, [3]string{"113108", "DCM", "Retain Patient Characteristics Option"})
	}
	seq := &element{Tag: 0x00120064, VR: "SQ", IsSeq: true}
	for _, c := range codes {
		seq.Items = append(seq.Items, &item{Elems: []*element{
			{Tag: 0x00080100, VR: "SH", Value: padValue("SH", c[0])},
			{Tag: 0x00080102, VR: "SH", Value: padValue("SH", c[1])},
			{Tag: 0x00080104, VR: "LO", Value: padValue("LO", c[2])},
		}})
	}
	long := "REMOVED"
	if x.opts.ShiftDates {
		long = "MODIFIED"
	}
	out = append(out,
		&element{Tag: 0x00120062, VR: "CS", Value: padValue("CS", "YES")},
		&element{Tag: 0x00120063, VR: "LO", Value: padValue("LO", method[:min(len(method), 64)])},
		seq,
		&element{Tag: 0x00280303, VR: "CS", Value: padValue("CS", long)},
	)
	if find(out, 0x00100010) == nil {
		out = append(out, x.pseudonymName(&element{Tag: 0x00100010, VR: "PN"}))
	}
	if find(out, 0x00100020) == nil {
		out = append(out, x.pseudonymID(&element{Tag: 0x00100020, VR: "LO"}))
	}
	sortElems(out)
	return out
}

func sortElems(es []*element) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Tag < es[j].Tag })
}

func (x *deid) pseudonymID(e *element) *element {
	x.res.Replaced++
	return &element{Tag: e.Tag, VR: e.VR, Value: padValue("LO", x.res.PatientPseudonym)}
}

func (x *deid) pseudonymName(e *element) *element {
	x.res.Replaced++
	return &element{Tag: e.Tag, VR: e.VR, Value: padValue("PN", "ANON^"+strings.TrimPrefix(x.res.PatientPseudonym, "ANON-"))}
}

// transform applies the profile to a list of elements (recursively).
func (x *deid) transform(es []*element, depth int) []*element {
	var out []*element
	for _, e := range es {
		if e.Pixel {
			continue // written by the pixel callback
		}
		if n := x.apply(e, depth); n != nil {
			out = append(out, n)
		}
	}
	return out
}

// resolveAction reduces a Table E.1-1 code to one action. Without the IOD's
// attribute types the conformance-preserving choice is taken: X/Z -> Z,
// X/D, Z/D, X/Z/D -> D, X/Z/U* -> U (the element is kept, its UIDs remapped).
// For sequences, D keeps the sequence and de-identifies its items, except
// X/Z/D which empties it (e.g. Institution Code Sequence, whose code meaning
// names the institution).
func resolveAction(code, vr string) string {
	switch code {
	case "X/Z":
		return "Z"
	case "X/D", "Z/D":
		return "D"
	case "X/Z/D":
		if vr == "SQ" {
			return "Z"
		}
		return "D"
	case "X/Z/U*":
		return "U"
	}
	return code
}

func (x *deid) apply(e *element, depth int) *element {
	g := e.group()
	if g%2 == 1 {
		x.res.PrivateRemoved++
		return nil
	}
	if g == 0x0002 || g == 0x0000 || g < 0x0008 && g != 0x0004 {
		x.res.Removed++
		return nil // meta or command elements do not belong in a dataset
	}
	vr := e.VR
	if e.IsSeq {
		vr = "SQ"
	}
	code, listed := basicProfile[e.Tag]
	if !listed {
		code, listed = maskedAction(e.Tag)
	}
	if x.opts.RetainPatientCharacteristics && patientCharacteristics[e.Tag] {
		code, listed = "K", true
	}
	switch e.Tag {
	case 0x00100020:
		return x.pseudonymID(e)
	case 0x00100010:
		return x.pseudonymName(e)
	}
	if x.opts.ShiftDates && (vr == "DA" || vr == "DT") && e.Tag != 0x00100030 && !notTimeline[e.Tag] {
		// Dates not in Table E.1-1 are shifted too (unless they date a
		// definition): one date left as it was next to shifted ones would
		// give the patient's offset away, and with it every date.
		return x.shift(e)
	}
	if x.opts.ShiftDates && vr == "TM" && listed && code != "K" {
		code = "K" // whole-day shifts leave times unchanged
	}
	action := "K"
	if listed {
		action = resolveAction(code, vr)
	} else if vr == "UI" {
		action = "U"
	}
	switch action {
	case "X":
		x.res.Removed++
		return nil
	case "Z":
		x.res.Emptied++
		return &element{Tag: e.Tag, VR: e.VR, IsSeq: e.IsSeq}
	case "D":
		if vr == "SQ" {
			return x.recurse(e, depth)
		}
		x.res.Replaced++
		return &element{Tag: e.Tag, VR: e.VR, Value: dummyValue(vr)}
	case "U":
		if vr == "SQ" {
			return x.recurse(e, depth)
		}
		// A UID attribute written with the wrong VR (e.g. a SOP Instance
		// UID as OB) is still a UID: remapped, not emptied, or the output
		// would lose the identity the input had and not read back.
		if vr != "UI" && e.VR != "UN" && dictVR(e.Tag) != "UI" {
			x.res.Emptied++
			return &element{Tag: e.Tag, VR: e.VR}
		}
		return x.remapUID(e)
	}
	// K, C or not listed.
	if vr == "SQ" {
		return x.recurse(e, depth)
	}
	if x.leaks(e, vr) {
		x.res.Emptied++
		return &element{Tag: e.Tag, VR: e.VR}
	}
	return e
}

func (x *deid) recurse(e *element, depth int) *element {
	n := &element{Tag: e.Tag, VR: e.VR, IsSeq: true}
	for _, it := range e.Items {
		n.Items = append(n.Items, &item{Elems: x.transform(it.Elems, depth+1)})
	}
	return n
}

// leaks reports whether a retained text value contains an identifying
// string of the patient (name parts, IDs, accession number, birth date).
func (x *deid) leaks(e *element, vr string) bool {
	switch vr {
	case "LO", "SH", "ST", "LT", "UT", "UC", "PN", "DA", "DT", "AE", "CS", "UN":
	default:
		return false
	}
	v := strings.ToUpper(string(e.Value))
	for _, s := range x.secrets {
		if strings.Contains(v, s) {
			return true
		}
	}
	return false
}

func (x *deid) remapUID(e *element) *element {
	if keepUIDTags[e.Tag] {
		return e
	}
	vals := strings.Split(strings.TrimRight(string(e.Value), " \x00"), `\`)
	changed := false
	for i, v := range vals {
		v = strings.TrimSpace(v)
		// A UID of the DICOM standard itself (a SOP class, transfer
		// syntax, coding scheme) identifies no one. Anything else, and any
		// non-conformant value even under that root, gets a conformant
		// keyed UID (PS3.15 E.1.1: the replacement must be a valid UID).
		if v == "" || strings.HasPrefix(v, "1.2.840.10008.") && ConformantUID(v) {
			continue
		}
		vals[i] = PseudonymizeUID(x.opts.ProjectKey, v)
		changed = true
	}
	if !changed {
		return e
	}
	x.res.Remapped++
	nv := strings.Join(vals, `\`)
	switch e.Tag {
	case 0x0020000D:
		x.res.StudyInstanceUID = nv
	case 0x0020000E:
		x.res.SeriesInstanceUID = nv
	case 0x00080018:
		x.res.SOPInstanceUID = nv
	}
	vr := e.VR
	if dictVR(e.Tag) == "UI" {
		vr = "UI" // the new value is a UID: say so, whatever the input said
	}
	return &element{Tag: e.Tag, VR: vr, Value: padValue("UI", nv)}
}

// shift moves a DA/DT value of the patient's timeline by the patient's
// offset in days; values that cannot be parsed are emptied.
func (x *deid) shift(e *element) *element {
	vals := strings.Split(strings.TrimRight(string(e.Value), " \x00"), `\`)
	for i, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if len(v) < 8 {
			vals[i] = ""
			continue
		}
		d, err := time.Parse("20060102", v[:8])
		if err != nil {
			vals[i] = ""
			continue
		}
		vals[i] = d.AddDate(0, 0, x.offset).Format("20060102") + v[8:]
	}
	x.res.Shifted++
	nv := strings.Join(vals, `\`)
	if strings.Trim(nv, `\`) == "" {
		nv = ""
	}
	return &element{Tag: e.Tag, VR: e.VR, Value: padValue(e.VR, nv)}
}

func dummyValue(vr string) []byte {
	switch vr {
	case "DA":
		return padValue(vr, "19000101")
	case "DT":
		return padValue(vr, "19000101000000")
	case "TM":
		return padValue(vr, "000000")
	case "AS":
		return padValue(vr, "000Y")
	case "IS", "DS":
		return padValue(vr, "0")
	case "US", "SS":
		return make([]byte, 2)
	case "UL", "SL", "FL", "AT":
		return make([]byte, 4)
	case "FD", "SV", "UV":
		return make([]byte, 8)
	case "OB", "OW", "OD", "OF", "OL", "OV", "UN":
		return nil
	case "CS":
		return padValue(vr, "ANONYMIZED")
	}
	return padValue(vr, "ANONYMIZED")
}

// padValue returns s padded to even length (NUL for UI, space otherwise).
func padValue(vr, s string) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		if vr == "UI" {
			b = append(b, 0)
		} else {
			b = append(b, ' ')
		}
	}
	return b
}

// encoder writes elements in one transfer syntax. Sequences and items are
// always written with undefined length, so no length needs recomputing.
type encoder struct {
	w        io.Writer
	closer   io.Closer
	bo       binary.ByteOrder
	implicit bool
	hdr      [12]byte
}

func (c *encoder) withWriter(w io.Writer) *encoder {
	return &encoder{w: w, bo: c.bo, implicit: c.implicit}
}

func (c *encoder) header(t uint32, vr string, vl uint32) error {
	bo, implicit := c.bo, c.implicit
	if t>>16 == 0x0002 {
		bo, implicit = binary.LittleEndian, false
	}
	ab := bo.(binary.AppendByteOrder)
	h := c.hdr[:0]
	h = ab.AppendUint16(h, uint16(t>>16))
	h = ab.AppendUint16(h, uint16(t))
	switch {
	case t>>16 == 0xFFFE || implicit:
		h = ab.AppendUint32(h, vl)
	case isLongVR(vr):
		h = append(h, vr[0], vr[1], 0, 0)
		h = ab.AppendUint32(h, vl)
	default:
		if vl > 0xFFFF {
			return fmt.Errorf("dicom: value of (%04X,%04X) too long (%d) for VR %s", t>>16, t&0xFFFF, vl, vr)
		}
		h = append(h, vr[0], vr[1])
		h = ab.AppendUint16(h, uint16(vl))
	}
	_, err := c.w.Write(h)
	return err
}

func (c *encoder) element(e *element) error {
	vr := e.VR
	if vr == "" {
		vr = dictVR(e.Tag)
	}
	if e.IsSeq {
		if err := c.header(e.Tag, "SQ", undefinedLength); err != nil {
			return err
		}
		for _, it := range e.Items {
			if err := c.header(tagItem, "", undefinedLength); err != nil {
				return err
			}
			for _, sub := range it.Elems {
				if err := c.element(sub); err != nil {
					return err
				}
			}
			if err := c.header(tagItemDelim, "", 0); err != nil {
				return err
			}
		}
		return c.header(tagSeqDelim, "", 0)
	}
	if e.Encap {
		if err := c.header(e.Tag, vr, undefinedLength); err != nil {
			return err
		}
		_, err := c.w.Write(e.Value)
		return err
	}
	v := e.Value
	if len(v)%2 == 1 {
		v = append(append([]byte(nil), v...), padByte(vr))
	}
	if err := c.header(e.Tag, vr, uint32(len(v))); err != nil {
		return err
	}
	_, err := c.w.Write(v)
	return err
}

func padByte(vr string) byte {
	switch vr {
	case "UI", "OB", "UN":
		return 0
	}
	return ' '
}

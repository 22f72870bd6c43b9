package dimse

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"
)

func samplePDUs() map[string]PDU {
	return map[string]PDU{
		"associate-rq": &AssociateRQ{ProtocolVersion: 1, CalledAE: "MEDMESH", CallingAE: "STORESCU", ApplicationContext: ApplicationContextName,
			Contexts: []ContextRQ{
				{ID: 1, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}},
				{ID: 3, AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian, "1.2.840.10008.1.2.4.70"}},
				{ID: 255, AbstractSyntax: StudyRootGet, TransferSyntaxes: []string{ExplicitVRLittleEndian}},
			},
			UserInfo: UserInfo{MaxPDULength: 16384, ImplementationClassUID: ImplementationClassUID, ImplementationVersion: "MEDMESH_1",
				AsyncOps:       &AsyncOps{Invoked: 1, Performed: 1},
				Roles:          []RoleSelection{{SOPClassUID: CTImageStorage, SCU: false, SCP: true}},
				Extended:       []ExtendedNegotiation{{SOPClassUID: StudyRootFind, Info: []byte{1, 1, 0}}},
				CommonExtended: []CommonExtendedNegotiation{{SOPClassUID: "1.2.840.10008.5.1.4.1.1.2.1", ServiceClassUID: "1.2.840.10008.4.2", RelatedSOPClasses: []string{CTImageStorage}}},
				UserIdentity:   &UserIdentity{Type: 2, PositiveResponseRequested: true, Primary: []byte("alice"), Secondary: []byte("secret")},
			}},
		"associate-rq-minimal": &AssociateRQ{ProtocolVersion: 1, CalledAE: "A", CallingAE: "B", ApplicationContext: ApplicationContextName},
		"associate-ac": &AssociateAC{ProtocolVersion: 1, CalledAE: "MEDMESH", CallingAE: "STORESCU", ApplicationContext: ApplicationContextName,
			Contexts: []ContextAC{{ID: 1, Result: ResultAcceptance, TransferSyntax: ImplicitVRLittleEndian}, {ID: 3, Result: ResultAbstractSyntaxNotSupported}},
			UserInfo: UserInfo{MaxPDULength: 131072, ImplementationClassUID: ImplementationClassUID,
				Roles:                []RoleSelection{{SOPClassUID: CTImageStorage, SCU: true, SCP: true}},
				UserIdentityResponse: &UserIdentityAC{ServerResponse: []byte("ok")}}},
		"associate-rj": &AssociateRJ{Result: RejectPermanent, Source: RejectSourceUser, Reason: RejectCallingAENotRecognized},
		"p-data":       &PDataTF{Items: []PDV{{Context: 1, Command: true, Last: true, Data: []byte{1, 2, 3, 4}}, {Context: 3, Data: []byte{}}, {Context: 5, Last: true, Data: bytes.Repeat([]byte{9}, 100)}}},
		"release-rq":   &ReleaseRQ{},
		"release-rp":   &ReleaseRP{},
		"abort":        &Abort{Source: AbortSourceProvider, Reason: AbortReasonUnexpectedPDU},
	}
}

func TestPDURoundTrip(t *testing.T) {
	for name, p := range samplePDUs() {
		t.Run(name, func(t *testing.T) {
			b, err := p.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != p.Type() || int(binary.BigEndian.Uint32(b[2:])) != len(b)-6 {
				t.Fatalf("header %x of a %d-byte PDU", b[:6], len(b))
			}
			got, err := DecodePDU(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalizePDU(got), normalizePDU(p)) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, p)
			}
			got2, _, err := ReadPDU(bytes.NewReader(b), MaxPDULength, nil)
			if err != nil || !reflect.DeepEqual(normalizePDU(got2), normalizePDU(p)) {
				t.Fatalf("ReadPDU: %v %#v", err, got2)
			}
			again, _ := got.Encode()
			if !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
			}
		})
	}
}

// normalizePDU makes empty and nil byte slices compare equal.
func normalizePDU(p PDU) PDU {
	if d, ok := p.(*PDataTF); ok {
		cp := &PDataTF{}
		for _, it := range d.Items {
			if len(it.Data) == 0 {
				it.Data = nil
			}
			cp.Items = append(cp.Items, it)
		}
		return cp
	}
	return p
}

// TestPDUBytes pins encodings against the standard's layout.
func TestPDUBytes(t *testing.T) {
	for _, tc := range []struct {
		p   PDU
		hex string
	}{
		{&AssociateRJ{Result: 1, Source: 1, Reason: 3}, "030000000004" + "00010103"},
		{&ReleaseRQ{}, "050000000004" + "00000000"},
		{&ReleaseRP{}, "060000000004" + "00000000"},
		{&Abort{Source: 2, Reason: 6}, "070000000004" + "00000206"},
		{&PDataTF{Items: []PDV{{Context: 7, Command: true, Last: true, Data: []byte{0xAA, 0xBB}}}}, "040000000008" + "00000004" + "0703" + "aabb"},
	} {
		b, err := tc.p.Encode()
		if err != nil || hex.EncodeToString(b) != tc.hex {
			t.Errorf("%T: %x %v, want %s", tc.p, b, err, tc.hex)
		}
	}
}

// TestDecodeRecordedPDUs decodes what dcmtk and Orthanc sent (the fuzz
// seeds) and re-encodes it to the same meaning.
func TestDecodeRecordedPDUs(t *testing.T) {
	types := map[byte]int{}
	for _, b := range loadSeeds(t, ".pdu") {
		p, err := DecodePDU(b)
		if err != nil {
			t.Fatalf("recorded %x...: %v", b[:min(len(b), 16)], err)
		}
		types[p.Type()]++
		enc, err := p.Encode()
		if err != nil {
			t.Fatalf("re-encoding %T: %v", p, err)
		}
		p2, err := DecodePDU(enc)
		if err != nil || !reflect.DeepEqual(normalizePDU(p2), normalizePDU(p)) {
			t.Fatalf("%T: re-encoded PDU decodes differently: %v", p, err)
		}
		if rq, ok := p.(*AssociateRQ); ok && rq.CallingAE == "DCMTK" {
			if rq.CalledAE != "MEDMESH" || rq.ApplicationContext != ApplicationContextName || len(rq.Contexts) == 0 ||
				rq.UserInfo.ImplementationClassUID == "" || rq.UserInfo.MaxPDULength == 0 {
				t.Errorf("dcmtk's A-ASSOCIATE-RQ decoded oddly: %+v", rq)
			}
		}
	}
	for _, want := range []byte{TypeAssociateRQ, TypeAssociateAC, TypeAssociateRJ, TypePDataTF, TypeReleaseRQ, TypeReleaseRP, TypeAbort} {
		if types[want] == 0 {
			t.Errorf("no recorded PDU of type 0x%02x", want)
		}
	}
}

// TestPDUMutations: every byte of every sample and recorded PDU flipped,
// and every truncation, must decode to an error or a PDU, never panic;
// errors wrap ErrPDU.
func TestPDUMutations(t *testing.T) {
	var inputs [][]byte
	for _, p := range samplePDUs() {
		b, _ := p.Encode()
		inputs = append(inputs, b)
	}
	for _, b := range loadSeeds(t, ".pdu") {
		if len(b) <= 4096 {
			inputs = append(inputs, b)
		}
	}
	check := func(b []byte) {
		if _, err := DecodePDU(b); err != nil && !errors.Is(err, ErrPDU) {
			t.Fatalf("error not wrapping ErrPDU: %v", err)
		}
		if _, _, err := ReadPDU(bytes.NewReader(b), DefaultMaxPDULength, nil); err != nil && !errors.Is(err, ErrPDU) &&
			!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("ReadPDU error: %v", err)
		}
	}
	n := 0
	for _, in := range inputs {
		for i := range in {
			for _, x := range []byte{0xFF, 0x01, 0x80} {
				b := append([]byte(nil), in...)
				b[i] ^= x
				check(b)
				n++
			}
			check(in[:i])
			n++
		}
	}
	t.Logf("%d mutated PDUs decoded without panic", n)
}

// TestReadPDULimits: lengths beyond their bound are refused from the
// header, before anything is allocated.
func TestReadPDULimits(t *testing.T) {
	hdr := func(typ byte, n uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{typ, 0}, n)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"P-DATA of 4 GiB", hdr(TypePDataTF, 0xFFFFFFFF)},
		{"P-DATA one byte over the bound", hdr(TypePDataTF, DefaultMaxPDULength+1)},
		{"P-DATA too short for a PDV", hdr(TypePDataTF, 5)},
		{"A-ASSOCIATE-RQ of 2 MiB", hdr(TypeAssociateRQ, 2<<20)},
		{"A-ASSOCIATE-AC shorter than its header", hdr(TypeAssociateAC, 10)},
		{"A-RELEASE-RQ of 5 bytes", hdr(TypeReleaseRQ, 5)},
		{"unknown PDU type", hdr(0x08, 4)},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := ReadPDU(bytes.NewReader(tc.b), DefaultMaxPDULength, nil)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrPDU) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4096 {
			t.Errorf("%s: %d bytes allocated to refuse it", tc.name, n)
		}
	}
	// a P-DATA exactly at the bound is read into the caller's buffer
	body := make([]byte, DefaultMaxPDULength)
	binary.BigEndian.PutUint32(body, DefaultMaxPDULength-4)
	body[4], body[5] = 1, 3
	buf := make([]byte, DefaultMaxPDULength)
	p, nb, err := ReadPDU(bytes.NewReader(append(hdr(TypePDataTF, DefaultMaxPDULength), body...)), DefaultMaxPDULength, buf)
	if err != nil || len(p.(*PDataTF).Items[0].Data) != DefaultMaxPDULength-6 || &nb[0] != &buf[0] {
		t.Fatalf("P-DATA at the bound: %v", err)
	}
}

func TestDecodePDUErrors(t *testing.T) {
	good, _ := samplePDUs()["associate-rq"].Encode()
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"length field says more", append(good[:6:6], good[6:len(good)-1]...)},
		{"trailing byte", append(append([]byte(nil), good...), 0)},
		{"PDV on an even context", []byte{4, 0, 0, 0, 0, 6, 0, 0, 0, 2, 2, 3}},
		{"PDV length beyond the PDU", []byte{4, 0, 0, 0, 0, 6, 0, 0, 0, 9, 1, 3}},
		{"PDV length below 2", []byte{4, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 3}},
	} {
		if _, err := DecodePDU(tc.b); !errors.Is(err, ErrPDU) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// an item whose length runs past the PDU
	rq := append([]byte(nil), good...)
	rq[6+68+2] = 0xFF // application context item length high byte
	if _, err := DecodePDU(rq); !errors.Is(err, ErrPDU) {
		t.Errorf("item past the end: %v", err)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	for name, p := range map[string]PDU{
		"AE title too long": &AssociateRQ{CalledAE: "ABCDEFGHIJKLMNOPQ", CallingAE: "X", ApplicationContext: ApplicationContextName},
		"AE title blank":    &AssociateRQ{CalledAE: "   ", CallingAE: "X", ApplicationContext: ApplicationContextName},
		"AE backslash":      &AssociateAC{CalledAE: `A\B`, CallingAE: "X", ApplicationContext: ApplicationContextName},
		"even context ID":   &AssociateRQ{CalledAE: "A", CallingAE: "B", ApplicationContext: ApplicationContextName, Contexts: []ContextRQ{{ID: 2, AbstractSyntax: "1.2"}}},
		"UID too long":      &AssociateRQ{CalledAE: "A", CallingAE: "B", ApplicationContext: ApplicationContextName, Contexts: []ContextRQ{{ID: 1, AbstractSyntax: string(bytes.Repeat([]byte{'1'}, 65))}}},
	} {
		if _, err := p.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func FuzzDecodePDU(f *testing.F) {
	for _, b := range loadSeeds(f, ".pdu") {
		f.Add(b)
	}
	for _, p := range samplePDUs() {
		b, _ := p.Encode()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePDU(b)
		rp, _, rerr := ReadPDU(bytes.NewReader(b), MaxPDULength, nil)
		if err != nil {
			if !errors.Is(err, ErrPDU) {
				t.Fatalf("error not wrapping ErrPDU: %v", err)
			}
			return
		}
		if rerr != nil || !reflect.DeepEqual(normalizePDU(rp), normalizePDU(p)) {
			t.Fatalf("DecodePDU accepts what ReadPDU decodes differently: %v", rerr)
		}
		enc, err := p.Encode()
		if err != nil {
			return // decodable but not valid to send (e.g. a blank AE title)
		}
		p2, err := DecodePDU(enc)
		if err != nil {
			t.Fatalf("re-encoded PDU does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalizePDU(p2), normalizePDU(p)) {
			t.Fatalf("round trip changed the PDU:\n%#v\n%#v", p, p2)
		}
	})
}

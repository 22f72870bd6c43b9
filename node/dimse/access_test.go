package dimse

import (
	"context"
	"net/netip"
	"testing"
)

func TestCallers(t *testing.T) {
	cs, err := ParseCallers(" PACS@10.0.0.5, CT1@10.1.0.0/16 ,ANY@*, WS@pacs.example, LOCAL@::1")
	if err != nil || len(cs) != 5 {
		t.Fatalf("%v %v", cs, err)
	}
	resolve := func(_ context.Context, h string) ([]netip.Addr, error) {
		if h == "pacs.example" {
			return []netip.Addr{netip.MustParseAddr("192.0.2.7")}, nil
		}
		return nil, nil
	}
	for _, tc := range []struct {
		ae, ip string
		ok     bool
	}{
		{"PACS", "10.0.0.5", true}, {"PACS", "10.0.0.6", false}, {"pacs", "10.0.0.5", false},
		{"CT1", "10.1.200.3", true}, {"CT1", "10.2.0.1", false},
		{"ANY", "203.0.113.9", true}, {"NOBODY", "10.0.0.5", false},
		{"WS", "192.0.2.7", true}, {"WS", "192.0.2.8", false},
		{"LOCAL", "::1", true},
	} {
		ip := netip.MustParseAddr(tc.ip)
		got := false
		for _, c := range cs {
			got = got || c.matches(context.Background(), tc.ae, ip, resolve)
		}
		if got != tc.ok {
			t.Errorf("%s@%s: %v, want %v", tc.ae, tc.ip, got, tc.ok)
		}
	}
	for _, bad := range []string{"PACS", "@host", "PACS@", "WAYTOOLONGAETITLE1@h", `A\B@h`, "A@10.0.0.0/99"} {
		if _, err := ParseCaller(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDestinations(t *testing.T) {
	ds, err := ParseDestinations("PACS=10.0.0.5:104, WS = ws.example:11112")
	if err != nil || len(ds) != 2 || ds[1] != (Destination{AETitle: "WS", Addr: "ws.example:11112"}) {
		t.Fatalf("%v %v", ds, err)
	}
	for _, bad := range []string{"PACS", "PACS=host", "PACS=host:0", "PACS=:104", "=h:1", "PACS=h:99999"} {
		if _, err := ParseDestinations(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestUIDClasses(t *testing.T) {
	for uid, want := range map[string]bool{
		CTImageStorage: true, "1.2.840.10008.5.1.4.1.1.88.33": true, "1.2.840.10008.5.1.4.1.1.481.5": true,
		"1.2.840.10008.5.1.4.34.7": true, "1.2.840.10008.5.1.4.1.1.200.4": false, StudyRootFind: false,
		VerificationSOPClass: false, "1.2.840.10008.1.20.1": false, "1.3.12.2.1107.5.9.1": false,
	} {
		if IsStorageSOPClass(uid) != want {
			t.Errorf("IsStorageSOPClass(%s) = %v", uid, !want)
		}
	}
	for uid, want := range map[string]bool{
		ImplicitVRLittleEndian: true, ExplicitVRBigEndian: true, "1.2.840.10008.1.2.4.201": true, "1.2.840.10008.1.2.5": true,
		"1.2.840.10008.1.2.6.1": false, "1.2.840.10008.1.20": false, "1.2.840.113619.5.2": false, "1.2.840.10008.1.2x": false,
	} {
		if IsStandardTransferSyntax(uid) != want {
			t.Errorf("IsStandardTransferSyntax(%s) = %v", uid, !want)
		}
	}
	for s, want := range map[string]bool{"1.2.3": true, "2.25.0": true, "1.02": false, "1..2": false, ".1": false, "1.2.": false, "": false, "1.a": false} {
		if isUIDSyntax(s) != want {
			t.Errorf("isUIDSyntax(%q) = %v", s, !want)
		}
	}
}

package implant

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var ref = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// Real UDIs from public documentation.
const (
	// FDA, "UDI formats by FDA-Accredited Issuing Agency" (v1.3, 2017):
	// the GS1 plain-text example.
	fdaGS1 = "(01)51022222233336(11)141231(17)150707(10)A213B1(21)1234"
	// GS1's example GTIN (General Specifications, GS1 Digital Link).
	gs1ExampleGTIN = "09506000134352"
	// GS1 US's example GTIN.
	gs1USGTIN = "00614141999996"
	// The HIBC primary data structure of the HIBCC standard's check
	// character example (ANSI/HIBC; scanner manuals reprint it).
	hibcPrimary = "+A123BJC5D6E71G"
)

func TestParseGS1(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     UDI
	}{
		{"fda-hri", fdaGS1, UDI{Issuer: IssuerGS1, DI: "51022222233336", Lot: "A213B1", Serial: "1234", Expiry: Date{2015, 7, 7}, Produced: Date{2014, 12, 31}}},
		{"di-only", "(01)" + gs1ExampleGTIN, UDI{Issuer: IssuerGS1, DI: gs1ExampleGTIN}},
		{"hri-spaced", "(01) 09506000134352 (17) 281231 (10) ABC123", UDI{Issuer: IssuerGS1, DI: gs1ExampleGTIN, Lot: "ABC123", Expiry: Date{2028, 12, 31}}},
		{"machine-datamatrix", "]d201" + gs1ExampleGTIN + "17281231" + "10ABC123\x1d21XYZ-9", UDI{Issuer: IssuerGS1, DI: gs1ExampleGTIN, Lot: "ABC123", Serial: "XYZ-9", Expiry: Date{2028, 12, 31}}},
		{"machine-gs128-leading-fnc1", "]C1\x1d01" + gs1USGTIN + "21SN1\x1d10L2", UDI{Issuer: IssuerGS1, DI: gs1USGTIN, Lot: "L2", Serial: "SN1"}},
		{"machine-typed-gs", "01" + gs1USGTIN + "10LOT7<GS>17300100", UDI{Issuer: IssuerGS1, DI: gs1USGTIN, Lot: "LOT7", Expiry: Date{2030, 1, 0}}},
		{"machine-gs-after-fixed", "01" + gs1USGTIN + "\x1d17300131", UDI{Issuer: IssuerGS1, DI: gs1USGTIN, Expiry: Date{2030, 1, 31}}},
		{"hri-order-free", "(10)X(01)" + gs1USGTIN, UDI{Issuer: IssuerGS1, DI: gs1USGTIN, Lot: "X"}},
		{"hri-lot-with-paren", "(01)" + gs1USGTIN + "(10)A(1)B(21)7", UDI{Issuer: IssuerGS1, DI: gs1USGTIN, Lot: "A(1)B", Serial: "7"}},
		{"century-window", "(01)" + gs1USGTIN + "(11)781010", UDI{Issuer: IssuerGS1, DI: gs1USGTIN, Produced: Date{1978, 10, 10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in, ref)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Parse(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
			// Both forms read back to the same UDI.
			for _, s := range []string{got.HRF(), got.AIDC()} {
				again, err := Parse(s, ref)
				if err != nil || again != got {
					t.Fatalf("round trip of %q: %+v, %v", s, again, err)
				}
			}
		})
	}
}

func TestParseHIBCC(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     UDI
	}{
		{"primary", hibcPrimary, UDI{Issuer: IssuerHIBCC, DI: "A123BJC5D6E71"}},
		{"caption-asterisks", "*" + hibcPrimary + "*", UDI{Issuer: IssuerHIBCC, DI: "A123BJC5D6E71"}},
		// The FDA document's HIBCC example, with the check character its
		// data has (the document's "C" is illustrative).
		{"fda-structure", "+H123PARTNO1234567890120/$$420020216LOT123456789012345/SXYZ456789012345678/16D20130202H",
			UDI{Issuer: IssuerHIBCC, DI: "H123PARTNO1234567890120", Lot: "LOT123456789012345", Serial: "XYZ456789012345678", Expiry: Date{2020, 2, 2}, Produced: Date{2013, 2, 2}}},
		{"julian-lot", withCheck("+A123BJC5D6E71/$$52001510X3"), UDI{Issuer: IssuerHIBCC, DI: "A123BJC5D6E71", Lot: "10X3", Expiry: Date{2020, 1, 15}}},
		{"mmyy", withCheck("+A123BJC5D6E71/$$0727LOT1"), UDI{Issuer: IssuerHIBCC, DI: "A123BJC5D6E71", Lot: "LOT1", Expiry: Date{2027, 7, 0}}},
		{"serial-only", withCheck("+A123BJC5D6E71/$+SN42"), UDI{Issuer: IssuerHIBCC, DI: "A123BJC5D6E71", Serial: "SN42"}},
		{"serial-and-date", withCheck("+A123BJC5D6E71/$$+3281130SN42"), UDI{Issuer: IssuerHIBCC, DI: "A123BJC5D6E71", Serial: "SN42", Expiry: Date{2028, 11, 30}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in, ref)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Parse(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
			again, err := Parse(got.HRF(), ref)
			if err != nil || again != got {
				t.Fatalf("round trip of %q: %+v, %v", got.HRF(), again, err)
			}
		})
	}
}

func withCheck(s string) string {
	c, err := hibcCheck(s)
	if err != nil {
		panic(err)
	}
	return s + string(c)
}

// TestParseRefuses: every malformed UDI is an error that says what is wrong.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		in, says string
		check    bool // wraps ErrCheckDigit
	}{
		{"(01)51022222233335(17)150707", "check digit", true},
		{"0151022222233335", "check digit", true},
		{"+A123BJC5D6E71H", "check digit", true},
		{"", "empty", false},
		{"(17)150707(10)A", "no GTIN", false},
		{"(01)5102222223333", "14 digits", false},
		{"(01)5102222223333X", "digits", false},
		{"(01)51022222233336(17)151307", "month 13", false},
		{"(01)51022222233336(17)150230", "no day 30", false},
		{"(01)51022222233336(10)" + strings.Repeat("A", 21), "1 to 20", false},
		{"(01)51022222233336(10)", "1 to 20", false},
		{"0151022222233336" + "10A B", "character set 82", false},
		{"(01)51022222233336(01)51022222233336", "twice", false},
		{"(01)51022222233336(30)5", "(30) is not part", false},
		{"01510222222333363012", "does not start with a GS1 AI", false},
		{"0151022222233336\x1d\x1d10A", "two separators", false},
		{"015102222223", "truncated", false},
		{"]X9015102222223333", "symbology", false},
		{"=/W4146EZ", "ICCBBA", false},
		{"01510222222333361715", "truncated", false},
		{"(01", "AI in parentheses", false},
		{"hello", "neither GS1", false},
		{withCheck("+$$52001510X3"), "secondary data alone", false},
		{withCheck("+1123BJC5D6E71"), "start with a letter", false},
		{withCheck("+A123BJC5D6E7X"), "unit of measure", false},
		{withCheck("+A123BJC5D6E71/$$9123"), "not read here", false},
		{withCheck("+A123BJC5D6E71/Q100"), "not read here", false},
		{withCheck("+A123BJC5D6E71/$$3281301LOT"), "month 13", false},
		{withCheck("+A123BJC5D6E71/$$52136610X3"), "Julian day", false},
		{"+A123", "too short", false},
		{strings.Repeat("0", 300), "too long", false},
	} {
		_, err := Parse(tc.in, ref)
		if err == nil {
			t.Errorf("Parse(%q) accepted", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Parse(%q) = %q, want it to say %q", tc.in, err, tc.says)
		}
		if errors.Is(err, ErrCheckDigit) != tc.check {
			t.Errorf("Parse(%q): errors.Is(ErrCheckDigit) = %v", tc.in, !tc.check)
		}
	}
}

func TestGTINCheckDigit(t *testing.T) {
	for _, g := range []string{"51022222233336", gs1ExampleGTIN, gs1USGTIN, "00012345600012"} {
		if err := CheckGTIN(g); err != nil {
			t.Errorf("%s: %v", g, err)
		}
		// Every other last digit is refused.
		for c := byte('0'); c <= '9'; c++ {
			if c == g[13] {
				continue
			}
			if err := CheckGTIN(g[:13] + string(c)); !errors.Is(err, ErrCheckDigit) {
				t.Errorf("%s%c accepted: %v", g[:13], c, err)
			}
		}
	}
}

func TestDateAfter(t *testing.T) {
	d := Date{2026, 6, 30}
	if d.After(time.Date(2026, 6, 30, 23, 59, 0, 0, time.UTC)) {
		t.Error("a device may be used on its expiry day")
	}
	if !d.After(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("a device is expired the day after")
	}
	m := Date{2026, 2, 0} // day not specified: the whole month
	if m.After(time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC)) || !m.After(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("a month-only expiry covers the month")
	}
	if v, err := DateFromInt(m.Int()); err != nil || v != m {
		t.Errorf("DateFromInt(%d) = %v, %v", m.Int(), v, err)
	}
	if _, err := DateFromInt(20261301); err == nil {
		t.Error("DateFromInt accepted month 13")
	}
}

// FuzzParse: Parse never panics, and what it accepts passes Check and reads
// back from its own forms as the same UDI.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		fdaGS1, "(01)" + gs1ExampleGTIN + "(17)281231(10)ABC123", "]d201" + gs1ExampleGTIN + "17281231" + "10ABC123\x1d21XYZ",
		"01" + gs1USGTIN + "21SN1\x1d10L2", hibcPrimary, "+H123PARTNO1234567890120/$$420020216LOT123456789012345/SXYZ456789012345678/16D20130202H",
		"+A123BJC5D6E71/$$52001510X3C", "(01)51022222233335", "=/W4146EZ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s, ref)
		if err != nil {
			return
		}
		if err := u.Check(); err != nil {
			t.Fatalf("Parse(%q) returned a UDI that fails Check: %v", s, err)
		}
		for _, form := range []string{u.HRF(), u.AIDC()} {
			again, err := Parse(form, ref)
			if err != nil || again != u {
				t.Fatalf("Parse(%q) = %+v; its form %q reads back as %+v, %v", s, u, form, again, err)
			}
		}
	})
}

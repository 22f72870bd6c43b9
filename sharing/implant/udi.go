package implant

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Issuing agencies of the UDIs this package reads.
const (
	IssuerGS1   = "gs1"
	IssuerHIBCC = "hibcc"
)

// ErrCheckDigit is wrapped by the error of a UDI whose GTIN check digit (GS1)
// or modulo 43 check character (HIBCC) does not match its data: a misread or
// mistyped label.
var ErrCheckDigit = errors.New("check digit does not match")

// Field limits (GS1 General Specifications; ANSI/HIBC 2.x).
const (
	maxLot    = 20 // GS1 AI (10), HIBCC lot
	maxSerial = 20 // GS1 AI (21), HIBCC serial
	maxInput  = 256
)

// UDI is a parsed unique device identifier: the device identifier (DI)
// and the production identifiers (PI) printed on a device's label.
type UDI struct {
	// Issuer is IssuerGS1 or IssuerHIBCC.
	Issuer string
	// DI is the device identifier: a GTIN-14 (GS1), or the labeler code,
	// product number and unit of measure (HIBCC, without the leading "+").
	DI string
	// Lot and Serial are the batch/lot and serial numbers ("" when absent).
	Lot    string
	Serial string
	// Expiry and Produced are the expiration and production dates (zero
	// when absent).
	Expiry   Date
	Produced Date
}

// Date is a calendar date as printed on a label. Day 0 is the GS1 "day not
// specified": the date stands for its whole month (see Last).
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// IsZero reports an absent date.
func (d Date) IsZero() bool { return d == Date{} }

// Last returns the last day the date covers: the date itself, or the last
// day of its month when the day is not specified.
func (d Date) Last() Date {
	if d.Day != 0 || d.IsZero() {
		return d
	}
	t := time.Date(d.Year, d.Month+1, 0, 0, 0, 0, 0, time.UTC)
	return Date{t.Year(), t.Month(), t.Day()}
}

// String formats the date as YYYY-MM-DD (YYYY-MM when the day is not
// specified); "" for the zero date.
func (d Date) String() string {
	switch {
	case d.IsZero():
		return ""
	case d.Day == 0:
		return fmt.Sprintf("%04d-%02d", d.Year, int(d.Month))
	}
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day)
}

// Int is the date as the integer YYYYMMDD (0 for the zero date), its form
// on the ledger.
func (d Date) Int() uint32 {
	if d.IsZero() {
		return 0
	}
	return uint32(d.Year*10000 + int(d.Month)*100 + d.Day)
}

// DateFromInt is the inverse of Date.Int; it checks the date.
func DateFromInt(v uint32) (Date, error) {
	if v == 0 {
		return Date{}, nil
	}
	d := Date{int(v / 10000), time.Month(v / 100 % 100), int(v % 100)}
	if err := d.check(true); err != nil {
		return Date{}, err
	}
	return d, nil
}

// After reports whether the day of t (in UTC) is after every day d covers:
// a device whose expiry is d may be used on d's last day, not the next.
func (d Date) After(t time.Time) bool {
	l := d.Last()
	y, m, day := t.UTC().Date()
	return y*10000+int(m)*100+day > l.Year*10000+int(l.Month)*100+l.Day
}

func (d Date) check(dayZero bool) error {
	if d.Year < 1900 || d.Year > 2199 {
		return fmt.Errorf("year %d out of range", d.Year)
	}
	if d.Month < 1 || d.Month > 12 {
		return fmt.Errorf("month %02d is not a month", int(d.Month))
	}
	if d.Day == 0 {
		if !dayZero {
			return errors.New("day 00 is not a day")
		}
		return nil
	}
	last := time.Date(d.Year, d.Month+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if d.Day < 1 || d.Day > last {
		return fmt.Errorf("%04d-%02d has no day %02d", d.Year, int(d.Month), d.Day)
	}
	return nil
}

// Parse reads a UDI in any of the forms a label or a scanner gives:
//
//   - GS1 human-readable: "(01)00614141999996(17)261231(10)A1B2(21)123";
//   - GS1 machine form, as a scanner transmits it: the AIs concatenated, a
//     variable-length field ended by the GS character (ASCII 29), optionally
//     after a symbology identifier ("]d2", "]C1", "]Q3") or a leading GS.
//     "<GS>", "{GS}" and "␝" are read as the GS character, for UDIs typed or
//     pasted from documents;
//   - HIBCC: "+" primary data ("+A123BJC5D6E71" and a modulo 43 check
//     character), alone or concatenated with secondary data ("/$$3…" for
//     expiry and lot, "/S" serial, "/16D" production date), asterisks of the
//     caption allowed around it.
//
// ref resolves GS1's two-digit years (GS1 General Specifications 7.12: a
// year is placed within 49 years before and 50 after ref's year). A
// malformed UDI, an unsupported AI or a wrong check digit is an error that
// says which; a wrong check digit wraps ErrCheckDigit.
func Parse(s string, ref time.Time) (UDI, error) {
	if len(s) > maxInput {
		return UDI{}, fmt.Errorf("udi: %d characters is too long for a UDI (at most %d)", len(s), maxInput)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return UDI{}, errors.New("udi: empty")
	}
	for _, alias := range []string{"<GS>", "{GS}", "␝"} {
		s = strings.ReplaceAll(s, alias, "\x1d")
	}
	if t := strings.Trim(s, "*"); strings.HasPrefix(t, "+") {
		return parseHIBCC(t, ref)
	}
	switch {
	case strings.HasPrefix(s, "("):
		// Labels often space the elements; GS1's character set has no
		// space, so a space is never data.
		return parseGS1HRI(strings.ReplaceAll(s, " ", ""), ref)
	case strings.HasPrefix(s, "="), strings.HasPrefix(s, "&"):
		return UDI{}, errors.New("udi: ICCBBA (ISBT 128) UDIs are not supported; use the GS1 or HIBCC UDI on the label")
	}
	return parseGS1Machine(s, ref)
}

// HRF is the UDI's human-readable form: GS1's "(01)…(11)…(17)…(10)…(21)…"
// or HIBCC's concatenated "+primary/secondary" with its check character.
func (u UDI) HRF() string {
	if u.Issuer == IssuerHIBCC {
		return hibccString(u)
	}
	var b strings.Builder
	b.WriteString("(01)" + u.DI)
	if !u.Produced.IsZero() {
		b.WriteString("(11)" + yymmdd(u.Produced))
	}
	if !u.Expiry.IsZero() {
		b.WriteString("(17)" + yymmdd(u.Expiry))
	}
	if u.Lot != "" {
		b.WriteString("(10)" + u.Lot)
	}
	if u.Serial != "" {
		b.WriteString("(21)" + u.Serial)
	}
	return b.String()
}

// AIDC is the UDI as a scanner transmits it (GS1: the AIs concatenated with
// GS after each variable-length field but the last; HIBCC: as HRF).
func (u UDI) AIDC() string {
	if u.Issuer == IssuerHIBCC {
		return hibccString(u)
	}
	var b strings.Builder
	b.WriteString("01" + u.DI)
	if !u.Produced.IsZero() {
		b.WriteString("11" + yymmdd(u.Produced))
	}
	if !u.Expiry.IsZero() {
		b.WriteString("17" + yymmdd(u.Expiry))
	}
	if u.Lot != "" {
		b.WriteString("10" + u.Lot)
		if u.Serial != "" {
			b.WriteByte(gs)
		}
	}
	if u.Serial != "" {
		b.WriteString("21" + u.Serial)
	}
	return b.String()
}

func yymmdd(d Date) string {
	return fmt.Sprintf("%02d%02d%02d", d.Year%100, int(d.Month), d.Day)
}

// Check verifies a UDI's fields as the ledger stores them: a known issuer,
// a well-formed DI with its check digit, lot and serial within their
// character sets and lengths, real dates. Parse returns only UDIs that pass.
func (u UDI) Check() error {
	switch u.Issuer {
	case IssuerGS1:
		if err := CheckGTIN(u.DI); err != nil {
			return err
		}
		if err := checkCSet82("lot (10)", u.Lot, maxLot); err != nil {
			return err
		}
		if err := checkCSet82("serial (21)", u.Serial, maxSerial); err != nil {
			return err
		}
	case IssuerHIBCC:
		if err := checkHIBCCDI(u.DI); err != nil {
			return err
		}
		if err := checkHIBCCField("lot", u.Lot, maxLot); err != nil {
			return err
		}
		if err := checkHIBCCField("serial", u.Serial, maxSerial); err != nil {
			return err
		}
	default:
		return fmt.Errorf("udi: unknown issuer %q (gs1 or hibcc)", u.Issuer)
	}
	for _, d := range []struct {
		name string
		d    Date
	}{{"expiry", u.Expiry}, {"production date", u.Produced}} {
		if !d.d.IsZero() {
			if err := d.d.check(true); err != nil {
				return fmt.Errorf("udi: %s: %w", d.name, err)
			}
		}
	}
	return nil
}

// ---- GS1 ----

const gs byte = 0x1d // FNC1 as transmitted: ASCII group separator

// ai is one GS1 application identifier this package reads.
type ai struct {
	code   string
	fixed  int // fixed length of the data, or 0
	max    int // maximum length of variable-length data
	name   string
	digits bool
}

// gs1AIs are the AIs of a device UDI (FDA 21 CFR 830, GS1 Healthcare).
var gs1AIs = []ai{
	{code: "01", fixed: 14, name: "GTIN", digits: true},
	{code: "11", fixed: 6, name: "production date", digits: true},
	{code: "17", fixed: 6, name: "expiration date", digits: true},
	{code: "10", max: maxLot, name: "batch/lot"},
	{code: "21", max: maxSerial, name: "serial number"},
}

func lookupAI(code string) (ai, bool) {
	for _, a := range gs1AIs {
		if a.code == code {
			return a, true
		}
	}
	return ai{}, false
}

func supportedAIs() string {
	var names []string
	for _, a := range gs1AIs {
		names = append(names, "("+a.code+") "+a.name)
	}
	return strings.Join(names, ", ")
}

// gs1Builder collects AIs in any order and checks the whole.
type gs1Builder struct {
	u    UDI
	seen map[string]bool
	ref  time.Time
}

func (b *gs1Builder) set(code, val string) error {
	a, ok := lookupAI(code)
	if !ok {
		return fmt.Errorf("udi: GS1 AI (%s) is not part of a device UDI read here (supported: %s)", code, supportedAIs())
	}
	if b.seen[code] {
		return fmt.Errorf("udi: GS1 AI (%s) appears twice", code)
	}
	b.seen[code] = true
	if a.fixed > 0 && len(val) != a.fixed {
		return fmt.Errorf("udi: GS1 AI (%s) %s must be %d digits, got %d (%q)", code, a.name, a.fixed, len(val), val)
	}
	if a.digits && !allDigits(val) {
		return fmt.Errorf("udi: GS1 AI (%s) %s must be digits, got %q", code, a.name, val)
	}
	if a.max > 0 && (len(val) == 0 || len(val) > a.max) {
		return fmt.Errorf("udi: GS1 AI (%s) %s must be 1 to %d characters, got %d", code, a.name, a.max, len(val))
	}
	switch code {
	case "01":
		b.u.DI = val
		return CheckGTIN(val)
	case "10":
		b.u.Lot = val
		return checkCSet82("lot (10)", val, maxLot)
	case "21":
		b.u.Serial = val
		return checkCSet82("serial (21)", val, maxSerial)
	case "11", "17":
		d, err := gs1Date(val, b.ref)
		if err != nil {
			return fmt.Errorf("udi: GS1 AI (%s) %s %q: %w", code, a.name, val, err)
		}
		if code == "11" {
			b.u.Produced = d
		} else {
			b.u.Expiry = d
		}
	}
	return nil
}

func (b *gs1Builder) done() (UDI, error) {
	if !b.seen["01"] {
		return UDI{}, errors.New("udi: no GTIN: a GS1 UDI starts with AI (01) and the 14-digit GTIN")
	}
	b.u.Issuer = IssuerGS1
	if err := b.u.Check(); err != nil {
		return UDI{}, err
	}
	return b.u, nil
}

// parseGS1HRI reads "(01)…(17)…(10)…". A variable-length value ends at the
// next "(NN)" naming an AI this package reads, or at the end: parentheses
// are in GS1's character set, so "(" alone does not end a lot.
func parseGS1HRI(s string, ref time.Time) (UDI, error) {
	b := &gs1Builder{seen: map[string]bool{}, ref: ref}
	for s != "" {
		end := strings.IndexByte(s, ')')
		if s[0] != '(' || end < 3 || end > 5 || !allDigits(s[1:end]) {
			return UDI{}, fmt.Errorf("udi: expected an AI in parentheses such as (01) at %q", clip(s))
		}
		code := s[1:end]
		s = s[end+1:]
		a, ok := lookupAI(code)
		if !ok {
			return UDI{}, b.set(code, "")
		}
		var val string
		if a.fixed > 0 {
			n := min(a.fixed, len(s))
			if i := strings.IndexByte(s, '('); i >= 0 && i < n {
				n = i
			}
			val, s = s[:n], s[n:]
		} else {
			n := nextHRIAI(s)
			val, s = s[:n], s[n:]
		}
		if err := b.set(code, strings.TrimRight(val, " ")); err != nil {
			return UDI{}, err
		}
	}
	return b.done()
}

// nextHRIAI returns the index of the next "(NN)" that names a supported AI,
// or len(s).
func nextHRIAI(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] != '(' {
			continue
		}
		if j := strings.IndexByte(s[i:], ')'); j >= 3 && j <= 5 && allDigits(s[i+1:i+j]) {
			if _, ok := lookupAI(s[i+1 : i+j]); ok {
				return i
			}
		}
	}
	return len(s)
}

// parseGS1Machine reads the AIs concatenated, GS-delimited.
func parseGS1Machine(s string, ref time.Time) (UDI, error) {
	for _, sym := range []string{"]d2", "]C1", "]Q3", "]e0", "]J1"} {
		if strings.HasPrefix(s, sym) {
			s = s[len(sym):]
			break
		}
	}
	if strings.HasPrefix(s, "]") {
		return UDI{}, fmt.Errorf("udi: symbology identifier %q is not one of a GS1 symbol (]d2, ]C1, ]Q3, ]e0, ]J1)", clip(s))
	}
	b := &gs1Builder{seen: map[string]bool{}, ref: ref}
	s = strings.TrimLeft(s, "\x1d")
	if s == "" {
		return UDI{}, errors.New("udi: no data after the symbology identifier")
	}
	if !isDigit(s[0]) {
		return UDI{}, fmt.Errorf("udi: %q is neither GS1 (digits, or \"(01)\"), nor HIBCC (\"+\")", clip(s))
	}
	for s != "" {
		code, a, ok := matchAI(s)
		if !ok {
			return UDI{}, fmt.Errorf("udi: %q does not start with a GS1 AI of a device UDI (supported: %s)", clip(s), supportedAIs())
		}
		s = s[len(code):]
		var val string
		if a.fixed > 0 {
			if len(s) < a.fixed {
				return UDI{}, fmt.Errorf("udi: GS1 AI (%s) %s must be %d digits, got %d (%q): truncated?", code, a.name, a.fixed, len(s), s)
			}
			val, s = s[:a.fixed], s[a.fixed:]
			// A GS after a fixed-length field is not needed but
			// tolerated: some printers emit it.
			if s != "" && s[0] == gs {
				s = s[1:]
			}
		} else {
			n := strings.IndexByte(s, gs)
			if n < 0 {
				n = len(s)
			}
			val, s = s[:n], s[n:]
			if s != "" {
				s = s[1:]
			}
		}
		if err := b.set(code, val); err != nil {
			return UDI{}, err
		}
		if s != "" && s[0] == gs {
			return UDI{}, errors.New("udi: two separators in a row")
		}
	}
	return b.done()
}

func matchAI(s string) (string, ai, bool) {
	if len(s) < 2 {
		return "", ai{}, false
	}
	a, ok := lookupAI(s[:2])
	return s[:2], a, ok
}

// gs1Date reads YYMMDD; the century follows GS1's sliding window around ref.
func gs1Date(v string, ref time.Time) (Date, error) {
	yy, _ := strconv.Atoi(v[0:2])
	mm, _ := strconv.Atoi(v[2:4])
	dd, _ := strconv.Atoi(v[4:6])
	cur := ref.UTC().Year()
	century := cur / 100 * 100
	diff := yy - cur%100
	switch {
	case diff >= 51:
		century -= 100
	case diff <= -50:
		century += 100
	}
	d := Date{century + yy, time.Month(mm), dd}
	return d, d.check(true)
}

// CheckGTIN checks a GTIN-14: 14 digits whose last is the GS1 modulo 10
// check digit of the others.
func CheckGTIN(g string) error {
	if len(g) != 14 || !allDigits(g) {
		return fmt.Errorf("udi: a GTIN is 14 digits (pad GTIN-12 and GTIN-13 with leading zeros), got %q", clip(g))
	}
	if want := gtinCheckDigit(g[:13]); g[13] != want {
		return fmt.Errorf("udi: GTIN %s: %w (its last digit is %c, the check digit of the others is %c)", g, ErrCheckDigit, g[13], want)
	}
	return nil
}

// gtinCheckDigit computes the GS1 check digit of the digits before it:
// weights 3 and 1 alternately from the right.
func gtinCheckDigit(body string) byte {
	sum := 0
	for i := 0; i < len(body); i++ {
		d := int(body[len(body)-1-i] - '0')
		if i%2 == 0 {
			d *= 3
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

// checkCSet82 checks GS1 AI encodable character set 82 (General
// Specifications figure 7.11-1) and the length.
func checkCSet82(name, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("udi: %s is %d characters, at most %d", name, len(v), max)
	}
	for i := 0; i < len(v); i++ {
		if !cset82(v[i]) {
			return fmt.Errorf("udi: %s %q has %q, not in GS1's character set 82", name, clip(v), v[i])
		}
	}
	return nil
}

func cset82(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return true
	}
	return strings.IndexByte(`!"%&'()*+,-./:;<=>?_`, c) >= 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// clip shortens s for an error message and shows control characters.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ReplaceAll(s, "\x1d", "<GS>")
}

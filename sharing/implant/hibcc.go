package implant

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HIBCC (ANSI/HIBC 2.x Supplier Labeling Standard), the parts a device UDI
// uses: the primary data structure (labeler code, product number, unit of
// measure) alone or concatenated with secondary data (expiry and lot, or a
// serial number) and the supplemental serial and production date, each
// symbol ending in a modulo 43 check character over everything before it.

// hibcSet is HIBC's character set; a character's value is its index, the
// unit of the modulo 43 check.
const hibcSet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"

func hibcCheck(s string) (byte, error) {
	sum := 0
	for i := 0; i < len(s); i++ {
		v := strings.IndexByte(hibcSet, s[i])
		if v < 0 {
			return 0, fmt.Errorf("udi: HIBCC: %q is not in HIBC's character set (0-9, A-Z, - . space $ / + %%)", s[i])
		}
		sum += v
	}
	return hibcSet[sum%43], nil
}

// parseHIBCC reads "+primary[/secondary[/supplement…]]C" where C is the
// check character.
func parseHIBCC(t string, ref time.Time) (UDI, error) {
	if len(t) < 8 {
		return UDI{}, fmt.Errorf("udi: HIBCC %q is too short: \"+\", a 4-character labeler code, a product number, a unit of measure digit and a check character", t)
	}
	body, got := t[:len(t)-1], t[len(t)-1]
	want, err := hibcCheck(body)
	if err != nil {
		return UDI{}, err
	}
	if got == '_' { // the caption's stand-in for a space check character
		got = ' '
	}
	if got != want {
		return UDI{}, fmt.Errorf("udi: HIBCC %s: %w (the check character is %q, the data's is %q)", t, ErrCheckDigit, got, want)
	}
	parts := strings.Split(body[1:], "/")
	if strings.HasPrefix(parts[0], "$") {
		return UDI{}, errors.New("udi: HIBCC secondary data alone has no device identifier: scan the primary symbol, or the concatenated one")
	}
	u := UDI{Issuer: IssuerHIBCC, DI: parts[0]}
	if err := checkHIBCCDI(u.DI); err != nil {
		return UDI{}, err
	}
	for i, p := range parts[1:] {
		if err := hibccPart(&u, p, i == 0, ref); err != nil {
			return UDI{}, err
		}
	}
	return u, u.Check()
}

// hibccPart reads one "/"-separated part after the primary data.
func hibccPart(u *UDI, p string, first bool, ref time.Time) error {
	switch {
	case first && strings.HasPrefix(p, "$$+"):
		rest, err := hibccDate(u, p[3:], ref)
		if err != nil {
			return err
		}
		return setOnce(&u.Serial, "serial", rest)
	case first && strings.HasPrefix(p, "$$"):
		rest, err := hibccDate(u, p[2:], ref)
		if err != nil || rest == "" { // an expiry without a lot
			return err
		}
		return setOnce(&u.Lot, "lot", rest)
	case first && strings.HasPrefix(p, "$+"):
		return setOnce(&u.Serial, "serial", p[2:])
	case first && strings.HasPrefix(p, "$"):
		return setOnce(&u.Lot, "lot", p[1:])
	case first && len(p) >= 5 && allDigits(p[:5]):
		// The older form: a Julian date YYJJJ, then the lot.
		d, err := julian(p[:5], ref)
		if err != nil {
			return err
		}
		u.Expiry = d
		return setOnce(&u.Lot, "lot", p[5:])
	case strings.HasPrefix(p, "S"):
		return setOnce(&u.Serial, "serial", p[1:])
	case strings.HasPrefix(p, "14D"), strings.HasPrefix(p, "16D"):
		v := p[3:]
		if len(v) != 8 || !allDigits(v) {
			return fmt.Errorf("udi: HIBCC /%s needs a date YYYYMMDD, got %q", p[:3], v)
		}
		n, _ := strconv.Atoi(v)
		d := Date{n / 10000, time.Month(n / 100 % 100), n % 100}
		if err := d.check(false); err != nil {
			return fmt.Errorf("udi: HIBCC /%s %s: %w", p[:3], v, err)
		}
		target := &u.Expiry
		if p[:2] == "16" {
			target = &u.Produced
		}
		if !target.IsZero() {
			return fmt.Errorf("udi: HIBCC /%s repeats a date already given", p[:3])
		}
		*target = d
		return nil
	}
	return fmt.Errorf("udi: HIBCC data %q is not read here (read: $$ expiry and lot, $ lot, $+ serial, /S serial, /14D expiry, /16D production date)", clip(p))
}

// hibccDate reads the date that follows "$$": its format flag and value.
func hibccDate(u *UDI, s string, ref time.Time) (string, error) {
	if s == "" {
		return "", errors.New("udi: HIBCC \"$$\" without a date format")
	}
	var n int // digits of the date after the flag
	flag := s[0]
	switch flag {
	case '0', '1': // MMYY, no flag of its own
		n, flag = 4, 'M'
	case '2', '3':
		n = 6
	case '4':
		n = 8
	case '5':
		n = 5
	case '6':
		n = 7
	case '7':
		return s[1:], nil
	default:
		return "", fmt.Errorf("udi: HIBCC date format %q (quantities, $$8 and $$9) is not read here", s[0])
	}
	if flag != 'M' {
		s = s[1:]
	}
	if len(s) < n || !allDigits(s[:n]) {
		return "", fmt.Errorf("udi: HIBCC expiry %q is short of its %d digits", clip(s), n)
	}
	v := s[:n]
	var d Date
	var err error
	switch flag {
	case 'M':
		d, err = gs1Date(v[2:4]+v[0:2]+"00", ref)
	case '2':
		d, err = gs1Date(v[4:6]+v[0:4], ref)
	case '3', '4':
		d, err = gs1Date(v[0:6], ref)
		if err == nil && d.Day == 0 {
			err = errors.New("day 00 is not a day")
		}
	case '5', '6':
		d, err = julian(v[:5], ref)
	}
	if err != nil {
		return "", fmt.Errorf("udi: HIBCC expiry %q: %w", v, err)
	}
	u.Expiry = d
	return s[n:], nil
}

func julian(v string, ref time.Time) (Date, error) {
	d, err := gs1Date(v[:2]+"0101", ref)
	if err != nil {
		return Date{}, err
	}
	j, _ := strconv.Atoi(v[2:5])
	last := time.Date(d.Year, 12, 31, 0, 0, 0, 0, time.UTC).YearDay()
	if j < 1 || j > last {
		return Date{}, fmt.Errorf("udi: HIBCC Julian day %03d is not a day of %d", j, d.Year)
	}
	t := time.Date(d.Year, 1, j, 0, 0, 0, 0, time.UTC)
	return Date{t.Year(), t.Month(), t.Day()}, nil
}

func setOnce(dst *string, name, v string) error {
	if v == "" {
		return fmt.Errorf("udi: HIBCC %s is empty", name)
	}
	if *dst != "" {
		return fmt.Errorf("udi: HIBCC %s appears twice", name)
	}
	*dst = v
	return nil
}

// checkHIBCCDI checks a labeler code (a letter and three letters or
// digits), a product number and a unit of measure digit.
func checkHIBCCDI(di string) error {
	if len(di) < 6 || len(di) > 23 {
		return fmt.Errorf("udi: HIBCC device identifier %q must be 6 to 23 characters: labeler code (4), product number (1 to 18), unit of measure (1)", clip(di))
	}
	if di[0] < 'A' || di[0] > 'Z' {
		return fmt.Errorf("udi: HIBCC labeler code %q must start with a letter", di[:4])
	}
	for i := 0; i < len(di); i++ {
		if !(isDigit(di[i]) || di[i] >= 'A' && di[i] <= 'Z') {
			return fmt.Errorf("udi: HIBCC device identifier %q has %q: upper-case letters and digits only", clip(di), di[i])
		}
	}
	if !isDigit(di[len(di)-1]) {
		return fmt.Errorf("udi: HIBCC device identifier %q must end with its unit of measure digit", clip(di))
	}
	return nil
}

func checkHIBCCField(name, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("udi: HIBCC %s is %d characters, at most %d", name, len(v), max)
	}
	for i := 0; i < len(v); i++ {
		if !(isDigit(v[i]) || v[i] >= 'A' && v[i] <= 'Z') {
			return fmt.Errorf("udi: HIBCC %s %q has %q: upper-case letters and digits only", name, clip(v), v[i])
		}
	}
	return nil
}

// hibccString renders a HIBCC UDI as one concatenated symbol's data with
// its check character.
func hibccString(u UDI) string {
	var b strings.Builder
	b.WriteString("+" + u.DI)
	date := ""
	switch {
	case !u.Expiry.IsZero() && u.Expiry.Day == 0:
		date = fmt.Sprintf("%02d%02d", int(u.Expiry.Month), u.Expiry.Year%100)
	case !u.Expiry.IsZero():
		date = "3" + yymmdd(u.Expiry)
	}
	serial := u.Serial
	switch {
	case u.Lot == "" && serial != "" && date != "":
		b.WriteString("/$$+" + date + serial)
		serial = ""
	case u.Lot == "" && serial != "":
		b.WriteString("/$+" + serial)
		serial = ""
	case date != "":
		b.WriteString("/$$" + date + u.Lot)
	case u.Lot != "":
		b.WriteString("/$" + u.Lot)
	}
	if serial != "" {
		b.WriteString("/S" + serial)
	}
	if !u.Produced.IsZero() {
		b.WriteString(fmt.Sprintf("/16D%04d%02d%02d", u.Produced.Year, int(u.Produced.Month), u.Produced.Day))
	}
	c, err := hibcCheck(b.String())
	if err != nil { // a UDI that passed Check has only HIBC characters
		return b.String()
	}
	return b.String() + string(c)
}

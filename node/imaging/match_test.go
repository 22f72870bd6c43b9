package imaging

import "testing"

func TestMatchKey(t *testing.T) {
	for _, c := range []struct {
		vr, key string
		vals    []string
		fuzzy   bool
		want    bool
	}{
		{"PN", "", []string{"DOE^J"}, false, true},
		{"PN", "*", nil, false, true},
		{"PN", "doe*", []string{"DOE^J"}, false, true}, // PN ignores case
		{"PN", "DOE^J", []string{"doe^j"}, false, true},
		{"PN", "doe", []string{"DOE^JOHN"}, false, false},
		{"PN", "doe", []string{"DOE^JOHN"}, true, true},     // fuzzy: a component's start
		{"PN", "joh", []string{"DOE^JOHN"}, true, true},     // any component
		{"PN", "jose", []string{"García^José"}, true, true}, // accents ignored
		{"PN", "smith", []string{"DOE^JOHN"}, true, false},
		{"PN", "d?e*", []string{"DOE^J"}, false, true},
		{"LO", "abc*", []string{"ABCD"}, false, false}, // other strings keep case
		{"LO", "AB*", []string{"ABCD"}, false, true},
		{"CS", "ct", []string{"CT"}, false, true},
		{"CS", `MR\CT`, []string{"CR", "CT"}, false, true}, // a list, any value
		{"CS", `MR\US`, []string{"CR", "CT"}, false, false},
		{"UI", `1.2\1.3`, []string{"1.3"}, false, true},
		{"UI", "1.2", []string{"1.2.3"}, false, false},
		{"DA", "20240101-20240131", []string{"20240115"}, false, true},
		{"DA", "20240101-20240131", []string{"20240201"}, false, false},
		{"DA", "20240101-", []string{"20250101"}, false, true},
		{"DA", "-20231231", []string{"20240101"}, false, false},
		{"DA", "20240101-", []string{""}, false, false}, // no date: no range matches
		{"DA", "20240115", []string{"20240115"}, false, true},
		{"TM", "0800-1200", []string{"101530.5"}, false, true},
		{"TM", "0800-1000", []string{"101530"}, false, false},
		{"TM", "1015", []string{"101500"}, false, true},
		{"IS", "7", []string{"7"}, false, true},
		{"IS", "7", []string{"17"}, false, false},
	} {
		if got := matchKey(c.vr, c.key, c.vals, c.fuzzy); got != c.want {
			t.Errorf("matchKey(%s, %q, %q, fuzzy %v) = %v, want %v", c.vr, c.key, c.vals, c.fuzzy, got, c.want)
		}
	}
}

func FuzzMatchKey(f *testing.F) {
	for _, s := range []string{"doe*", "2024-", "*?*", `A\B`, "\xff", "-"} {
		f.Add("PN", s, "DOE^J")
		f.Add("DA", s, "20240101")
		f.Add("TM", s, "1015")
	}
	f.Fuzz(func(t *testing.T, vr, key, val string) {
		matchKey(vr, key, []string{val}, true)
	})
}

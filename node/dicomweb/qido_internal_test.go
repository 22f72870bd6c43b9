package dicomweb

import "testing"

func TestWildMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"*", "", true},
		{"*", "DOE^J", true},
		{"DOE*", "DOE^J", true},
		{"DOE*", "DO", false},
		{"D?E^J", "DOE^J", true},
		{"D?E", "DOE^J", false},
		{"*^J", "DOE^J", true},
		{"*O*J", "DOE^J", true},
		{"**J", "DOE^J", true},
		{"doe*", "DOE^J", false}, // case-sensitive today (issue #14 asks for PN case-insensitivity)
		{"Å*", "Åsa", true},
	} {
		if got := wildMatch(c.pattern, c.s); got != c.want {
			t.Errorf("wildMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestDateRange(t *testing.T) {
	for _, c := range []struct {
		v, from, to string
		bad         bool
	}{
		{"", "", "", false},
		{"20240101", "20240101", "20240101", false},
		{"2024-01-01", "", "", true}, // DA has no dashes: that reads as a range
		{"20240101-", "20240101", "", false},
		{"-20240131", "", "20240131", false},
		{"20240101-20240131", "20240101", "20240131", false},
		{"2024", "", "", true},
		{"20240101-2024", "", "", true},
		{"x-", "", "", true},
	} {
		from, to, err := dateRange(c.v)
		if (err != nil) != c.bad || from != c.from || to != c.to {
			t.Errorf("dateRange(%q) = %q, %q, %v; want %q, %q, bad %v", c.v, from, to, err, c.from, c.to, c.bad)
		}
	}
}

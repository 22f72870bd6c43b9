package console

import "testing"

// TestCLIText: a terminal message keeps its `commands` as code and
// everything else escaped, backquotes or not.
func TestCLIText(t *testing.T) {
	for in, want := range map[string]string{
		"run `medmesh status ID` to see each": "run <code>medmesh status ID</code> to see each",
		"<b>`<i>`</b>":                        "&lt;b&gt;<code>&lt;i&gt;</code>&lt;/b&gt;",
		"an odd ` backquote <x>":              "an odd ` backquote &lt;x&gt;",
		"":                                    "",
	} {
		if got := string(cliText(in)); got != want {
			t.Errorf("cliText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPersonName(t *testing.T) {
	for in, want := range map[string]string{
		"DEMO^PATIENT1":    "DEMO, PATIENT1",
		"Doe^John^Q^Dr^Jr": "Doe, Dr John Q, Jr",
		"Doe":              "Doe",
		"^John":            "John",
		"Yamada^Tarou=山田^太郎=やまだ^たろう": "Yamada, Tarou",
		"ANON^BE15CB0EFA7357842105":  "ANON, BE15CB0EFA7357842105",
		"":                           "",
	} {
		if got := personName(in); got != want {
			t.Errorf("personName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n         int
		one, many string
		want      string
	}{{0, "record", "", "0 records"}, {1, "record", "", "1 record"}, {4, "record", "", "4 records"}, {1, "study", "studies", "1 study"}, {2, "study", "studies", "2 studies"}} {
		var got string
		if c.many == "" {
			got = plural(c.n, c.one)
		} else {
			got = plural(c.n, c.one, c.many)
		}
		if got != c.want {
			t.Errorf("plural(%d, %q) = %q, want %q", c.n, c.one, got, c.want)
		}
	}
}

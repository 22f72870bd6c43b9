package api

import "testing"

// A record's name is chosen by its owner, who may be hostile: it never
// names a file outside the directory get writes into.
func TestSafeFileName(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":              "report.pdf",
		"scan report (é).pdf":     "scan report (é).pdf",
		".hidden":                 ".hidden",
		"a/b/c.txt":               "c.txt",
		"../../etc/passwd":        "passwd",
		"/etc/shadow":             "shadow",
		"dir/":                    "dir",
		"..":                      "",
		".":                       "",
		"a/..":                    "",
		"":                        "",
		"/":                       "",
		"bell\a.txt":              "",
		"new\nline":               "",
		"\xff\xfe":                "",
		string(make([]byte, 256)): "",
	} {
		if got := SafeFileName(in); got != want {
			t.Errorf("SafeFileName(%q) = %q, want %q", in, got, want)
		}
	}
}

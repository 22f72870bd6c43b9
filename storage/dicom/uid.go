package dicom

import (
	"fmt"
	"strings"
)

// MaxUIDLen is the longest UID medmesh stores. PS3.5 9.1 allows 64
// characters; archives hold longer ones, which dcmtk and Orthanc accept, so
// medmesh does too, up to this bound (a UID becomes a file name on export).
const MaxUIDLen = 128

// CheckUID is the one rule for every UID medmesh writes and reads: at
// import (Scan), in a study index (EncodeStudyMeta and DecodeStudyMeta), on
// export, DICOMweb and de-identification.
//
// A UID that PS3.5 9.1 allows (digits in dot-separated components, no
// leading zero in a component, at most 64 characters) gives ("", nil).
//
// A UID that is not conformant but that medmesh stores as it is, as dcmtk
// and Orthanc do (letters, e.g. 64 hex digits; leading zeros; empty
// components; up to MaxUIDLen characters), gives a warning that says why,
// and a nil error. Such a UID is still safe as a file name and in a URL
// path: it is made only of ASCII letters, digits, '.', '-' and '_', and is
// not "." or "..".
//
// Anything else (empty, longer than MaxUIDLen, several values, spaces,
// slashes, other characters) gives an error wrapping ErrBadUID: it cannot be
// stored, because it could not be exported or served back.
func CheckUID(uid string) (warning string, err error) {
	why, problem := uidCheck(uid)
	if problem != "" {
		return "", fmt.Errorf("%w: %s", ErrBadUID, problem)
	}
	if len(why) == 0 {
		return "", nil
	}
	return "not a conformant UID (PS3.5 9.1): " + strings.Join(why, ", "), nil
}

// uidCheck is CheckUID's rule: problem says why uid cannot be stored ("" if
// it can); why lists how a storable uid departs from PS3.5 9.1.
func uidCheck(uid string) (why []string, problem string) {
	if uid == "" {
		return nil, "empty"
	}
	if len(uid) > MaxUIDLen {
		return nil, fmt.Sprintf("%q has %d characters, medmesh keeps at most %d", uid, len(uid), MaxUIDLen)
	}
	if uid == "." || uid == ".." {
		return nil, fmt.Sprintf("%q is not a name", uid)
	}
	letters := false
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		switch {
		case c >= '0' && c <= '9' || c == '.':
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_':
			letters = true
		case c == '\\':
			return nil, fmt.Sprintf("%q has several values", uid)
		default:
			return nil, fmt.Sprintf("%q contains %q (medmesh keeps letters, digits, '.', '-' and '_')", uid, c)
		}
	}
	if letters {
		why = append(why, "characters other than digits and '.'")
	}
	if len(uid) > 64 {
		why = append(why, fmt.Sprintf("%d characters (more than 64)", len(uid)))
	}
	empty, zero := false, false
	for _, c := range strings.Split(uid, ".") {
		empty = empty || c == ""
		zero = zero || len(c) > 1 && c[0] == '0'
	}
	if empty {
		why = append(why, "an empty component")
	}
	if zero {
		why = append(why, "a component with a leading zero")
	}
	return why, ""
}

// ConformantUID reports whether s is a UID as PS3.5 9.1 defines it.
func ConformantUID(s string) bool {
	w, err := CheckUID(s)
	return err == nil && w == ""
}

package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestKinds(t *testing.T) {
	cause := io.ErrUnexpectedEOF
	for _, c := range []struct {
		err  error
		kind Kind
		hint string
		msg  string
	}{
		{NotFoundf("check the ID", "unknown record %s", "x"), NotFound, "check the ID", "unknown record x"},
		{Forbiddenf("", "no"), Forbidden, "", "no"},
		{Invalidf("h", "read: %w", cause), Invalid, "h", "read: unexpected EOF"},
		{fmt.Errorf("outer: %w", Conflictf("wait", "not yet")), Conflict, "wait", "outer: not yet"},
		{Wrap(Unavailable, "retry", cause), Unavailable, "retry", "unexpected EOF"},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), Unavailable, "", "fetch: context deadline exceeded"},
		{errors.New("disk on fire"), Internal, "", "disk on fire"},
	} {
		if KindOf(c.err) != c.kind || HintOf(c.err) != c.hint || c.err.Error() != c.msg {
			t.Errorf("%v: kind %v hint %q, want %v %q", c.err, KindOf(c.err), HintOf(c.err), c.kind, c.hint)
		}
	}
	if !errors.Is(Invalidf("", "x: %w", cause), cause) {
		t.Fatal("the cause is lost")
	}
	if Wrap(NotFound, "", nil) != nil || Is(nil, Internal) {
		t.Fatal("nil handling")
	}
}

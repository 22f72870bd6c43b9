package ledger

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

type escapePayload struct {
	Key string `cbor:"1,keyasint"`
}

// testTypes are the types the package's tests run: the built-in ones and a
// plug-in type that writes whatever key its payload names.
func testTypes() []TypeSpec {
	return append(Builtin(), TypeSpec{
		Name:     "test.keys",
		New:      func() any { return new(escapePayload) },
		Validate: func(v View, e *Entry, pl any) error { return nil },
		Apply: func(t Txn, e *Entry, pl any) error {
			t.Put(pl.(*escapePayload).Key, []byte("x"))
			return nil
		},
	})
}

// A plug-in type's state stays in its own area: a key that would climb out
// of it (the datastore cleans "..") fails the entry instead of writing core
// state, and changes nothing.
func TestPluginStateKeysConfined(t *testing.T) {
	w := newWorld(t, 1)
	l := openNode(t, w.admin, w.genesis)
	ctx := context.Background()
	if _, err := l.Append(ctx, "test.keys", &escapePayload{Key: "ok/key-1"}); err != nil {
		t.Fatalf("good key: %v", err)
	}
	before := l.Digest()
	for _, bad := range []string{"../../m/evil", "a/../../b", "/abs", "a//b", "", "sp ace", strings.Repeat("k", 600)} {
		if _, err := l.Append(ctx, "test.keys", &escapePayload{Key: bad}); err == nil {
			t.Errorf("key %q accepted", bad)
		}
		if !bytes.Equal(before, l.Digest()) {
			t.Fatalf("key %q changed the state", bad)
		}
	}
}

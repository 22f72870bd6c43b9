package ledger

import (
	"bytes"
	"context"
	"testing"
)

// The same entries give the same verdicts, state and digest on a MemStore
// as on a node's badger store: tests on the MemStore speak for nodes.
func TestMemStoreMatchesBadger(t *testing.T) {
	ctx := context.Background()
	es, w, _, _ := fastPathStream(t)
	disk := openNode(t, w.admin, w.genesis)
	mem, err := Open(ctx, Options{Store: NewMemStore(), Key: w.admin.key, Genesis: w.genesis, Logger: quietLogger(), Types: testTypes()})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for i, e := range es {
		if vd, vm := verdict(disk.Ingest(ctx, e.raw)), verdict(mem.Ingest(ctx, e.raw)); vd != vm {
			t.Fatalf("entry %d (%s): badger %s, memory %s", i, e.Type, vd, vm)
		}
	}
	if !bytes.Equal(disk.Digest(), mem.Digest()) || !equalCids(disk.Heads(), mem.Heads()) {
		t.Fatal("badger and memory stores disagree")
	}
	for _, l := range []*Ledger{disk, mem} {
		logs, err := l.Log(ctx, "", 0)
		if err != nil || len(logs) < len(es)/2 {
			t.Fatalf("log: %d entries, %v", len(logs), err)
		}
		if err := l.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dl, _ := disk.Log(ctx, TypeGrant, 3)
	ml, _ := mem.Log(ctx, TypeGrant, 3)
	if len(dl) != 3 || len(ml) != 3 || dl[0].CID() != ml[0].CID() || dl[2].CID() != ml[2].CID() {
		t.Fatal("typed logs with a limit differ")
	}
}

// A MemStore lists in key order across batches, deletes included.
func TestMemStoreScan(t *testing.T) {
	ctx := context.Background()
	m := NewMemStore()
	write := func(put []string, del ...string) {
		b, _ := m.Batch(ctx)
		for _, k := range put {
			b.Put(k, []byte(k))
		}
		for _, k := range del {
			b.Delete(k)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write([]string{"/a/3", "/a/1", "/b/1"})
	write([]string{"/a/2", "/a/0"}, "/a/3", "/zz")
	var got []string
	if err := m.Scan(ctx, "/a/", false, func(k string, v []byte) bool {
		if string(v) != k {
			t.Fatalf("value of %s: %q", k, v)
		}
		got = append(got, k)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := "/a/0 /a/1 /a/2"; joinStrings(got) != want {
		t.Fatalf("scan: %s, want %s", joinStrings(got), want)
	}
	if _, ok, _ := m.Get(ctx, "/a/3"); ok {
		t.Fatal("deleted key still there")
	}
}

func joinStrings(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

package ledger

import (
	"bytes"
	"context"
	"errors"
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

// A storage failure reaches the caller: State's queries return it, Ingest
// and Append return it without applying anything, and the Ledger's query
// methods without an error result log it and count it in
// medmesh_ledger_read_errors_total instead of answering silently.
func TestStorageFailuresSurface(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	st := &flakyStore{Store: NewMemStore()}
	l, err := Open(ctx, Options{Store: st, Key: w.admin.key, Genesis: w.genesis, Logger: quietLogger(), Types: testTypes()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w.setup(t, l)
	rec := recordPayload(t, w.members[1], "b").Record
	if _, ok := l.Record(rec); !ok {
		t.Fatal("record not found")
	}
	heads := l.Heads()
	st.set(errors.New("disk failed"), nil)
	if _, ok, err := l.State().Record(ctx, rec); err == nil || ok {
		t.Fatalf("State().Record on a failed disk: ok %v, err %v", ok, err)
	}
	if _, err := l.State().Grants(ctx, rec); err == nil {
		t.Fatal("State().Grants on a failed disk: no error")
	}
	before := counterValue(l.met.readErrors.WithLabelValues("record"))
	if _, ok := l.Record(rec); ok {
		t.Fatal("Record answered from a failed disk")
	}
	if got := counterValue(l.met.readErrors.WithLabelValues("record")) - before; got != 1 {
		t.Fatalf("read_errors{query=record} grew by %v", got)
	}
	if _, err := l.Append(ctx, TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()}); err == nil || isReject(err) {
		t.Fatalf("Append on a failed disk: %v", err)
	}
	st.set(nil, errors.New("disk failed"))
	e := forge(t, l, w.members[1], TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()}, heads)
	if err := l.Ingest(ctx, e.Bytes()); err == nil || isReject(err) || errors.Is(err, ErrPending) {
		t.Fatalf("Ingest with failing commits: %v", err)
	}
	st.set(nil, nil)
	if !equalCids(l.Heads(), heads) {
		t.Fatal("a failed commit moved the heads")
	}
	if err := l.Ingest(ctx, e.Bytes()); err != nil {
		t.Fatalf("the same entry once the disk works: %v", err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

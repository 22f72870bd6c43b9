package p2p

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	mbs "github.com/medmesh/medmesh/storage/blockstore"
)

func makeBlocks(t testing.TB, n, size int) ([]blocks.Block, []cid.Cid) {
	t.Helper()
	bl := make([]blocks.Block, n)
	cids := make([]cid.Cid, n)
	for i := range bl {
		bl[i] = randomBlock(t, size)
		cids[i] = bl[i].Cid()
	}
	return bl, cids
}

// fetchAll runs GetMany and returns the blocks it delivered, by CID.
func fetchAll(t testing.TB, ctx context.Context, n *Node, cids []cid.Cid) (map[cid.Cid][]byte, error) {
	t.Helper()
	got := map[cid.Cid][]byte{}
	err := n.GetMany(ctx, cids, func(b blocks.Block) error {
		if _, dup := got[b.Cid()]; dup {
			t.Errorf("block %s delivered twice", b.Cid())
		}
		got[b.Cid()] = b.RawData()
		return nil
	})
	return got, err
}

func checkAll(t testing.TB, got map[cid.Cid][]byte, want []blocks.Block) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d blocks, want %d", len(got), len(want))
	}
	for _, b := range want {
		if !bytes.Equal(got[b.Cid()], b.RawData()) {
			t.Fatalf("block %s differs", b.Cid())
		}
	}
}

// TestBulkFetch: blocks named to a holder come over the bulk protocol,
// byte-exact and stored, and none over bitswap.
func TestBulkFetch(t *testing.T) {
	t.Parallel()
	holder, r := holderAndFetcher(t, nil)
	want, cids := makeBlocks(t, 70, 100<<10) // several batches and windows
	putBlocks(t, holder.Blockstore(), want...)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := fetchAll(t, WithHolders(ctx, holder.ID()), r.Node, cids)
	if err != nil {
		t.Fatal(err)
	}
	checkAll(t, got, want)
	if v := counterValue(t, r.metrics.bulkBlocks); v != float64(len(want)) {
		t.Fatalf("bulk blocks = %v, want %d", v, len(want))
	}
	if v := counterValue(t, holder.metrics.bulkServed); v != float64(len(want)) {
		t.Fatalf("bulk served = %v, want %d", v, len(want))
	}
	st, _ := r.Bitswap.Stat()
	if st.BlocksReceived != 0 {
		t.Fatalf("bitswap received %d blocks; the bulk path should have delivered all", st.BlocksReceived)
	}
	for _, b := range want {
		if has, _ := r.Blockstore().Has(ctx, b.Cid()); !has {
			t.Fatalf("fetched block %s not stored", b.Cid())
		}
	}
}

// TestBulkSpreadsSmallFetches: many one-block fetches naming three holders
// (a dataset's instances) are spread over them, not all served by the
// first stream to open; and a named holder that is down does not hold a
// fetch up.
func TestBulkSpreadsSmallFetches(t *testing.T) {
	t.Parallel()
	psk := newPSK(t)
	ids := []identity{newIdentity(t), newIdentity(t), newIdentity(t), newIdentity(t), newIdentity(t)}
	members := newMemberSet(ids[0].id, ids[1].id, ids[2].id, ids[3].id, ids[4].id)
	want, cids := makeBlocks(t, 60, 16<<10)
	var holders []*testNode
	var holderIDs []peer.ID
	for _, id := range ids[:3] {
		h := startNode(t, id, psk, members, nil)
		putBlocks(t, h.Blockstore(), want...)
		holders = append(holders, h)
		holderIDs = append(holderIDs, h.ID())
	}
	r := startNode(t, ids[3], psk, members, func(c *Config) {
		for _, h := range holders {
			c.Bootstrap = append(c.Bootstrap, h.AddrInfo())
		}
	})
	for _, h := range holders {
		waitFor(t, 10*time.Second, "connected", func() bool { return connected(r.Node, h.ID()) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, c := range cids {
		got, err := fetchAll(t, NoKeep(WithHolders(ctx, holderIDs...)), r.Node, []cid.Cid{c})
		if err != nil {
			t.Fatal(err)
		}
		checkAll(t, got, want[i:i+1])
	}
	// Each CID is served by the holder leaderFirst puts first (unless that
	// one took longer than bulkHedge to open its stream, which a loaded
	// machine may cause now and then): about a third each.
	lead := map[peer.ID]int{}
	for _, c := range cids {
		lead[leaderFirst(holderIDs, c)[0]]++
	}
	matched := 0
	for i, h := range holders {
		v := int(counterValue(t, h.metrics.bulkServed))
		matched += min(v, lead[h.ID()])
		if lead[h.ID()] == 0 {
			t.Fatalf("holder %d leads for no CID of %d: pick other CIDs", i, len(cids))
		}
	}
	if matched < len(cids)*8/10 {
		t.Fatalf("only %d of %d blocks came from their leading holder", matched, len(cids))
	}

	// A named holder that is down (a member never started): every fetch
	// still completes over the bulk path, well within the stall timeout.
	down := ids[4].id
	start := time.Now()
	for i, c := range cids[:10] {
		got, err := fetchAll(t, NoKeep(WithHolders(ctx, down, holderIDs[0])), r.Node, []cid.Cid{c})
		if err != nil {
			t.Fatal(err)
		}
		checkAll(t, got, want[i:i+1])
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("10 fetches with a holder down took %v", d)
	}
}

// TestBulkRefused: a CID the holder's block filter refuses is answered
// "refused", never sent, and counted; the other CIDs of the request are sent.
func TestBulkRefused(t *testing.T) {
	t.Parallel()
	psk := newPSK(t)
	ih, ir := newIdentity(t), newIdentity(t)
	members := newMemberSet(ih.id, ir.id)
	want, cids := makeBlocks(t, 6, 10<<10)
	secret := cids[2]
	holder := startNode(t, ih, psk, members, func(c *Config) {
		c.BlockFilter = func(p peer.ID, k cid.Cid) bool { return k != secret }
	})
	putBlocks(t, holder.Blockstore(), want...)
	r := startNode(t, ir, psk, members, func(c *Config) {
		c.Bootstrap = []peer.AddrInfo{holder.AddrInfo()}
		c.StallTimeout = 300 * time.Millisecond
	})
	waitFor(t, 10*time.Second, "connected", func() bool { return connected(r.Node, holder.ID()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// On the wire: the refused CID gets a refused frame, no bytes.
	s, err := r.Host.NewStream(ctx, holder.ID(), BulkProtocol)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(s)
	if err := writeBulkRequest(bw, cids); err != nil || bw.Flush() != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	br := bufio.NewReader(s)
	for i, c := range cids {
		st, size, err := readBulkFrameHeader(br)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if c == secret {
			if st != bulkRefused {
				t.Fatalf("refused CID answered with status %d", st)
			}
			continue
		}
		if st != bulkOK || size != len(want[i].RawData()) {
			t.Fatalf("frame %d: status %d size %d", i, st, size)
		}
		if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
	if v := counterValue(t, holder.metrics.refused); v != 1 {
		t.Fatalf("refused counter = %v, want 1", v)
	}

	// Through GetMany: everything but the secret arrives; the fetch then
	// ends with ErrNotFetched and the secret is not stored.
	short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancelShort()
	got, err := fetchAll(t, WithHolders(short, holder.ID()), r.Node, cids)
	if !errors.Is(err, ErrNotFetched) {
		t.Fatalf("GetMany = %v, want ErrNotFetched", err)
	}
	if _, ok := got[secret]; ok || len(got) != len(cids)-1 {
		t.Fatalf("got %d blocks (secret among them: %v)", len(got), ok)
	}
	if has, _ := r.Blockstore().Has(ctx, secret); has {
		t.Fatal("refused block stored")
	}
}

// TestBulkLiar: a holder that sends wrong bytes over the bulk protocol has
// them rejected; the block is fetched from an honest holder.
func TestBulkLiar(t *testing.T) {
	t.Parallel()
	psk := newPSK(t)
	il, ih, ir := newIdentity(t), newIdentity(t), newIdentity(t)
	members := newMemberSet(il.id, ih.id, ir.id)
	want, cids := makeBlocks(t, 8, 32<<10)
	store, err := mbs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	liar := &lyingBlockstore{Blockstore: store.Blocks, target: cids[0], data: bytes.Repeat([]byte{7}, 32<<10)}
	l := startNodeWithStore(t, il, psk, members, store, func(c *Config) { c.Blockstore = liar })
	putBlocks(t, store.Blocks, want[1:]...)
	honest := startNode(t, ih, psk, members, nil)
	putBlocks(t, honest.Blockstore(), want...)
	r := startNode(t, ir, psk, members, func(c *Config) {
		c.Bootstrap = []peer.AddrInfo{l.AddrInfo(), honest.AddrInfo()}
		c.StallTimeout = 500 * time.Millisecond
	})
	waitFor(t, 10*time.Second, "connected", func() bool { return connected(r.Node, l.ID()) && connected(r.Node, honest.ID()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Only the liar is named: the lie must not end the fetch.
	got, err := fetchAll(t, WithHolders(ctx, l.ID()), r.Node, cids)
	if err != nil {
		t.Fatal(err)
	}
	checkAll(t, got, want)
	if v := counterValue(t, r.metrics.bulkRejected); v < 1 {
		t.Fatal("the liar's bytes were not rejected; the test proves nothing")
	}
	b, err := r.Blockstore().Get(ctx, cids[0])
	if err != nil || !bytes.Equal(b.RawData(), want[0].RawData()) {
		t.Fatalf("stored block: %v", err)
	}
}

// TestBulkUnsupported: a holder without the bulk protocol is fetched from
// with bitswap.
func TestBulkUnsupported(t *testing.T) {
	t.Parallel()
	holder, r := holderAndFetcher(t, nil)
	holder.Host.RemoveStreamHandler(BulkProtocol)
	want, cids := makeBlocks(t, 10, 32<<10)
	putBlocks(t, holder.Blockstore(), want...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := fetchAll(t, WithHolders(ctx, holder.ID()), r.Node, cids)
	if err != nil {
		t.Fatal(err)
	}
	checkAll(t, got, want)
	if v := counterValue(t, r.metrics.bulkBlocks); v != 0 {
		t.Fatalf("bulk blocks = %v from a holder without the protocol", v)
	}
	if st, _ := r.Bitswap.Stat(); st.BlocksReceived == 0 {
		t.Fatal("bitswap received nothing")
	}
}

// TestBulkMalformed: a malformed or oversized request gets the stream
// reset, and the holder keeps serving.
func TestBulkMalformed(t *testing.T) {
	t.Parallel()
	holder, r := holderAndFetcher(t, nil)
	want, cids := makeBlocks(t, 1, 1<<10)
	putBlocks(t, holder.Blockstore(), want...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, req := range map[string][]byte{
		"too many CIDs":  {0x81, 0x08}, // 1025
		"empty request":  {0x00},
		"huge CID":       {0x01, 0xff, 0x7f},
		"not a CID":      {0x01, 0x03, 0xff, 0xff, 0xff},
		"varint overrun": bytes.Repeat([]byte{0xff}, 12),
	} {
		s, err := r.Host.NewStream(ctx, holder.ID(), BulkProtocol)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(req); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := io.Copy(io.Discard, s); err == nil || n != 0 {
			t.Fatalf("%s: read %d bytes, err %v; want a reset", name, n, err)
		}
	}
	got, err := fetchAll(t, WithHolders(ctx, holder.ID()), r.Node, cids)
	if err != nil {
		t.Fatal(err)
	}
	checkAll(t, got, want)
	if v := counterValue(t, r.metrics.bulkBlocks); v != 1 {
		t.Fatalf("bulk blocks = %v after malformed requests", v)
	}
}

func TestBulkWireRoundTrip(t *testing.T) {
	_, cids := makeBlocks(t, 3, 10)
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := writeBulkRequest(bw, cids); err != nil {
		t.Fatal(err)
	}
	if err := writeBulkFrame(bw, bulkOK, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := writeBulkFrame(bw, bulkMissing, nil); err != nil {
		t.Fatal(err)
	}
	if err := writeBulkFrame(bw, bulkOK, make([]byte, bulkMaxBlockSize+1)); err == nil {
		t.Fatal("oversized frame written")
	}
	if err := writeBulkRequest(bw, make([]cid.Cid, bulkMaxBatch+1)); err == nil {
		t.Fatal("oversized request written")
	}
	bw.Flush()
	br := bufio.NewReader(&buf)
	got, err := readBulkRequest(br, nil)
	if err != nil || len(got) != 3 || got[0] != cids[0] || got[2] != cids[2] {
		t.Fatalf("request = %v, %v", got, err)
	}
	if st, n, err := readBulkFrameHeader(br); err != nil || st != bulkOK || n != 3 {
		t.Fatalf("frame = %d %d %v", st, n, err)
	}
	br.Discard(3)
	if st, _, err := readBulkFrameHeader(br); err != nil || st != bulkMissing {
		t.Fatalf("frame = %d %v", st, err)
	}
	// A frame announcing more than the limit is an error before any read.
	over := []byte{bulkOK, 0x81, 0x80, 0x80, 0x01} // 2 MiB + 1
	if _, _, err := readBulkFrameHeader(bufio.NewReader(bytes.NewReader(over))); !errors.Is(err, errBulkMalformed) {
		t.Fatalf("oversized frame: %v", err)
	}
	// Non-minimal varints are refused.
	if _, err := readBulkRequest(bufio.NewReader(bytes.NewReader([]byte{0x81, 0x00})), nil); !errors.Is(err, errBulkMalformed) {
		t.Fatalf("non-minimal count: %v", err)
	}
}

func FuzzBulkRequest(f *testing.F) {
	_, cids := makeBlocks(f, 2, 10)
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	_ = writeBulkRequest(bw, cids)
	bw.Flush()
	f.Add(buf.Bytes())
	f.Add([]byte{0x81, 0x08})
	f.Add([]byte{0x01, 0x22, 0x12, 0x20})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readBulkRequest(bufio.NewReader(bytes.NewReader(data)), nil)
		if err != nil {
			return
		}
		if len(got) == 0 || len(got) > bulkMaxBatch {
			t.Fatalf("decoded %d CIDs", len(got))
		}
		// Strict: what decodes re-encodes to the same bytes.
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if err := writeBulkRequest(bw, got); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("request %x re-encodes as %x", data, out.Bytes())
		}
	})
}

func FuzzBulkFrame(f *testing.F) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	_ = writeBulkFrame(bw, bulkOK, []byte("block"))
	_ = writeBulkFrame(bw, bulkRefused, nil)
	_ = writeBulkFrame(bw, bulkMissing, nil)
	bw.Flush()
	f.Add(buf.Bytes())
	f.Add([]byte{bulkOK, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{9})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		for range 64 {
			st, size, err := readBulkFrameHeader(br)
			if err != nil {
				return
			}
			if size < 0 || size > bulkMaxBlockSize || (st != bulkOK && size != 0) {
				t.Fatalf("status %d size %d", st, size)
			}
			if _, err := br.Discard(size); err != nil {
				return
			}
		}
	})
}

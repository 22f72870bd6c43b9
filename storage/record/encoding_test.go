package record

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// sampleManifests are valid manifests covering the optional fields.
func sampleManifests() []*Manifest {
	c := func(i byte) cid.Cid { return rawCID(sha256.Sum256([]byte{i})) }
	return []*Manifest{
		{
			Kind: "file", Created: time.Unix(0, 0).UTC(), Version: 1,
			Files: []File{{Path: "", Size: 0, Chunks: []Chunk{{CID: c(0), Size: 0}}}},
		},
		{
			Kind: "file", Name: "report.pdf", MediaType: "application/pdf",
			Created: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), Version: 1,
			Files: []File{{Path: "report.pdf", Size: 2*MinChunkSize + 3, SHA256: sha256.Sum256([]byte("x")),
				Chunks: []Chunk{{c(1), MinChunkSize}, {c(2), MinChunkSize}, {c(3), 3}}}},
		},
		{
			Kind: "dicom-study", Name: "CT", Created: time.Unix(-1e9, 0).UTC(), Version: 3, Prev: c(9),
			Meta: []byte("study index"),
			Files: []File{
				{Path: "1.2.3.dcm", Size: 1, Chunks: []Chunk{{c(4), 1}}},
				{Path: "1.2.4.dcm", Size: MaxChunkSize, Chunks: []Chunk{{c(5), MaxChunkSize}}},
			},
		},
	}
}

func TestManifestEncoding(t *testing.T) {
	for i, m := range sampleManifests() {
		b, err := encodeManifest(m)
		if err != nil {
			t.Fatalf("manifest %d: %v", i, err)
		}
		got, err := decodeManifest(b)
		if err != nil {
			t.Fatalf("manifest %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("manifest %d changed:\n got %+v\nwant %+v", i, got, m)
		}
	}
	good, _ := encodeManifest(sampleManifests()[1])
	for name, b := range map[string][]byte{
		"trailing byte":      append(bytes.Clone(good), 0),
		"truncated":          good[:len(good)-1],
		"empty":              nil,
		"not a map":          {0x80},
		"indefinite map":     {0xbf, 0x00, 0x01, 0xff},
		"duplicate key":      {0xa2, 0x00, 0x01, 0x00, 0x01},
		"unknown key":        {0xa1, 0x18, 0x63, 0x00},
		"tag":                {0xc1, 0x00},
		"format 2":           {0xa1, 0x00, 0x02},
		"non-minimal format": append([]byte{good[0], 0x00, 0x18, 0x01}, good[3:]...),
		"deep nesting":       bytes.Repeat([]byte{0x81}, 100),
	} {
		if _, err := decodeManifest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	if good[0] != 0xa7 || good[1] != 0x00 || good[2] != 0x01 {
		t.Fatalf("unexpected encoding prefix % x", good[:3])
	}
	if _, err := decodeManifest(make([]byte, MaxManifestSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	// Inconsistent chunk sizes are rejected on both sides.
	bad := sampleManifests()[1]
	bad.Files[0].Chunks[1].Size = 5
	if _, err := encodeManifest(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("uneven chunks: %v", err)
	}
}

// FuzzManifestDecode: decoding never panics, and whatever decodes
// re-encodes to exactly the same bytes and decodes to the same manifest.
func FuzzManifestDecode(f *testing.F) {
	for _, m := range sampleManifests() {
		b, err := encodeManifest(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		again, err := encodeManifest(m)
		if err != nil {
			t.Fatalf("decoded manifest does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, again)
		}
		m2, err := decodeManifest(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("second decode: %v", err)
		}
	})
}

// FuzzManifestBlock: opening an arbitrary manifest block never panics and
// fails with a classified error.
func FuzzManifestBlock(f *testing.F) {
	var key Key
	key[0] = 1
	k, err := deriveKeys(key)
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range sampleManifests() {
		pt, err := encodeManifest(m)
		if err != nil {
			f.Fatal(err)
		}
		blk, err := sealManifest(k, pt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blk.RawData())
		f.Add(blk.RawData()[:40])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		id := rawCID(sha256.Sum256(raw))
		m, err := openManifestBlock(k, id, raw)
		if err != nil {
			for _, e := range []error{ErrWrongKey, ErrTampered, ErrTruncated, ErrTooLarge, ErrMalformed} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		if m == nil || len(m.Files) == 0 {
			t.Fatal("opened an empty manifest")
		}
	})
}

func sampleBlockLists() [][]cid.Cid {
	var out [][]cid.Cid
	for _, m := range sampleManifests() {
		out = append(out, m.Blocks(rawCID(sha256.Sum256([]byte("manifest")))))
	}
	return out
}

func TestBlockList(t *testing.T) {
	for _, ids := range sampleBlockLists() {
		b, err := EncodeBlockList(ids)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeBlockList(b)
		if err != nil || !reflect.DeepEqual(got, ids) {
			t.Fatalf("round trip: %v", err)
		}
	}
	one := rawCID(sha256.Sum256(nil))
	for name, ids := range map[string][]cid.Cid{
		"empty":     nil,
		"duplicate": {one, one},
		"CIDv0":     {cid.NewCidV0(one.Hash())},
		"dag-cbor":  {cid.NewCidV1(cid.DagCBOR, one.Hash())},
		"undef":     {cid.Undef},
	} {
		if _, err := EncodeBlockList(ids); !errors.Is(err, ErrMalformed) {
			t.Errorf("encode %s: %v", name, err)
		}
	}
	big := make([]cid.Cid, MaxBlockListLen+1)
	if _, err := EncodeBlockList(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("encode too many: %v", err)
	}
	// The largest list fits in a block well under bitswap's 2 MiB.
	big = big[:MaxBlockListLen]
	for i := range big {
		big[i] = rawCID(sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)}))
	}
	b, err := EncodeBlockList(big)
	if err != nil || len(b) > maxBlockListSize || len(b) > 3<<19 {
		t.Fatalf("largest list: %d bytes, %v", len(b), err)
	}
	if _, err := DecodeBlockList(b); err != nil {
		t.Fatal(err)
	}
	good, _ := EncodeBlockList([]cid.Cid{one})
	for name, b := range map[string][]byte{
		"trailing":      append(bytes.Clone(good), 0),
		"truncated":     good[:len(good)-1],
		"empty":         nil,
		"wrong format":  append([]byte{0xa2, 0x00, 0x02}, good[3:]...),
		"non-canonical": append([]byte{0xa2, 0x00, 0x18, 0x01}, good[3:]...),
		"indefinite":    {0xa2, 0x00, 0x01, 0x01, 0x9f, 0xff},
	} {
		if _, err := DecodeBlockList(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("decode %s: %v", name, err)
		}
	}
	if _, err := DecodeBlockList(make([]byte, maxBlockListSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("decode oversized: %v", err)
	}
}

// FuzzBlockList: decoding never panics; what decodes re-encodes to the same
// bytes.
func FuzzBlockList(f *testing.F) {
	for _, ids := range sampleBlockLists() {
		b, err := EncodeBlockList(ids)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xa2, 0x00, 0x01, 0x01, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := DecodeBlockList(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		again, err := EncodeBlockList(ids)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding: %v\n in % x\nout % x", err, b, again)
		}
	})
}

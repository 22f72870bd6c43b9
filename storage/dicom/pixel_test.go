package dicom

import (
	"bytes"
	"errors"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func readTestFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir(t), "valid", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadFrames: frames of native, big endian, RLE and JPEG files, one
// frame and several, and a frame the instance does not have.
func TestReadFrames(t *testing.T) {
	for _, c := range []struct {
		file          string
		frames        int
		want          []int
		size          int // bytes of each native frame (0: compressed)
		marker        []byte
		encapsulated  bool
		transferTS    string
		photometric   string
		bitsAllocated int
	}{
		{"ct_small_explicit_le.dcm", 1, nil, 128 * 128 * 2, nil, false, tsExplicitLE, "MONOCHROME2", 16},
		{"mr_small_big_endian.dcm", 1, []int{1}, 64 * 64 * 2, nil, false, tsExplicitBE, "MONOCHROME2", 16},
		{"enhanced_ct_2frame_explicit_le.dcm", 2, []int{2}, 512 * 512 * 2, nil, false, tsExplicitLE, "MONOCHROME2", 16},
		{"enhanced_mr_10frame.dcm", 10, []int{1, 5, 10}, 64 * 64 * 2, nil, false, tsExplicitLE, "MONOCHROME2", 16},
		{"us_ybr_30frame_jpeg_baseline.dcm", 30, []int{1, 30}, 0, []byte{0xFF, 0xD8}, true, JPEGBaseline, "YBR_FULL_422", 8},
		{"enhanced_ct_2frame_rle.dcm", 2, nil, 0, nil, true, RLELossless, "MONOCHROME2", 16},
		{"enhanced_ct_2frame_jpeg_lossless_sv1_fragmented.dcm", 2, []int{2}, 0, []byte{0xFF, 0xD8}, true, "1.2.840.10008.1.2.4.70", "MONOCHROME2", 16},
	} {
		b := readTestFile(t, c.file)
		var got []int
		info, err := ReadFrames(bytes.NewReader(b), int64(len(b)), c.want, func(n int, data []byte) error {
			got = append(got, n)
			if c.size > 0 && len(data) != c.size {
				t.Errorf("%s frame %d: %d bytes, want %d", c.file, n, len(data), c.size)
			}
			if c.marker != nil && !bytes.HasPrefix(data, c.marker) {
				t.Errorf("%s frame %d does not start with %x", c.file, n, c.marker)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		want := c.want
		if want == nil {
			for i := 1; i <= c.frames; i++ {
				want = append(want, i)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: frames %v, want %v", c.file, got, want)
		}
		if info.Frames != c.frames || info.Encapsulated != c.encapsulated || info.TransferSyntax != c.transferTS || info.Photometric != c.photometric || info.BitsAllocated != c.bitsAllocated {
			t.Errorf("%s: info %+v", c.file, info)
		}
		if _, err := ReadFrames(bytes.NewReader(b), int64(len(b)), []int{c.frames + 1}, func(int, []byte) error { return nil }); !errors.Is(err, ErrFrameRange) {
			t.Errorf("%s: frame %d: %v, want ErrFrameRange", c.file, c.frames+1, err)
		}
	}
	// Big endian frames come out little endian: the same as the LE file's.
	le, be := readTestFile(t, "mr_small_explicit_le.dcm"), readTestFile(t, "mr_small_big_endian.dcm")
	var fl, fb []byte
	ReadFrames(bytes.NewReader(le), int64(len(le)), nil, func(_ int, d []byte) error { fl = d; return nil })
	ReadFrames(bytes.NewReader(be), int64(len(be)), nil, func(_ int, d []byte) error { fb = d; return nil })
	if !bytes.Equal(fl, fb) || len(fl) == 0 {
		t.Errorf("big endian frame differs from the little endian one (%d, %d bytes)", len(fb), len(fl))
	}
	// No pixel data.
	sr := readTestFile(t, "sr_comprehensive.dcm")
	if _, err := ReadFrames(bytes.NewReader(sr), int64(len(sr)), nil, func(int, []byte) error { return nil }); !errors.Is(err, ErrNoPixelData) {
		t.Errorf("SR: %v, want ErrNoPixelData", err)
	}
}

// TestRenderFrame: native grayscale (little and big endian, windowed),
// RLE, JPEG Baseline colour; and what cannot be rendered.
func TestRenderFrame(t *testing.T) {
	render := func(name string, w *Window) (image.Image, error) {
		b := readTestFile(t, name)
		var img image.Image
		var rerr error
		_, err := ReadFrames(bytes.NewReader(b), int64(len(b)), []int{1}, func(_ int, d []byte) error {
			info, _ := ReadFrames(bytes.NewReader(b), int64(len(b)), []int{1}, func(int, []byte) error { return nil })
			img, rerr = RenderFrame(info, d, w)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return img, rerr
	}
	le, err := render("mr_small_explicit_le.dcm", nil)
	if err != nil {
		t.Fatal(err)
	}
	be, err := render("mr_small_big_endian.dcm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(le.(*image.Gray).Pix, be.(*image.Gray).Pix) {
		t.Error("big and little endian MR render differently")
	}
	rle, err := render("mr_small_rle.dcm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(le.(*image.Gray).Pix, rle.(*image.Gray).Pix) {
		t.Error("RLE MR renders differently from the native one")
	}
	narrow, err := render("mr_small_explicit_le.dcm", &Window{Center: 600, Width: 2})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(narrow.(*image.Gray).Pix, le.(*image.Gray).Pix) {
		t.Error("a window changes nothing")
	}
	for _, v := range narrow.(*image.Gray).Pix {
		if v != 0 && v != 255 {
			t.Fatalf("a 2-wide window gives %d", v)
		}
	}
	col, err := render("us_ybr_30frame_jpeg_baseline.dcm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := col.Bounds(); b.Dx() != 320 || b.Dy() != 240 {
		t.Errorf("US frame %v", b)
	}
	if _, err := render("mr_small_jpeg_ls.dcm", nil); !errors.Is(err, ErrCannotRender) {
		t.Errorf("JPEG-LS: %v, want ErrCannotRender", err)
	}
}

// TestTranscode: every uncompressed file converts to each uncompressed
// syntax and back without losing an element or a value (the explicit
// little endian forms agree), pixel data is byte-swapped for big endian,
// dcmdump reads every output, and compressed files are refused.
func TestTranscode(t *testing.T) {
	dcmdump, _ := exec.LookPath("dcmdump")
	to := func(b []byte, ts string) []byte {
		t.Helper()
		var out bytes.Buffer
		if err := Transcode(bytes.NewReader(b), int64(len(b)), &out, ts); err != nil {
			t.Fatalf("to %s: %v", ts, err)
		}
		return out.Bytes()
	}
	for _, name := range []string{"ct_small_explicit_le.dcm", "mr_small_implicit_le.dcm", "mr_small_big_endian.dcm", "us_rgb_big_endian.dcm",
		"sc_deflated.dcm", "pet_tcia_acrin_flt_breast.dcm", "rtplan_implicit.dcm", "sr_comprehensive.dcm", "enhanced_mr_10frame.dcm"} {
		src := readTestFile(t, name)
		// Implicit VR drops the VRs (the dictionary's come back), so
		// each target is compared in the normal form of its kind.
		norm := map[bool][]byte{false: to(src, tsExplicitLE), true: to(src, tsImplicitLE)}
		for _, ts := range []string{tsImplicitLE, tsExplicitBE, tsDeflatedLE, tsExplicitLE} {
			out := to(src, ts)
			in, err := ParseReader(bytes.NewReader(out), int64(len(out)))
			if err != nil {
				t.Errorf("%s -> %s: does not parse: %v", name, ts, err)
				continue
			}
			if in.TransferSyntax != ts {
				t.Errorf("%s -> %s: file says %s", name, ts, in.TransferSyntax)
			}
			implicit := ts == tsImplicitLE
			normTS := map[bool]string{false: tsExplicitLE, true: tsImplicitLE}[implicit]
			if back := to(out, normTS); !bytes.Equal(back, norm[implicit]) {
				t.Errorf("%s -> %s -> %s differs from %s -> %s (%d, %d bytes)", name, ts, normTS, name, normTS, len(back), len(norm[implicit]))
			}
			if dcmdump != "" {
				p := filepath.Join(t.TempDir(), "x.dcm")
				os.WriteFile(p, out, 0o600)
				if msg, err := exec.Command(dcmdump, "-q", p).CombinedOutput(); err != nil || bytes.Contains(msg, []byte("E: ")) {
					t.Errorf("%s -> %s: dcmdump: %v %s", name, ts, err, msg)
				}
			}
		}
	}
	// Same pixels after the byte order changes.
	le := readTestFile(t, "mr_small_explicit_le.dcm")
	be := to(le, tsExplicitBE)
	var a, b []byte
	ReadFrames(bytes.NewReader(le), int64(len(le)), nil, func(_ int, d []byte) error { a = d; return nil })
	ReadFrames(bytes.NewReader(be), int64(len(be)), nil, func(_ int, d []byte) error { b = d; return nil })
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("pixel data changed through big endian")
	}
	j := readTestFile(t, "sc_rgb_jpeg_baseline.dcm")
	if err := Transcode(bytes.NewReader(j), int64(len(j)), &bytes.Buffer{}, tsExplicitLE); !errors.Is(err, ErrUnsupported) {
		t.Errorf("JPEG to explicit LE: %v, want ErrUnsupported", err)
	}
}

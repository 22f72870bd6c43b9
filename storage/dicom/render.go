package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
)

// Rendering a frame to an 8-bit image a browser shows (WADO-RS /rendered):
// native grayscale (MONOCHROME1/2, 8 or 16 bits, signed or not) through
// the Modality LUT (rescale) and a linear VOI window, native RGB and
// YBR_FULL, JPEG Baseline (decoded by image/jpeg) and RLE Lossless.
// Other compressed syntaxes (JPEG Lossless, JPEG-LS, JPEG 2000) are not
// decoded: ErrCannotRender.

// ErrCannotRender is wrapped by the error for a frame that cannot be
// rendered (its transfer syntax or photometric interpretation).
var ErrCannotRender = errors.New("dicom: cannot render")

// Window is a VOI window: center and width (PS3.3 C.11.2.1.2), linear.
type Window struct {
	Center, Width float64
}

// RenderFrame turns one frame (as ReadFrames gives it) into an image.
// window, if set, overrides the instance's own window; without either,
// the frame's range of values is used.
func RenderFrame(p *PixelInfo, frame []byte, window *Window) (image.Image, error) {
	if p.Rows <= 0 || p.Columns <= 0 {
		return nil, fmt.Errorf("%w: no rows or columns", ErrCannotRender)
	}
	switch {
	case p.TransferSyntax == JPEGBaseline || p.TransferSyntax == "1.2.840.10008.1.2.4.51":
		// The codestream says how large an image it decodes to: hold it
		// to the instance's rows and columns before allocating.
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(frame))
		if err != nil {
			return nil, fmt.Errorf("%w: JPEG frame: %v", ErrCannotRender, err)
		}
		if cfg.Width != p.Columns || cfg.Height != p.Rows {
			return nil, fmt.Errorf("%w: JPEG frame of %dx%d in an image of %dx%d", ErrCannotRender, cfg.Width, cfg.Height, p.Columns, p.Rows)
		}
		img, err := jpeg.Decode(bytes.NewReader(frame))
		if err != nil {
			return nil, fmt.Errorf("%w: JPEG frame: %v", ErrCannotRender, err)
		}
		if g, ok := img.(*image.Gray); ok && window != nil {
			return windowGray(g, *window), nil
		}
		return img, nil
	case p.TransferSyntax == RLELossless:
		raw, err := decodeRLE(frame, p)
		if err != nil {
			return nil, err
		}
		q := *p
		q.PlanarConfiguration = 1 // RLE segments are planes (each sample, and for 16 bits its bytes)
		return renderNative(&q, raw, window, true)
	case p.Encapsulated:
		return nil, fmt.Errorf("%w: frames in %s are not decoded here", ErrCannotRender, p.TransferSyntax)
	}
	return renderNative(p, frame, window, false)
}

func renderNative(p *PixelInfo, frame []byte, window *Window, rle bool) (image.Image, error) {
	if p.Float {
		return nil, fmt.Errorf("%w: float pixel data", ErrCannotRender)
	}
	n := p.Rows * p.Columns
	spp := max(p.SamplesPerPixel, 1)
	bytesPer := p.BitsAllocated / 8
	if p.BitsAllocated%8 != 0 || bytesPer < 1 || bytesPer > 2 || len(frame) < n*spp*bytesPer {
		return nil, fmt.Errorf("%w: %d-bit samples, %d bytes for %d pixels", ErrCannotRender, p.BitsAllocated, len(frame), n)
	}
	bo := binary.LittleEndian // ReadFrames gives native frames little endian
	switch p.Photometric {
	case "MONOCHROME1", "MONOCHROME2", "":
		vals := make([]float64, n)
		mask := uint32(1)<<uint(min(p.BitsStored, 32)) - 1
		for i := range n {
			var v uint32
			if bytesPer == 1 {
				v = uint32(frame[i])
			} else if rle {
				v = uint32(frame[i])<<8 | uint32(frame[n+i]) // high byte plane first
			} else {
				v = uint32(bo.Uint16(frame[2*i:]))
			}
			v &= mask
			x := float64(v)
			if p.PixelRepresentation == 1 && p.BitsStored > 0 && v&(1<<uint(p.BitsStored-1)) != 0 {
				x = float64(int64(v) - int64(1)<<uint(p.BitsStored))
			}
			vals[i] = x*p.RescaleSlope + p.RescaleIntercept
		}
		w := window
		if w == nil && p.HasWindow {
			w = &Window{p.WindowCenter, p.WindowWidth}
		}
		if w == nil {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, v := range vals {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
			w = &Window{(lo + hi) / 2, math.Max(hi-lo, 1)}
		}
		img := image.NewGray(image.Rect(0, 0, p.Columns, p.Rows))
		for i, v := range vals {
			g := voi(v, *w)
			if p.Photometric == "MONOCHROME1" {
				g = 255 - g
			}
			img.Pix[i] = g
		}
		return img, nil
	case "RGB", "YBR_FULL":
		if spp != 3 || bytesPer != 1 {
			return nil, fmt.Errorf("%w: %s with %d samples of %d bits", ErrCannotRender, p.Photometric, spp, p.BitsAllocated)
		}
		img := image.NewRGBA(image.Rect(0, 0, p.Columns, p.Rows))
		for i := range n {
			var a, b, c byte
			if p.PlanarConfiguration == 1 {
				a, b, c = frame[i], frame[n+i], frame[2*n+i]
			} else {
				a, b, c = frame[3*i], frame[3*i+1], frame[3*i+2]
			}
			if p.Photometric == "YBR_FULL" {
				a, b, c = color.YCbCrToRGB(a, b, c)
			}
			img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = a, b, c, 255
		}
		return img, nil
	}
	return nil, fmt.Errorf("%w: photometric interpretation %s", ErrCannotRender, p.Photometric)
}

// voi maps a modality value to 0..255 through a linear window (PS3.3
// C.11.2.1.2.1).
func voi(x float64, w Window) uint8 {
	c, wd := w.Center, math.Max(w.Width, 1)
	switch {
	case x <= c-0.5-(wd-1)/2:
		return 0
	case x > c-0.5+(wd-1)/2:
		return 255
	}
	return uint8(((x-(c-0.5))/(wd-1) + 0.5) * 255)
}

func windowGray(g *image.Gray, w Window) *image.Gray {
	out := image.NewGray(g.Rect)
	for i, v := range g.Pix {
		out.Pix[i] = voi(float64(v), w)
	}
	return out
}

// decodeRLE decodes an RLE Lossless frame (PS3.5 Annex G) into its
// segments, concatenated: for each sample, its most significant byte
// plane first.
func decodeRLE(frame []byte, p *PixelInfo) ([]byte, error) {
	if len(frame) < 64 {
		return nil, fmt.Errorf("%w: RLE frame without its header", ErrCannotRender)
	}
	nseg := int(binary.LittleEndian.Uint32(frame))
	if nseg < 1 || nseg > 15 {
		return nil, fmt.Errorf("%w: RLE header with %d segments", ErrCannotRender, nseg)
	}
	n := p.Rows * p.Columns
	// A PackBits run of 128 bytes takes 2: nothing decodes to more than
	// 64 times its size (and the header's rows and columns must agree).
	if int64(n)*int64(nseg) > 64*int64(len(frame)) {
		return nil, fmt.Errorf("%w: RLE frame of %d bytes cannot hold %d x %d segments", ErrCannotRender, len(frame), n, nseg)
	}
	out := make([]byte, 0, n*nseg)
	for s := range nseg {
		start := int(binary.LittleEndian.Uint32(frame[4+4*s:]))
		end := len(frame)
		if s+1 < nseg {
			end = int(binary.LittleEndian.Uint32(frame[8+4*s:]))
		}
		if start < 64 || end > len(frame) || start > end {
			return nil, fmt.Errorf("%w: RLE segment %d out of the frame", ErrCannotRender, s)
		}
		seg, err := unpackBits(frame[start:end], n)
		if err != nil {
			return nil, err
		}
		out = append(out, seg...)
	}
	return out, nil
}

// unpackBits decodes one PackBits segment of n bytes.
func unpackBits(in []byte, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for i := 0; i < len(in) && len(out) < n; {
		c := int(int8(in[i]))
		i++
		switch {
		case c >= 0:
			if i+c+1 > len(in) {
				return nil, fmt.Errorf("%w: RLE literal run past the segment", ErrCannotRender)
			}
			out = append(out, in[i:i+c+1]...)
			i += c + 1
		case c >= -127:
			if i >= len(in) {
				return nil, fmt.Errorf("%w: RLE repeat run past the segment", ErrCannotRender)
			}
			for range 1 - c {
				out = append(out, in[i])
			}
			i++
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("%w: RLE segment decodes to %d bytes, want %d", ErrCannotRender, len(out), n)
	}
	return out[:n], nil
}

package console

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"

	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// thumbSize is the longest side of a thumbnail, in pixels.
const thumbSize = 160

// renderThumb renders the first frame of an instance of an opened study as
// a PNG thumbnail, with what DICOMweb's /rendered uses (dicom.ReadFrames,
// dicom.RenderFrame: native grayscale and colour, JPEG Baseline, RLE), in
// the instance's own window. A frame that cannot be rendered is
// dicom.ErrCannotRender.
func (k *Console) renderThumb(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef, w io.Writer) error {
	rc := k.cfg.Imaging.OpenInstance(ctx, o, in)
	var data []byte
	info, err := dicom.ReadFrames(rc, o.Size(in), []int{1}, func(_ int, d []byte) error { data = d; return nil })
	rc.Close()
	if err != nil {
		return err
	}
	img, err := dicom.RenderFrame(info, data, nil)
	if err != nil {
		return err
	}
	return (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(w, shrink(img, thumbSize))
}

// shrink scales img down (box filter) so its longest side is at most max.
func shrink(img image.Image, max int) image.Image {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= max && sh <= max {
		return img
	}
	dw, dh := max, sh*max/sw
	if sh > sw {
		dw, dh = sw*max/sh, max
	}
	dw, dh = maxInt(dw, 1), maxInt(dh, 1)
	out := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < dh; y++ {
		y0, y1 := y*sh/dh, maxInt((y+1)*sh/dh, y*sh/dh+1)
		for x := 0; x < dw; x++ {
			x0, x1 := x*sw/dw, maxInt((x+1)*sw/dw, x*sw/dw+1)
			var r, g, bl, n uint64
			for yy := y0; yy < y1; yy++ {
				for xx := x0; xx < x1; xx++ {
					cr, cg, cb, _ := img.At(b.Min.X+xx, b.Min.Y+yy).RGBA()
					r, g, bl, n = r+uint64(cr), g+uint64(cg), bl+uint64(cb), n+1
				}
			}
			out.Set(x, y, color.RGBA64{uint16(r / n), uint16(g / n), uint16(bl / n), 0xffff})
		}
	}
	return out
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// noPreview is what a thumbnail shows for an image the node cannot render
// (a compressed syntax it does not decode, no pixel data): a grey tile
// that says so, not a broken image.
func noPreview(why string) []byte {
	return []byte(fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 160 160"><rect width="160" height="160" fill="#3f3f46"/><text x="80" y="76" font-family="sans-serif" font-size="14" fill="#fff" text-anchor="middle">No preview</text><text x="80" y="98" font-family="sans-serif" font-size="11" fill="#e4e4e7" text-anchor="middle">%s</text></svg>`,
		thumbSize, thumbSize, why))
}

// cannotRender reports whether err means the image cannot be shown, as
// opposed to a failed read.
func cannotRender(err error) bool { return errors.Is(err, dicom.ErrCannotRender) }

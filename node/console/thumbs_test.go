package console

import (
	"image"
	"image/color"
	"testing"
)

// shrink keeps the aspect ratio, never enlarges, and averages what it
// folds together.
func TestShrink(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 512, 256))
	for y := 0; y < 256; y++ {
		for x := 0; x < 512; x++ {
			if x%2 == 0 {
				src.SetGray(x, y, color.Gray{Y: 200})
			}
		}
	}
	out := shrink(src, 160)
	if b := out.Bounds(); b.Dx() != 160 || b.Dy() != 80 {
		t.Fatalf("shrunk to %v", b)
	}
	r, _, _, _ := out.At(10, 10).RGBA()
	if v := r >> 8; v < 50 || v > 150 { // not a pick (0 or 200): an average over 3 or 4 columns
		t.Errorf("a pixel of alternating 200 and 0 averages to %d", v)
	}
	tall := shrink(image.NewGray(image.Rect(0, 0, 100, 400)), 160)
	if b := tall.Bounds(); b.Dx() != 40 || b.Dy() != 160 {
		t.Errorf("tall: %v", b)
	}
	small := image.NewGray(image.Rect(0, 0, 64, 64))
	if shrink(small, 160) != image.Image(small) {
		t.Error("a small image was scaled")
	}
}

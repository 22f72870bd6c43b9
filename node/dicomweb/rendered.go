package dicomweb

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"net/http"
	"strconv"
	"strings"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Rendered resources (PS3.18 10.4.1.1.3): one frame of an instance (the
// first, or the first of /frames/{list}) as PNG (the default) or JPEG,
// through the instance's window or the one the "window" query parameter
// gives (center,width[,linear]); "quality" (1-100) for JPEG. What can be
// rendered: dicom.RenderFrame (native grayscale and color, JPEG Baseline,
// RLE); anything else is 406.

func (a Area) handleRendered(w http.ResponseWriter, r *http.Request) {
	mediaType := ""
	for _, m := range parseAccept(r.Header.Get("Accept")) {
		switch {
		case m.matches("image/png"):
			mediaType = "image/png"
		case m.matches("image/jpeg"):
			mediaType = "image/jpeg"
		}
		if mediaType != "" {
			break
		}
	}
	if mediaType == "" {
		api.Fail(w, api.Errorf(http.StatusNotAcceptable, "ask for image/png or image/jpeg", "cannot render as %q", r.Header.Get("Accept")))
		return
	}
	q := r.URL.Query()
	var win *dicom.Window
	if v := q.Get("window"); v != "" {
		parts := strings.Split(v, ",")
		c, err1 := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
		var wd float64
		var err2 error
		if len(parts) > 1 {
			wd, err2 = strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
		}
		fn := "linear"
		if len(parts) > 2 {
			fn = strings.ToLower(strings.TrimSpace(parts[2]))
		}
		if len(parts) < 2 || len(parts) > 3 || err1 != nil || err2 != nil || wd < 1 || fn != "linear" {
			api.Fail(w, api.Errorf(http.StatusBadRequest, "window=CENTER,WIDTH[,linear], WIDTH at least 1", "bad window %q", v))
			return
		}
		win = &dicom.Window{Center: c, Width: wd}
	}
	quality := 90
	if v := q.Get("quality"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			api.Fail(w, api.Errorf(http.StatusBadRequest, "quality=1..100", "bad quality %q", v))
			return
		}
		quality = n
	}
	st, in, ok := a.openOne(w, r)
	if !ok {
		return
	}
	frame := 1
	if fs := r.PathValue("frames"); fs != "" {
		frames, err := parseFrames(fs, in.Frames)
		if err != nil {
			api.Fail(w, err)
			return
		}
		frame = frames[0]
	}
	ctx := r.Context()
	var img image.Image
	var rerr error
	var data []byte
	rc := a.Imaging.OpenInstance(ctx, st, in)
	info, err := dicom.ReadFrames(rc, st.Size(in), []int{frame}, func(_ int, d []byte) error { data = d; return nil })
	rc.Close()
	if err == nil {
		img, rerr = dicom.RenderFrame(info, data, win)
	}
	if err != nil {
		a.failFrames(w, err)
		return
	}
	if rerr != nil {
		if errors.Is(rerr, dicom.ErrCannotRender) {
			api.Fail(w, api.Errorf(http.StatusNotAcceptable, "retrieve the frames (/frames) or the instance instead", "%v", rerr))
			return
		}
		api.Fail(w, rerr)
		return
	}
	var buf bytes.Buffer
	if mediaType == "image/jpeg" {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	}
	if err != nil {
		api.Fail(w, err)
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
	a.Imaging.ReadDone(ctx, st, "")
}

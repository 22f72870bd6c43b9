package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// WADO-RS (PS3.18 10.4): instances (as stored, or transcoded among the
// uncompressed transfer syntaxes when the Accept header asks for one),
// metadata with BulkDataURIs, bulk data, frames, and rendered images.

// anyTS is what the transfer-syntax parameter "*" (or its absence) asks:
// the stored transfer syntax.
const anyTS = "*"

// negotiateInstances picks, from the Accept header, the transfer syntax
// to send the instances in: anyTS (each as stored) or one every instance
// can be given in. ok is false when no acceptable form can be produced.
func negotiateInstances(accept string, sel []*dicom.InstanceRef) (ts string, ok bool) {
	for _, m := range parseAccept(accept) {
		switch {
		case m.typ == "*/*":
			return anyTS, true
		case m.typ == "multipart/related" || m.typ == "multipart/*":
			if t := strings.ToLower(m.param("type")); t != "" && t != "application/dicom" {
				continue
			}
		default:
			continue
		}
		want := m.param("transfer-syntax")
		if want == "" || want == anyTS {
			return anyTS, true
		}
		all := true
		for _, in := range sel {
			if !dicom.CanTranscode(in.TransferSyntax, want) {
				all = false
				break
			}
		}
		if all {
			return want, true
		}
	}
	return "", false
}

func storedSyntaxes(sel []*dicom.InstanceRef) string {
	seen := map[string]bool{}
	var out []string
	for _, in := range sel {
		if !seen[in.TransferSyntax] {
			seen[in.TransferSyntax] = true
			out = append(out, in.TransferSyntax)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (a Area) handleWado(w http.ResponseWriter, r *http.Request, metadata bool) {
	studyUID, seriesUID, sopUID := r.PathValue("study"), r.PathValue("series"), r.PathValue("sop")
	st, err := a.Imaging.OpenUID(r.Context(), studyUID)
	if err != nil {
		api.Fail(w, err)
		return
	}
	sel := st.Select(seriesUID, sopUID)
	if len(sel) == 0 {
		api.Fail(w, api.Errorf(http.StatusNotFound, "", "no such series or instance in study %s", studyUID))
		return
	}
	ts := anyTS
	if !metadata {
		var ok bool
		if ts, ok = negotiateInstances(r.Header.Get("Accept"), sel); !ok {
			api.Fail(w, api.Errorf(http.StatusNotAcceptable,
				`ask for multipart/related; type="application/dicom" with transfer-syntax=* (as stored), the stored syntax, or an uncompressed one (1.2.840.10008.1.2.1, 1.2.840.10008.1.2, 1.2.840.10008.1.2.2, 1.2.840.10008.1.2.1.99) for uncompressed instances`,
				"cannot send %q: stored in %s, compressed syntaxes are not transcoded", r.Header.Get("Accept"), storedSyntaxes(sel)))
			return
		}
	}
	ctx := r.Context()
	if metadata {
		err = a.wadoMetadata(ctx, w, st, sel, baseURL(r))
	} else {
		err = a.wadoInstances(ctx, w, st, sel, ts)
	}
	if err != nil {
		// The status line and part of the body are gone: abort the
		// response so the client sees a failed transfer, not a short one.
		a.log().Warn("WADO-RS transfer failed", "record", st.Info.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
	a.Imaging.ReadDone(ctx, st, "")
}

func (a Area) wadoInstances(ctx context.Context, w http.ResponseWriter, st *imaging.Opened, sel []*dicom.InstanceRef, ts string) error {
	mw := multipart.NewWriter(w)
	ctype := `multipart/related; type="application/dicom"; boundary=` + mw.Boundary()
	if ts != anyTS {
		ctype += "; transfer-syntax=" + ts
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(http.StatusOK)
	for _, in := range sel {
		h := textproto.MIMEHeader{}
		out := in.TransferSyntax
		if ts != anyTS {
			out = ts
		}
		ct := "application/dicom"
		if out != "" {
			ct += "; transfer-syntax=" + out
		}
		h.Set("Content-Type", ct)
		if out == in.TransferSyntax {
			h.Set("Content-Length", strconv.FormatInt(st.Size(in), 10))
		}
		pw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if out == in.TransferSyntax {
			if err := a.Imaging.WriteInstance(ctx, st, in, pw); err != nil {
				return err
			}
			continue
		}
		rc := a.Imaging.OpenInstance(ctx, st, in)
		err = dicom.Transcode(rc, st.Size(in), pw, out)
		rc.Close()
		if err != nil {
			return fmt.Errorf("transcode %s to %s: %w", in.SOPInstanceUID, out, err)
		}
	}
	return mw.Close()
}

func (a Area) wadoMetadata(ctx context.Context, w http.ResponseWriter, st *imaging.Opened, sel []*dicom.InstanceRef, base string) error {
	started := false
	for _, in := range sel {
		prefix := instanceURL(base, st, in)
		js, err := a.Imaging.InstanceMetadataBulk(ctx, st, in, func(tag uint32) string {
			return fmt.Sprintf("%s/bulkdata/%08X", prefix, tag)
		})
		if err != nil {
			if !started {
				// Nothing sent yet: a clean error is still possible.
				api.Fail(w, err)
				return nil
			}
			return err
		}
		if !started {
			w.Header().Set("Content-Type", dicomJSONType)
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("["))
			started = true
		} else {
			w.Write([]byte(","))
		}
		if _, err := w.Write(js); err != nil {
			return err
		}
	}
	_, err := w.Write([]byte("]\n"))
	return err
}

// instanceURL is an instance's WADO-RS URL.
func instanceURL(base string, st *imaging.Opened, in *dicom.InstanceRef) string {
	for _, se := range st.Study.Series {
		for _, x := range se.Instances {
			if x == in {
				return base + "/studies/" + st.Study.UID + "/series/" + se.UID + "/instances/" + in.SOPInstanceUID
			}
		}
	}
	return base + "/studies/" + st.Study.UID + "/instances/" + in.SOPInstanceUID
}

// openOne opens the study and finds the instance of the request's path;
// on failure it has answered.
func (a Area) openOne(w http.ResponseWriter, r *http.Request) (*imaging.Opened, *dicom.InstanceRef, bool) {
	st, err := a.Imaging.OpenUID(r.Context(), r.PathValue("study"))
	if err != nil {
		api.Fail(w, err)
		return nil, nil, false
	}
	sel := st.Select(r.PathValue("series"), r.PathValue("sop"))
	if len(sel) != 1 {
		api.Fail(w, api.Errorf(http.StatusNotFound, "", "no instance %s in series %s of study %s", r.PathValue("sop"), r.PathValue("series"), st.Study.UID))
		return nil, nil, false
	}
	return st, sel[0], true
}

// parseFrames reads a frame list ("1,3,2"): 1-based numbers, at most
// frames of them, each at most the instance's frame count when known.
func parseFrames(s string, frames int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, api.Errorf(http.StatusBadRequest, "frames are numbered from 1: /frames/1,2,3", "bad frame number %q", f)
		}
		if frames > 0 && n > frames {
			return nil, api.Errorf(http.StatusNotFound, "", "frame %d: the instance has %d", n, frames)
		}
		out = append(out, n)
	}
	if len(out) > 100000 {
		return nil, api.Errorf(http.StatusBadRequest, "", "too many frames asked")
	}
	return out, nil
}

// runs splits a frame list into ascending runs without repeats, each read
// in one pass over the instance.
func runs(frames []int) [][]int {
	var out [][]int
	var cur []int
	for _, f := range frames {
		if len(cur) > 0 && f <= cur[len(cur)-1] {
			out = append(out, cur)
			cur = nil
		}
		cur = append(cur, f)
	}
	return append(out, cur)
}

// frameForm is how frames are sent: their part media type and transfer
// syntax (native frames are little endian whatever the stored syntax).
type frameForm struct {
	mediaType, ts string
}

// negotiateFrames picks the form of an instance's frames from the Accept
// header: native frames as application/octet-stream (little endian,
// Explicit VR Little Endian as their transfer syntax), compressed ones in
// their codec's media type as stored. Compressed frames are never
// decompressed.
func negotiateFrames(accept string, in *dicom.InstanceRef) (frameForm, bool) {
	stored := in.TransferSyntax
	native := dicom.IsUncompressed(stored)
	storedForm := frameForm{mediaType: dicom.FrameMediaType(stored), ts: stored}
	if native {
		storedForm = frameForm{mediaType: "application/octet-stream", ts: dicom.ExplicitVRLittleEndian}
	}
	for _, m := range parseAccept(accept) {
		typ := m.typ
		if typ == "multipart/related" {
			typ = strings.ToLower(m.param("type"))
			if typ == "" {
				typ = "application/octet-stream"
			}
		}
		want := m.param("transfer-syntax")
		switch {
		case typ == "*/*":
			return storedForm, true
		case !matchesType(typ, storedForm.mediaType):
			continue
		case want == "" && (native || typ != "application/octet-stream"), want == anyTS, want == storedForm.ts:
			return storedForm, true
		case native && dicom.IsUncompressed(want) && want != dicom.ExplicitVRBigEndian:
			return storedForm, true // native frames are the same bytes in every little endian syntax
		}
	}
	return frameForm{}, false
}

func matchesType(rng, t string) bool {
	return mediaRange{typ: rng}.matches(t)
}

func (a Area) handleFrames(w http.ResponseWriter, r *http.Request) {
	st, in, ok := a.openOne(w, r)
	if !ok {
		return
	}
	frames, err := parseFrames(r.PathValue("frames"), in.Frames)
	if err != nil {
		api.Fail(w, err)
		return
	}
	form, ok := negotiateFrames(r.Header.Get("Accept"), in)
	if !ok {
		api.Fail(w, api.Errorf(http.StatusNotAcceptable,
			fmt.Sprintf(`ask for multipart/related; type=%q (or transfer-syntax=*)`, dicom.FrameMediaType(in.TransferSyntax)),
			"cannot send frames as %q: the instance is stored in %s and compressed frames are not decoded", r.Header.Get("Accept"), in.TransferSyntax))
		return
	}
	ctx := r.Context()
	mw := multipart.NewWriter(w)
	started := false
	for _, run := range runs(frames) {
		rc := a.Imaging.OpenInstance(ctx, st, in)
		_, err := dicom.ReadFrames(rc, st.Size(in), run, func(n int, data []byte) error {
			if !started {
				w.Header().Set("Content-Type", fmt.Sprintf(`multipart/related; type=%q; boundary=%s`, form.mediaType, mw.Boundary()))
				w.WriteHeader(http.StatusOK)
				started = true
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Type", form.mediaType+"; transfer-syntax="+form.ts)
			h.Set("Content-Length", strconv.Itoa(len(data)))
			h.Set("Content-Location", fmt.Sprintf("%s/frames/%d", instanceURL(baseURL(r), st, in), n))
			pw, err := mw.CreatePart(h)
			if err != nil {
				return err
			}
			_, err = pw.Write(data)
			return err
		})
		rc.Close()
		if err != nil {
			if started {
				a.log().Warn("WADO-RS frames failed", "record", st.Info.ID, "err", err)
				panic(http.ErrAbortHandler)
			}
			a.failFrames(w, err)
			return
		}
	}
	if !started {
		api.Fail(w, api.Errorf(http.StatusNotFound, "", "no such frames"))
		return
	}
	if err := mw.Close(); err != nil {
		panic(http.ErrAbortHandler)
	}
	a.Imaging.ReadDone(ctx, st, "")
}

func (a Area) failFrames(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, dicom.ErrFrameRange):
		api.Fail(w, api.Errorf(http.StatusNotFound, "", "%v", err))
	case errors.Is(err, dicom.ErrNoPixelData):
		api.Fail(w, api.Errorf(http.StatusNotFound, "", "the instance has no pixel data"))
	case errors.Is(err, dicom.ErrUnsupported):
		api.Fail(w, api.Errorf(http.StatusNotAcceptable, "", "%v", err))
	default:
		api.Fail(w, err)
	}
}

// handleBulk serves a top-level binary value the metadata names by
// BulkDataURI: native pixel data or another binary value as one
// application/octet-stream part (little endian); encapsulated pixel data
// as its frames, in their codec's media type.
func (a Area) handleBulk(w http.ResponseWriter, r *http.Request) {
	st, in, ok := a.openOne(w, r)
	if !ok {
		return
	}
	t, err := strconv.ParseUint(r.PathValue("tag"), 16, 32)
	if err != nil || len(r.PathValue("tag")) != 8 {
		api.Fail(w, api.Errorf(http.StatusBadRequest, "bulk data is addressed by its 8-digit hex tag", "bad tag %q", r.PathValue("tag")))
		return
	}
	if uint32(t) == 0x7FE00010 && !dicom.IsUncompressed(in.TransferSyntax) {
		r.SetPathValue("frames", "1")
		if in.Frames > 1 {
			var all []string
			for i := 1; i <= in.Frames; i++ {
				all = append(all, strconv.Itoa(i))
			}
			r.SetPathValue("frames", strings.Join(all, ","))
		}
		a.handleFrames(w, r)
		return
	}
	acceptable := false
	for _, m := range parseAccept(r.Header.Get("Accept")) {
		if m.typ == "*/*" || m.typ == "multipart/related" && (m.param("type") == "" || m.param("type") == "application/octet-stream") || m.typ == "application/octet-stream" {
			acceptable = true
			break
		}
	}
	if !acceptable {
		api.Fail(w, api.Errorf(http.StatusNotAcceptable, `ask for multipart/related; type="application/octet-stream"`, "bulk data is sent as application/octet-stream"))
		return
	}
	ctx := r.Context()
	// The value is written into a part as it is read; a failure before
	// the first byte still gets a clean error.
	mw := multipart.NewWriter(w)
	pw := &lazyPart{w: w, mw: mw, r: r}
	rc := a.Imaging.OpenInstance(ctx, st, in)
	_, err = dicom.ReadBulk(rc, st.Size(in), uint32(t), pw)
	rc.Close()
	if err != nil {
		if pw.part != nil {
			panic(http.ErrAbortHandler)
		}
		if errors.Is(err, dicom.ErrNoElement) {
			api.Fail(w, api.Errorf(http.StatusNotFound, "", "the instance has no element %s", r.PathValue("tag")))
			return
		}
		a.failFrames(w, err)
		return
	}
	if pw.part == nil { // an empty value
		pw.Write(nil)
	}
	mw.Close()
	a.Imaging.ReadDone(ctx, st, "")
}

// lazyPart starts the multipart response at the first write.
type lazyPart struct {
	w    http.ResponseWriter
	mw   *multipart.Writer
	r    *http.Request
	part io.Writer
}

func (l *lazyPart) Write(b []byte) (int, error) {
	if l.part == nil {
		l.w.Header().Set("Content-Type", `multipart/related; type="application/octet-stream"; boundary=`+l.mw.Boundary())
		l.w.WriteHeader(http.StatusOK)
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Location", "http://"+l.r.Host+l.r.URL.Path)
		p, err := l.mw.CreatePart(h)
		if err != nil {
			return 0, err
		}
		l.part = p
	}
	return l.part.Write(b)
}

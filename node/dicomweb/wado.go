package dicomweb

import (
	"context"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// WADO-RS: instances byte for byte, or their metadata as DICOM JSON.

func (a Area) handleWado(w http.ResponseWriter, r *http.Request, metadata bool) {
	studyUID, seriesUID, sopUID := r.PathValue("study"), r.PathValue("series"), r.PathValue("sop")
	if !metadata {
		if acc := r.Header.Get("Accept"); acc != "" && !strings.Contains(acc, "multipart/related") && !strings.Contains(acc, "*/*") {
			api.Fail(w, api.Errorf(http.StatusNotAcceptable, `ask for multipart/related; type="application/dicom"`, "cannot send %q: instances are sent as multipart/related; type=\"application/dicom\"", acc))
			return
		}
	}
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
	ctx := r.Context()
	if metadata {
		err = a.wadoMetadata(ctx, w, st, sel)
	} else {
		err = a.wadoInstances(ctx, w, st, sel)
	}
	if err != nil {
		// The status line and part of the body are gone: abort the
		// response so the client sees a failed transfer, not a short one.
		a.log().Warn("WADO-RS transfer failed", "record", st.Info.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
	a.Imaging.ReadDone(ctx, st, "")
}

func (a Area) wadoInstances(ctx context.Context, w http.ResponseWriter, st *imaging.Opened, sel []*dicom.InstanceRef) error {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	for _, in := range sel {
		h := textproto.MIMEHeader{}
		ct := "application/dicom"
		if in.TransferSyntax != "" {
			ct += "; transfer-syntax=" + in.TransferSyntax
		}
		h.Set("Content-Type", ct)
		h.Set("Content-Length", strconv.FormatInt(st.Size(in), 10))
		pw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if err := a.Imaging.WriteInstance(ctx, st, in, pw); err != nil {
			return err
		}
	}
	return mw.Close()
}

func (a Area) wadoMetadata(ctx context.Context, w http.ResponseWriter, st *imaging.Opened, sel []*dicom.InstanceRef) error {
	started := false
	for _, in := range sel {
		js, err := a.Imaging.InstanceMetadata(ctx, st, in)
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

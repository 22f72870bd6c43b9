package console

import (
	"archive/zip"
	"bytes"
	"fmt"
	"mime"
	"net/http"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

type imagingData struct {
	Available bool
	Patient   string
	Modality  string
	From, To  string
	Hits      []api.DicomStudyHit
	Shared    []recordRow // studies shared with this node it has not opened yet
	Error     string
}

func (k *Console) imagingPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := &imagingData{Available: k.cfg.Imaging != nil, Patient: q.Get("patient"), Modality: q.Get("modality"), From: q.Get("from"), To: q.Get("to")}
	v := k.newView(r.Context(), s, "Imaging", "imaging", d)
	if d.Available {
		hits, err := k.cfg.Imaging.Query(r.Context(), dicom.Filter{PatientID: d.Patient, Modality: d.Modality, From: d.From, To: d.To})
		if err != nil && fault.KindOf(err) != fault.Invalid {
			k.fail(w, r, s, err)
			return
		}
		if err != nil {
			d.Error = err.Error()
		}
		d.Hits = hits
		indexed := map[string]bool{}
		for _, h := range hits {
			indexed[h.ID] = true
		}
		_, shared, _, err := k.rows(r.Context(), "", v)
		if err != nil {
			k.fail(w, r, s, err)
			return
		}
		for _, row := range shared {
			if row.Class == ledger.ClassImaging && !indexed[row.ID] {
				d.Shared = append(d.Shared, row)
			}
		}
	}
	k.render(w, http.StatusOK, "imaging", v)
}

type studyData struct {
	ID        string
	Info      ledger.RecordInfo
	Name      string
	Mine      bool
	Grant     *ledger.Grant
	Opened    bool
	Study     *dicom.Study
	Series    []seriesRow
	Instances int
	Thumbs    bool
}

type seriesRow struct {
	*dicom.Series
	Count int
	Thumb string
}

// studyOf parses the record in the path and finds it on the ledger.
func (k *Console) studyOf(r *http.Request) (cid.Cid, ledger.RecordInfo, error) {
	if k.cfg.Imaging == nil {
		return cid.Undef, ledger.RecordInfo{}, fault.Unavailablef("", "this node has no imaging service")
	}
	id, err := cid.Decode(r.PathValue("id"))
	if err != nil {
		return id, ledger.RecordInfo{}, fault.Invalidf("record IDs look like bafkrei…", "%q is not a record ID", r.PathValue("id"))
	}
	info, ok := k.cfg.Ledger.Record(id)
	if !ok {
		return id, info, fault.NotFoundf("", "unknown record %s", id)
	}
	return id, info, nil
}

// opened returns the study opened for this session: its owner opens it
// (no read to record); anyone else only after an explicit Open, which is
// a read the ledger records.
func (k *Console) opened(r *http.Request, s *session, id cid.Cid, info ledger.RecordInfo) (*imaging.Opened, error) {
	if o, ok := s.openedStudy(id.String(), k.cfg.Now()); ok {
		return o, nil
	}
	if info.Owner != k.cfg.Self {
		return nil, nil
	}
	o, err := k.cfg.Imaging.Open(r.Context(), id, 0, "")
	if err != nil {
		return nil, err
	}
	s.keepOpened(id.String(), o, k.cfg.Now())
	return o, nil
}

func (k *Console) studyPage(w http.ResponseWriter, r *http.Request, s *session) {
	id, info, err := k.studyOf(r)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	d := &studyData{ID: id.String(), Info: info, Mine: info.Owner == k.cfg.Self}
	v := k.newView(r.Context(), s, "Study", "imaging", d)
	if l, ok := k.names.label(r.Context(), info); ok {
		d.Name, v.Title = l.Name, l.Name
	}
	if !d.Mine {
		if gs := k.myGrants(id, k.cfg.Now()); len(gs) > 0 {
			d.Grant = &gs[0]
		}
	}
	o, err := k.opened(r, s, id, info)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	if o != nil {
		d.Opened, d.Study, d.Thumbs = true, o.Study, true
		for _, se := range o.Study.Series {
			row := seriesRow{Series: se, Count: len(se.Instances)}
			if d.Thumbs && len(se.Instances) > 0 {
				row.Thumb = Prefix + "studies/" + id.String() + "/thumbs/" + se.UID
			}
			d.Series = append(d.Series, row)
			d.Instances += len(se.Instances)
		}
	}
	k.render(w, http.StatusOK, "study", v)
}

// openStudy reads a study shared with this node (the ledger records the
// read) and keeps it open for this session.
func (k *Console) openStudy(w http.ResponseWriter, r *http.Request, s *session) {
	id, _, err := k.studyOf(r)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	o, err := k.cfg.Imaging.Open(r.Context(), id, 0, "")
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	k.cfg.Imaging.ReadDone(r.Context(), o, "")
	s.keepOpened(id.String(), o, k.cfg.Now())
	if o.Manifest != nil {
		k.names.learn(id, access.Label{Name: o.Manifest.Name, MediaType: o.Manifest.MediaType})
	}
	redirect(w, r, Prefix+"studies/"+id.String())
}

// exportStudy streams the study's original instances as a zip (stored,
// not compressed: DICOM pixel data rarely shrinks), as
// SeriesNumber-SeriesUID/SOPInstanceUID.dcm. UIDs were checked when the
// study's metadata was decoded, so they are safe as names.
func (k *Console) exportStudy(w http.ResponseWriter, r *http.Request, s *session) {
	id, info, err := k.studyOf(r)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	o, err := k.opened(r, s, id, info)
	if err == nil && o == nil {
		o, err = k.cfg.Imaging.Open(r.Context(), id, 0, "")
	}
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "study-" + o.Study.UID + ".zip"}))
	zw := zip.NewWriter(w)
	for _, se := range o.Study.Series {
		for _, in := range se.Instances {
			f, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("%03d-%s/%s.dcm", se.Number, se.UID, in.SOPInstanceUID), Method: zip.Store})
			if err == nil {
				err = k.cfg.Imaging.WriteInstance(r.Context(), o, in, f)
			}
			if err != nil {
				k.log.Warn("console: study export failed midway", "record", id, "err", err)
				panic(http.ErrAbortHandler) // the browser marks the download failed
			}
		}
	}
	if err := zw.Close(); err != nil {
		panic(http.ErrAbortHandler)
	}
	k.cfg.Imaging.ReadDone(r.Context(), o, "")
}

func (k *Console) deidentify(w http.ResponseWriter, r *http.Request, s *session) {
	id, _, err := k.studyOf(r)
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	f := r.PostForm
	res, err := k.cfg.Imaging.DeidentifyRecord(r.Context(), id, api.DicomDeidRequest{Record: id.String(),
		ShiftDates: f.Get("shift_dates") == "on", RetainPatientCharacteristics: f.Get("retain") == "on"})
	if err != nil {
		k.fail(w, r, s, err)
		return
	}
	msg := fmt.Sprintf("De-identified copy added: %d instances", res.Instances)
	if n := len(res.Excluded); n > 0 {
		msg += fmt.Sprintf(", %d left out (they may carry identifying text burnt into the pixels)", n)
	}
	s.addFlash("ok", msg+".")
	redirect(w, r, Prefix+"studies/"+res.ID)
}

// thumbnail renders the middle instance of a series of an opened study
// (for a study shared with this node, part of the read its opening
// recorded).
func (k *Console) thumbnail(w http.ResponseWriter, r *http.Request, s *session) {
	id, info, err := k.studyOf(r)
	if err != nil {
		plain(w, api.StatusOf(err), err.Error())
		return
	}
	o, err := k.opened(r, s, id, info)
	if err != nil || o == nil {
		plain(w, http.StatusNotFound, "open the study first")
		return
	}
	ins := o.Select(r.PathValue("series"), "")
	if len(ins) == 0 {
		plain(w, http.StatusNotFound, "no such series")
		return
	}
	var buf bytes.Buffer
	if err := k.renderThumb(r.Context(), o, ins[len(ins)/2], &buf); err != nil {
		if !cannotRender(err) {
			k.log.Warn("console: thumbnail", "record", id, "err", err)
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Write(noPreview(map[bool]string{true: "cannot render this image", false: "could not read it"}[cannotRender(err)]))
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(buf.Bytes())
}

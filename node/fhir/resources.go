package fhir

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/dicomweb"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// ---- Patient ----

// knownPatient is a patient this node knows: by a DICOM study it imported
// or an implantation it made.
type knownPatient struct {
	local string
	name  string // DICOM PN, Family^Given^...
}

func (a Area) knownPatients(ctx context.Context) (map[string]*knownPatient, error) {
	out := map[string]*knownPatient{}
	if a.Imaging != nil {
		hits, err := a.Imaging.Find(ctx, dicom.Filter{})
		if err != nil {
			return nil, err
		}
		for _, h := range hits {
			if h.PatientID == "" {
				continue
			}
			p := out[patientID(h.PatientID)]
			if p == nil {
				p = &knownPatient{local: h.PatientID}
				out[patientID(h.PatientID)] = p
			}
			if p.name == "" {
				p.name = h.PatientName
			}
		}
	}
	if a.Implants != nil {
		ls, err := a.Implants.Implantations(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			if out[patientID(l.Patient)] == nil {
				out[patientID(l.Patient)] = &knownPatient{local: l.Patient}
			}
		}
	}
	return out, nil
}

// localPatient resolves a patient search value to a local patient ID.
func (a Area) localPatient(ctx context.Context, q *query, name string) (string, bool, error) {
	v, ok := q.value(name)
	if !ok {
		return "", false, nil
	}
	fid := strings.TrimPrefix(refValue("Patient", v), "Patient/")
	ps, err := a.knownPatients(ctx)
	if err != nil {
		return "", false, err
	}
	if p := ps[fid]; p != nil {
		return p.local, true, nil
	}
	return fid, true, nil
}

func (a Area) patients(ctx context.Context, _ *http.Request, q *query) ([]*item, error) {
	ps, err := a.knownPatients(ctx)
	if err != nil {
		return nil, err
	}
	var out []*item
	for fid, p := range ps {
		res := fm.Patient{Id: ptr(fid), Identifier: []fm.Identifier{ident(sysPatient, p.local)}, Active: ptr(true)}
		if p.name != "" {
			parts := strings.Split(p.name, "^")
			n := fm.HumanName{Text: ptr(strings.TrimSpace(strings.Join(parts, " ")))}
			if parts[0] != "" {
				n.Family = ptr(parts[0])
			}
			for _, g := range parts[1:min(len(parts), 3)] {
				if g != "" {
					n.Given = append(n.Given, g)
				}
			}
			res.Name = []fm.HumanName{n}
		}
		it := newItem(fid, res)
		it.token("identifier", sysPatient, p.local)
		out = append(out, it)
	}
	return sortItems(out), nil
}

// ---- Device and Procedure (implants) ----

// UDI issuers' FHIR naming systems.
var udiIssuer = map[string]string{
	"gs1":   "http://hl7.org/fhir/NamingSystem/gs1-di",
	"hibcc": "http://hl7.org/fhir/NamingSystem/hibcc-dI",
}

func (a Area) devices(ctx context.Context, _ *http.Request, q *query) ([]*item, error) {
	if a.Implants == nil {
		return nil, nil
	}
	ds, err := a.Implants.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var out []*item
	for _, d := range ds {
		carrier := fm.DeviceUdiCarrier{DeviceIdentifier: ptr(d.DI), CarrierHRF: ptr(d.UDI), EntryType: ptr(fm.UDIEntryTypeUnknown)}
		if iss, ok := udiIssuer[d.Issuer]; ok {
			carrier.Issuer = ptr(iss)
		}
		status := fm.FHIRDeviceStatusActive
		if d.Status == "explanted" {
			status = fm.FHIRDeviceStatusInactive
		}
		res := fm.Device{
			Id: ptr(d.Device), Identifier: []fm.Identifier{ident(sysDevice, d.Device)},
			UdiCarrier: []fm.DeviceUdiCarrier{carrier}, Status: &status,
			Owner: peerRef(d.Custodian, "custodian"),
		}
		if d.Lot != "" {
			res.LotNumber = ptr(d.Lot)
		}
		if d.Serial != "" {
			res.SerialNumber = ptr(d.Serial)
		}
		if d.Expiry != nil {
			res.ExpirationDate = d.Expiry
		}
		if d.Produced != nil {
			res.ManufactureDate = d.Produced
		}
		if d.Patient != "" {
			res.Patient = &fm.Reference{Reference: ptr("Patient/" + patientID(d.Patient))}
		}
		for _, rc := range d.Recalls {
			res.Note = append(res.Note, fm.Annotation{Text: "Recalled: ledger entry " + rc})
		}
		res.Note = append(res.Note, fm.Annotation{Text: "Custody status: " + d.Status})
		it := newItem(d.Device, res)
		it.token("udi-di", "", d.DI)
		it.token("lot-number", "", d.Lot)
		it.token("status", "http://hl7.org/fhir/device-status", string(status.Code()))
		it.token("identifier", sysDevice, d.Device)
		if d.Patient != "" {
			it.ref("patient", "Patient", patientID(d.Patient))
		}
		out = append(out, it)
	}
	return out, nil
}

func (a Area) procedures(ctx context.Context, _ *http.Request, q *query) ([]*item, error) {
	if a.Implants == nil {
		return nil, nil
	}
	local, _, err := a.localPatient(ctx, q, "patient")
	if err != nil {
		return nil, err
	}
	ls, err := a.Implants.Implantations(ctx, local)
	if err != nil {
		return nil, err
	}
	var out []*item
	add := func(id, pid, text, action, display string, performed time.Time, device string) {
		res := fm.Procedure{
			Id: ptr(id), Identifier: []fm.Identifier{ident(sysEntry, id)}, Status: fm.EventStatusCompleted,
			Code:              &fm.CodeableConcept{Text: ptr(text)},
			Subject:           fm.Reference{Reference: ptr("Patient/" + pid)},
			PerformedDateTime: ptr(instant(performed)),
			FocalDevice: []fm.ProcedureFocalDevice{{
				Action:      &fm.CodeableConcept{Coding: []fm.Coding{coding("http://hl7.org/fhir/device-action", action, display)}},
				Manipulated: fm.Reference{Reference: ptr("Device/" + device)},
			}},
		}
		it := newItem(id, res)
		it.ref("patient", "Patient", pid)
		it.ref("subject", "Patient", pid)
		it.date("date", instantRange(performed))
		it.token("identifier", sysEntry, id)
		out = append(out, it)
	}
	for _, l := range ls {
		pid := patientID(l.Patient)
		add(l.UseEntry, pid, l.Procedure, "implanted", "Implanted", l.Device.Implanted.Time, l.Device.Device)
		if l.ExplantEntry != "" {
			add(l.ExplantEntry, pid, "Removal of "+l.Device.UDI, "explanted", "Explanted", l.Device.Explanted.Time, l.Device.Device)
		}
	}
	return out, nil
}

// ---- ImagingStudy and its Endpoint ----

const endpointID = "dicomweb"

func (a Area) endpoints(_ context.Context, r *http.Request, _ *query) ([]*item, error) {
	addr := "http://127.0.0.1" + dicomweb.Prefix
	if r != nil {
		addr = "http://" + r.Host + dicomweb.Prefix
	}
	res := fm.Endpoint{
		Id: ptr(endpointID), Status: fm.EndpointStatusActive, Name: ptr("medmesh DICOMweb (QIDO-RS, WADO-RS, STOW-RS)"),
		ConnectionType:  coding("http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "dicom-wado-rs", "DICOM WADO-RS"),
		PayloadType:     []fm.CodeableConcept{{Coding: []fm.Coding{coding("http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "DICOM", "DICOM")}}},
		PayloadMimeType: []string{"application/dicom"},
		Address:         addr,
	}
	return []*item{newItem(endpointID, res)}, nil
}

func (a Area) studies(ctx context.Context, _ *http.Request, q *query) ([]*item, error) {
	if a.Imaging == nil {
		return nil, nil
	}
	var f dicom.Filter
	if local, ok, err := a.localPatient(ctx, q, "patient"); err != nil {
		return nil, err
	} else if ok {
		f.PatientID = local
	}
	hits, err := a.Imaging.Find(ctx, f)
	if err != nil {
		return nil, err
	}
	var out []*item
	for _, h := range hits {
		id, err := cid.Decode(h.RecordID)
		if err != nil {
			return nil, errorf("fhir: index entry with record ID %q: %w", h.RecordID, err)
		}
		res := fm.ImagingStudy{
			Id: ptr(h.RecordID), Identifier: []fm.Identifier{{System: ptr("urn:dicom:uid"), Value: ptr("urn:oid:" + h.StudyUID)}},
			Status:            fm.ImagingStudyStatusAvailable,
			Subject:           fm.Reference{Reference: ptr("Patient/" + patientID(h.PatientID))},
			Endpoint:          []fm.Reference{{Reference: ptr("Endpoint/" + endpointID)}},
			NumberOfInstances: ptr(h.Instances),
		}
		if d, ok := fhirDate(h.StudyDate); ok {
			res.Started = ptr(d)
		}
		if h.Description != "" {
			res.Description = ptr(h.Description)
		}
		for _, m := range h.Modalities {
			res.Modality = append(res.Modality, coding(sysDICOM, m, ""))
		}
		// Series and instances from the study's (local, sealed) metadata.
		o, err := a.Imaging.Open(ctx, id, 0, "")
		if err != nil {
			return nil, err
		}
		res.NumberOfSeries = ptr(len(o.Study.Series))
		for _, se := range o.Study.Series {
			s := fm.ImagingStudySeries{Uid: se.UID, Modality: coding(sysDICOM, se.Modality, ""), NumberOfInstances: ptr(len(se.Instances)),
				Endpoint: []fm.Reference{{Reference: ptr("Endpoint/" + endpointID)}}}
			if se.Number != 0 {
				s.Number = ptr(se.Number)
			}
			if se.Description != "" {
				s.Description = ptr(se.Description)
			}
			for _, in := range se.Instances {
				inst := fm.ImagingStudySeriesInstance{Uid: in.SOPInstanceUID, SopClass: coding("urn:ietf:rfc:3986", "urn:oid:"+in.SOPClassUID, "")}
				if in.Number != 0 {
					inst.Number = ptr(in.Number)
				}
				s.Instance = append(s.Instance, inst)
			}
			res.Series = append(res.Series, s)
		}
		it := newItem(h.RecordID, res)
		pid := patientID(h.PatientID)
		it.ref("patient", "Patient", pid)
		it.ref("subject", "Patient", pid)
		it.token("identifier", "urn:dicom:uid", "urn:oid:"+h.StudyUID)
		it.token("identifier", "", h.StudyUID)
		for _, m := range h.Modalities {
			it.token("modality", sysDICOM, m)
		}
		it.date("started", dayRange(h.StudyDate))
		it.date("date", dayRange(h.StudyDate))
		out = append(out, it)
	}
	return out, nil
}

// ---- DocumentReference and Binary (records) ----

// maxInline bounds a Binary served as a FHIR resource (base64 in JSON);
// larger records are read raw.
const maxInline = 16 << 20

func (a Area) documents(ctx context.Context, _ *http.Request, q *query) ([]*item, error) {
	if a.Records == nil {
		return nil, nil
	}
	rs, err := a.Records.List(ctx)
	if err != nil {
		return nil, err
	}
	superseded := map[string]bool{}
	for _, r := range rs {
		if r.Prev != "" {
			superseded[r.Prev] = true
		}
	}
	var out []*item
	for _, r := range rs {
		// Studies are ImagingStudy resources; datasets are for research.
		if !r.Readable || r.Class == ledger.ClassImaging || r.Class == ledger.ClassDataset {
			continue
		}
		status := fm.DocumentReferenceStatusCurrent
		if superseded[r.ID] {
			status = fm.DocumentReferenceStatusSuperseded
		}
		att := fm.Attachment{Url: ptr("Binary/" + r.ID), Creation: ptr(instant(r.Created))}
		if r.Size <= 1<<31-1 {
			att.Size = ptr(int(r.Size))
		}
		if r.Mine {
			// This node's own record: its manifest is local, opening it
			// is no read. Another's would be, so its name, type and
			// hash are left to a read of Binary/ID.
			_, m, _, _, err := a.Records.Open(ctx, mustCid(r.ID), 0)
			if err != nil {
				return nil, err
			}
			if m.MediaType != "" {
				att.ContentType = ptr(m.MediaType)
			}
			if m.Name != "" {
				att.Title = ptr(m.Name)
			}
			if len(m.Files) == 1 {
				// Attachment.hash is SHA-1 in R4; the manifest has the
				// plaintext's SHA-256, carried in an extension.
				att.Extension = []fm.Extension{{Url: "urn:medmesh:fhir:attachment-sha256", ValueBase64Binary: ptr(base64.StdEncoding.EncodeToString(m.Files[0].SHA256[:]))}}
			}
		}
		res := fm.DocumentReference{
			Id: ptr(r.ID), Identifier: []fm.Identifier{ident(sysRecord, r.ID)}, Status: status,
			Category: []fm.CodeableConcept{{Coding: []fm.Coding{coding("urn:medmesh:record-class", r.Class, r.Class)}, Text: ptr(r.Class)}},
			Date:     ptr(instant(r.Created)), Custodian: peerRef(r.Owner, "owner"),
			Content: []fm.DocumentReferenceContent{{Attachment: att}},
		}
		if r.Prev != "" {
			res.RelatesTo = []fm.DocumentReferenceRelatesTo{{Code: fm.DocumentRelationshipTypeReplaces, Target: fm.Reference{Reference: ptr("DocumentReference/" + r.Prev)}}}
		}
		it := newItem(r.ID, res)
		it.token("identifier", sysRecord, r.ID)
		it.token("category", "urn:medmesh:record-class", r.Class)
		it.date("date", instantRange(r.Created))
		out = append(out, it)
	}
	return out, nil
}

func mustCid(s string) cid.Cid {
	c, _ := cid.Decode(s)
	return c
}

// binary reads a record's plaintext: raw (application/octet-stream), or as
// a Binary resource when the client accepts only FHIR JSON. Either is a
// read, claimed and attested like `medmesh get`.
func (a Area) binary(w http.ResponseWriter, r *http.Request, id string) {
	c, err := cidOf(id)
	if err != nil {
		a.fail(w, err)
		return
	}
	if a.Records == nil {
		a.fail(w, fault.NotFoundf("", "no records here"))
		return
	}
	acc := r.Header.Get("Accept")
	asResource := strings.Contains(acc, "fhir+json") && !strings.Contains(acc, "*/*") && !strings.Contains(acc, "octet-stream")
	if asResource {
		var buf limitedBuffer
		err := a.Records.Get(r.Context(), c, records.GetRequest{File: -1, Opened: func(size int64) {
			if size > maxInline {
				buf.tooLarge = true
			}
		}}, &buf)
		if buf.tooLarge {
			err = fault.TooLargef("read it raw: Accept: application/octet-stream", "record %s is larger than %d bytes", id, maxInline)
		}
		if err != nil {
			a.fail(w, err)
			return
		}
		write(w, http.StatusOK, fm.Binary{Id: ptr(id), ContentType: "application/octet-stream", Data: ptr(encodeB64(buf.b))})
		return
	}
	// Raw: headers go out with the first byte, so a failure before it is
	// still an OperationOutcome.
	sw := &lazyWriter{w: w}
	if err := a.Records.Get(r.Context(), c, records.GetRequest{File: -1}, sw); err != nil {
		if !sw.started {
			a.fail(w, err)
			return
		}
		if a.Log != nil {
			a.Log.Warn("fhir: Binary read broke off", "record", id, "err", err)
		}
		return
	}
	if !sw.started {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
	}
}

type limitedBuffer struct {
	b        []byte
	tooLarge bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.tooLarge || len(l.b)+len(p) > maxInline {
		l.tooLarge = true
		return 0, errors.New("too large")
	}
	l.b = append(l.b, p...)
	return len(p), nil
}

type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "application/octet-stream")
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

var _ io.Writer = (*lazyWriter)(nil)

// ---- Consent ----

var purposeCodes = map[string][2]string{ // purpose -> consent scope, v3 ActReason
	ledger.PurposeResearch:   {"research", "HRESCH"},
	ledger.PurposeTreatment:  {"treatment", "TREAT"},
	ledger.PurposeOperations: {"patient-privacy", "HOPERAT"},
	ledger.PurposeEmergency:  {"treatment", "ETREAT"},
}

func (a Area) consents(ctx context.Context, _ *http.Request, q *query) ([]*item, error) {
	if a.Research == nil {
		return nil, nil
	}
	local, byPatient, err := a.localPatient(ctx, q, "patient")
	if err != nil {
		return nil, err
	}
	cs, err := a.Research.Consents(ctx, local, "")
	if err != nil {
		if byPatient && fault.Is(err, fault.Invalid) {
			return nil, nil // not a patient ID this node could have
		}
		return nil, err
	}
	var out []*item
	for _, c := range cs {
		codes := purposeCodes[c.Purpose]
		status := fm.ConsentStateActive
		if c.Revoked || c.Expired {
			status = fm.ConsentStateInactive
		}
		prov := &fm.ConsentProvision{Type: ptr(fm.ConsentProvisionTypePermit),
			Purpose: []fm.Coding{coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", codes[1], "")}}
		if !c.Expires.IsZero() {
			prov.Period = &fm.Period{End: ptr(instant(c.Expires.Time))}
		}
		if c.Modality != "" {
			prov.Code = append(prov.Code, fm.CodeableConcept{Coding: []fm.Coding{coding(sysDICOM, c.Modality, "")}})
		}
		if c.BodyPart != "" {
			prov.Code = append(prov.Code, fm.CodeableConcept{Text: ptr("body part " + c.BodyPart)})
		}
		res := fm.Consent{
			Id: ptr(c.Entry), Identifier: []fm.Identifier{ident(sysEntry, c.Entry)}, Status: status,
			Scope:      fm.CodeableConcept{Coding: []fm.Coding{coding("http://terminology.hl7.org/CodeSystem/consentscope", codes[0], "")}},
			Category:   []fm.CodeableConcept{{Coding: []fm.Coding{coding("http://loinc.org", "59284-0", "Patient Consent")}}},
			DateTime:   ptr(instant(c.Time)),
			PolicyRule: &fm.CodeableConcept{Coding: []fm.Coding{coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN", "")}},
			Provision:  prov,
		}
		it := newItem(c.Entry, res)
		if byPatient {
			res.Patient = &fm.Reference{Reference: ptr("Patient/" + patientID(local))}
			it.res = res
			it.ref("patient", "Patient", patientID(local))
		}
		it.token("identifier", sysEntry, c.Entry)
		it.date("date", instantRange(c.Time))
		out = append(out, it)
	}
	return out, nil
}

// ---- AuditEvent ----

func (a Area) audits(ctx context.Context, _ *http.Request, q *query) ([]*item, error) {
	v, ok := q.value("entity")
	if !ok {
		return nil, fault.Invalidf("search AuditEvent?entity=DocumentReference/ID (or ImagingStudy/ID)", "an AuditEvent search needs entity: the record whose accounting of disclosures to list")
	}
	ref := refValue("DocumentReference", v)
	typ, idStr, _ := strings.Cut(ref, "/")
	id, err := cid.Decode(idStr)
	if err != nil {
		return nil, fault.Invalidf("", "entity %q does not name a record", v)
	}
	if a.Records == nil {
		return nil, nil
	}
	evs, err := a.Records.Audit(id)
	if err != nil {
		return nil, err
	}
	var out []*item
	for _, e := range evs {
		aid := "a-" + hashHex(e.ID + "|" + e.Reader + "|" + e.Time.String() + "|" + e.Grant)[:40]
		purpose := purposeCodes[e.Purpose][1]
		agents := []fm.AuditEventAgent{{Who: peerRef(e.Reader, "reader"), Requestor: true,
			PurposeOfUse: []fm.CodeableConcept{{Coding: []fm.Coding{coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", purpose, "")}}}}}
		observer := a.Self.String()
		for _, by := range e.AttestedBy {
			agents = append(agents, fm.AuditEventAgent{Who: peerRef(by, "attested by (served the blocks)"), Requestor: false})
			observer = by
		}
		desc := []string{}
		if e.Emergency {
			desc = append(desc, "read under an emergency grant")
		}
		if e.Review {
			desc = append(desc, "flagged for review")
		}
		desc = append(desc, e.Notes...)
		res := fm.AuditEvent{
			Id:       ptr(aid),
			Type:     coding(sysDICOM, "110110", "Patient Record"),
			Subtype:  []fm.Coding{coding("http://hl7.org/fhir/restful-interaction", "read", "read")},
			Action:   ptr(fm.AuditEventActionR),
			Period:   &fm.Period{Start: ptr(instant(e.Time)), End: ptr(instant(e.Until))},
			Recorded: instant(e.Until), Outcome: ptr(fm.AuditEventOutcome0),
			PurposeOfEvent: []fm.CodeableConcept{{Coding: []fm.Coding{coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", purpose, "")}}},
			Agent:          agents,
			Source:         fm.AuditEventSource{Observer: *peerRef(observer, "observer"), Site: ptr("medmesh")},
			Entity: []fm.AuditEventEntity{{What: &fm.Reference{Reference: ptr(typ + "/" + e.ID)},
				Description: ptr(strings.Join(append([]string{e.Reader + " read it " + strconv.Itoa(e.Count) + " time(s)"}, desc...), "; "))}},
		}
		if len(desc) > 0 {
			res.OutcomeDesc = ptr(strings.Join(desc, "; "))
		}
		it := newItem(aid, res)
		it.ref("entity", typ, e.ID)
		it.ref("entity", "DocumentReference", e.ID)
		it.ref("entity", "ImagingStudy", e.ID)
		it.date("date", dateRange{e.Time.UTC().Truncate(time.Second), e.Until.UTC().Truncate(time.Second).Add(time.Second)})
		out = append(out, it)
	}
	return out, nil
}

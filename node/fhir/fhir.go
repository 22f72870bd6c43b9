package fhir

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/implants"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// ContentType is the media type of every FHIR answer.
const ContentType = "application/fhir+json; charset=utf-8"

// Base is the path the facade is served under.
const Base = "/fhir"

// Implants is what the facade reads of the implant service.
type Implants interface {
	Devices(ctx context.Context) ([]api.ImplantDevice, error)
	// Implantations lists the implantations this node made and resolves
	// (of one local patient if patient is set).
	Implantations(ctx context.Context, patient string) ([]implants.Local, error)
}

// Imaging is what the facade reads of the imaging service: the local study
// index and a study's series and instances.
type Imaging interface {
	Find(ctx context.Context, f dicom.Filter) ([]dicom.Hit, error)
	Open(ctx context.Context, id cid.Cid, version int, purpose string) (*imaging.Opened, error)
}

// Records is what the facade reads of the records service.
type Records interface {
	List(ctx context.Context) ([]api.Record, error)
	// Open decrypts a record's manifest (this node's own records only:
	// opening another's is a read).
	Open(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error)
	// Get streams a record's plaintext: a read, claimed and attested
	// like `medmesh get`.
	Get(ctx context.Context, id cid.Cid, req records.GetRequest, w io.Writer) error
	Audit(id cid.Cid) ([]api.AccessEvent, error)
}

// Research is what the facade reads of the consents.
type Research interface {
	// Consents lists this clinic's consents (of one patient if set).
	Consents(ctx context.Context, patientID, purpose string) ([]api.ConsentInfo, error)
}

// Area serves the FHIR R4 facade under /fhir (and the collection export
// under /api/v1/fhir/export) on the node's API, behind its token.
type Area struct {
	Self     peer.ID
	Implants Implants
	Imaging  Imaging
	Records  Records
	Research Research
	Log      *slog.Logger
}

// Routes implements httpapi.Area.
func (a Area) Routes(m httpapi.Mux) {
	m.HandleFunc("GET "+Base+"/metadata", a.metadata)
	m.HandleFunc("GET "+Base+"/{type}", a.search)
	m.HandleFunc("POST "+Base+"/{type}/_search", a.search)
	m.HandleFunc("GET "+Base+"/{type}/{id}", a.read)
	m.HandleFunc("GET "+api.Prefix+"/fhir/export", a.export)
}

// statusError gives an error an HTTP status of its own (406).
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return api.StatusOf(err)
}

// write sends a resource as application/fhir+json.
func write(w http.ResponseWriter, code int, v any) {
	b, err := resourceJSON(v)
	var out bytes.Buffer
	if err == nil {
		err = json.Indent(&out, b, "", "  ")
	}
	if err != nil {
		code = http.StatusInternalServerError
		out.Reset()
		out.WriteString(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception"}]}`)
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(code)
	out.WriteByte('\n')
	w.Write(out.Bytes())
}

// unescapeHTML undoes encoding/json's HTML escaping (\u0026, \u003c,
// \u003e) that the models' own MarshalJSON applies: only where the
// backslash starts an escape, not where it is itself escaped.
func unescapeHTML(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			if i+5 < len(b) && b[i+1] == 'u' && b[i+2] == '0' && b[i+3] == '0' {
				switch string(b[i+4 : i+6]) {
				case "26":
					out, i = append(out, '&'), i+5
					continue
				case "3c":
					out, i = append(out, '<'), i+5
					continue
				case "3e":
					out, i = append(out, '>'), i+5
					continue
				}
			}
			out = append(out, b[i], b[i+1])
			i++
			continue
		}
		out = append(out, b[i])
	}
	return out
}

// resourceJSON encodes a resource compactly, without HTML escaping (a URL's
// "&" stays "&"), with "resourceType" first as FHIR's JSON format puts it
// (the models write it last).
func resourceJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b := unescapeHTML(bytes.TrimRight(buf.Bytes(), "\n"))
	i := bytes.LastIndex(b, []byte(`,"resourceType":`))
	if i < 0 || len(b) < 2 || b[len(b)-1] != '}' {
		return b, nil
	}
	out := make([]byte, 0, len(b))
	out = append(out, '{')
	out = append(out, b[i+1:len(b)-1]...)
	out = append(out, ',')
	out = append(out, b[1:i]...)
	return append(out, '}'), nil
}

// fail answers an OperationOutcome with the error's status.
func (a Area) fail(w http.ResponseWriter, err error) {
	code := statusOf(err)
	issue := fm.IssueTypeException
	switch {
	case code == http.StatusNotFound:
		issue = fm.IssueTypeNotFound
	case code == http.StatusForbidden || code == http.StatusUnauthorized:
		issue = fm.IssueTypeForbidden
	case code == http.StatusNotAcceptable:
		issue = fm.IssueTypeNotSupported
	case code >= 400 && code < 500:
		issue = fm.IssueTypeInvalid
	case code >= 500 && a.Log != nil:
		a.Log.Error("fhir", "err", err)
	}
	msg := err.Error()
	if h := fault.HintOf(err); h != "" {
		msg += " (" + h + ")"
	}
	write(w, code, fm.OperationOutcome{Issue: []fm.OperationOutcomeIssue{{Severity: fm.IssueSeverityError, Code: issue, Diagnostics: &msg}}})
}

// acceptable checks the Accept header: FHIR JSON (or any JSON, or
// anything) is what this facade speaks.
func acceptable(r *http.Request) error {
	acc := r.Header.Get("Accept")
	if acc == "" {
		return nil
	}
	for _, part := range strings.Split(acc, ",") {
		mt := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		switch mt {
		case "*/*", "application/*", "application/fhir+json", "application/json", "application/json+fhir":
			return nil
		}
	}
	return &statusError{http.StatusNotAcceptable, fault.Invalidf("send Accept: application/fhir+json", "this server answers application/fhir+json only, not %q", acc)}
}

// base is the facade's absolute URL as the client reached it.
func base(r *http.Request) string { return "http://" + r.Host + Base }

// kinds are the resource types the facade serves, with their search
// parameters: the CapabilityStatement is built from this table, and a
// search accepts exactly these parameters.
func (a Area) kinds() []kind {
	patient := param{name: "patient", typ: pReference, target: "Patient", doc: "the local patient (Patient/ID, or ID)"}
	subject := param{name: "subject", typ: pReference, target: "Patient", doc: "same as patient"}
	identifier := param{name: "identifier", typ: pToken, doc: "system|value, or value"}
	date := param{name: "date", typ: pDate, doc: "with prefixes eq, ne, gt, lt, ge, le"}
	std := func(p param, res string) param {
		p.definition = "http://hl7.org/fhir/SearchParameter/" + res + "-" + p.name
		if p.name == "patient" || p.name == "identifier" || p.name == "date" {
			p.definition = "http://hl7.org/fhir/SearchParameter/clinical-" + p.name
		}
		return p
	}
	return []kind{
		{name: "Patient", list: a.patients, search: true, params: []param{std(identifier, "Patient")},
			doc: "only the patients this node knows (its DICOM index, its implantations); never on another node"},
		{name: "Device", list: a.devices, search: true, params: []param{
			std(patient, "Device"),
			{name: "udi-di", typ: pToken, definition: "http://hl7.org/fhir/SearchParameter/Device-udi-di", doc: "the UDI's device identifier (GTIN)"},
			{name: "lot-number", typ: pToken, doc: "the lot (a medmesh parameter: R4 Device has none)"},
			{name: "status", typ: pToken, definition: "http://hl7.org/fhir/SearchParameter/Device-status", doc: "active, inactive"},
			{name: "identifier", typ: pToken, definition: "http://hl7.org/fhir/SearchParameter/Device-identifier", doc: "urn:medmesh:device|ID"},
		}, doc: "implants on the ledger; patient only on the node that implanted it"},
		{name: "Procedure", list: a.procedures, search: true, params: []param{std(patient, "Procedure"), std(subject, "Procedure"), std(date, "Procedure"), std(identifier, "Procedure")},
			doc: "implantations this node made (focal device, performed date, local patient)"},
		{name: "ImagingStudy", list: a.studies, search: true, params: []param{
			std(patient, "ImagingStudy"), std(subject, "ImagingStudy"), std(identifier, "ImagingStudy"),
			{name: "modality", typ: pToken, fold: true, definition: "http://hl7.org/fhir/SearchParameter/ImagingStudy-modality", doc: "a DICOM modality (any case)"},
			{name: "started", typ: pDate, definition: "http://hl7.org/fhir/SearchParameter/ImagingStudy-started", doc: "the study date"},
			{name: "date", typ: pDate, doc: "the study date (same as started)"},
		}, doc: "studies in this node's DICOM index; endpoint: the node's DICOMweb"},
		{name: "DocumentReference", list: a.documents, search: true, params: []param{
			std(identifier, "DocumentReference"), std(date, "DocumentReference"),
			{name: "category", typ: pToken, definition: "http://hl7.org/fhir/SearchParameter/DocumentReference-category", doc: "the record class"},
		}, doc: "ordinary records this node can read; the attachment is Binary/ID"},
		{name: "Binary", read: a.binary, doc: "a record's plaintext, read (claimed and attested) like medmesh get"},
		{name: "Consent", list: a.consents, search: true, params: []param{std(patient, "Consent"), std(date, "Consent"), std(identifier, "Consent")},
			doc: "this clinic's consent entries; the patient is resolved only when searched by patient"},
		{name: "AuditEvent", list: a.audits, search: true, noRead: true, params: []param{
			{name: "entity", typ: pReference, target: "DocumentReference", definition: "http://hl7.org/fhir/SearchParameter/AuditEvent-entity", doc: "the record (required)"},
			{name: "date", typ: pDate, definition: "http://hl7.org/fhir/SearchParameter/AuditEvent-date"},
		}, doc: "the accounting of disclosures of a record this node owns (its audit), search only"},
		{name: "Endpoint", list: a.endpoints, search: true, doc: "the node's DICOMweb service"},
	}
}

// kind is one resource type.
type kind struct {
	name   string
	list   func(ctx context.Context, r *http.Request, q *query) ([]*item, error)
	read   func(w http.ResponseWriter, r *http.Request, id string) // a read of its own (Binary)
	search bool
	noRead bool
	params []param
	doc    string
}

func (a Area) kind(name string) (kind, error) {
	names := []string{}
	for _, k := range a.kinds() {
		if k.name == name {
			return k, nil
		}
		names = append(names, k.name)
	}
	return kind{}, fault.NotFoundf("this server serves "+strings.Join(names, ", ")+" (GET /fhir/metadata)", "resource type %q is not supported", name)
}

func (a Area) search(w http.ResponseWriter, r *http.Request) {
	if err := acceptable(r); err != nil {
		a.fail(w, err)
		return
	}
	k, err := a.kind(r.PathValue("type"))
	if err == nil && !k.search {
		err = &statusError{http.StatusMethodNotAllowed, fault.Invalidf("read it: GET /fhir/"+k.name+"/ID", "%s is not searchable here", k.name)}
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	vals := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			a.fail(w, fault.Invalidf("send application/x-www-form-urlencoded", "search form: %v", err))
			return
		}
		vals = r.Form
	}
	q, err := parseQuery(vals, k.params, strings.Contains(r.Header.Get("Prefer"), "handling=lenient"))
	if err != nil {
		a.fail(w, err)
		return
	}
	items, err := k.list(r.Context(), r, q)
	if err != nil {
		a.fail(w, err)
		return
	}
	var hits []*item
	for _, it := range items {
		if q.match(it) {
			hits = append(hits, it)
		}
	}
	write(w, http.StatusOK, searchset(base(r), k.name, q, hits))
}

// searchset pages matches into a searchset Bundle with self, first,
// previous and next links.
func searchset(b, typ string, q *query, hits []*item) fm.Bundle {
	total := len(hits)
	from := min(q.offset, total)
	to := min(from+q.count, total)
	link := func(rel string, off int) fm.BundleLink {
		v := url.Values{}
		for k, vs := range q.raw {
			v[k] = vs
		}
		v.Set("_count", strconv.Itoa(q.count))
		v.Set("_offset", strconv.Itoa(off))
		return fm.BundleLink{Relation: rel, Url: b + "/" + typ + "?" + v.Encode()}
	}
	bundle := fm.Bundle{Type: fm.BundleTypeSearchset, Total: &total, Timestamp: ptr(time.Now().UTC().Format(time.RFC3339)),
		Link: []fm.BundleLink{link("self", from), link("first", 0)}}
	if from > 0 {
		bundle.Link = append(bundle.Link, link("previous", max(0, from-q.count)))
	}
	if to < total {
		bundle.Link = append(bundle.Link, link("next", to))
	}
	mode := fm.SearchEntryModeMatch
	for _, it := range hits[from:to] {
		raw, _ := resourceJSON(it.res)
		bundle.Entry = append(bundle.Entry, fm.BundleEntry{FullUrl: ptr(b + "/" + typ + "/" + it.id), Resource: raw, Search: &fm.BundleEntrySearch{Mode: &mode}})
	}
	return bundle
}

func (a Area) read(w http.ResponseWriter, r *http.Request) {
	k, err := a.kind(r.PathValue("type"))
	if err != nil {
		a.fail(w, err)
		return
	}
	id := r.PathValue("id")
	if k.read != nil {
		k.read(w, r, id)
		return
	}
	if err := acceptable(r); err != nil {
		a.fail(w, err)
		return
	}
	if k.noRead {
		a.fail(w, &statusError{http.StatusMethodNotAllowed, fault.Invalidf("search it: GET /fhir/"+k.name+"?...", "%s supports search only", k.name)})
		return
	}
	q := &query{conds: []cond{{p: param{name: "_id", typ: pToken}, values: []string{id}}}, count: 1}
	items, err := k.list(r.Context(), r, q)
	if err != nil {
		a.fail(w, err)
		return
	}
	for _, it := range items {
		if it.id == id {
			write(w, http.StatusOK, it.res)
			return
		}
	}
	a.fail(w, fault.NotFoundf("", "%s/%s is not on this node", k.name, id))
}

func (a Area) metadata(w http.ResponseWriter, r *http.Request) {
	if err := acceptable(r); err != nil {
		a.fail(w, err)
		return
	}
	write(w, http.StatusOK, a.capability(base(r)))
}

// capability is the CapabilityStatement: exactly the types, interactions
// and search parameters of kinds().
func (a Area) capability(b string) fm.CapabilityStatement {
	var res []fm.CapabilityStatementRestResource
	for _, k := range a.kinds() {
		rt, err := resourceType(k.name)
		if err != nil {
			continue
		}
		rr := fm.CapabilityStatementRestResource{Type: rt, Documentation: ptr(k.doc)}
		if !k.noRead {
			rr.Interaction = append(rr.Interaction, fm.CapabilityStatementRestResourceInteraction{Code: fm.TypeRestfulInteractionRead})
		}
		if k.search {
			rr.Interaction = append(rr.Interaction, fm.CapabilityStatementRestResourceInteraction{Code: fm.TypeRestfulInteractionSearchType})
			for _, p := range append([]param{{name: "_id", typ: pToken, definition: "http://hl7.org/fhir/SearchParameter/Resource-id"}}, k.params...) {
				sp := fm.CapabilityStatementRestResourceSearchParam{Name: p.name, Type: searchParamType(p.typ)}
				if p.definition != "" {
					sp.Definition = ptr(p.definition)
				}
				if p.doc != "" {
					sp.Documentation = ptr(p.doc)
				}
				rr.SearchParam = append(rr.SearchParam, sp)
			}
		}
		res = append(res, rr)
	}
	return fm.CapabilityStatement{
		Status: fm.PublicationStatusActive, Date: time.Now().UTC().Format(time.RFC3339), Kind: fm.CapabilityStatementKindInstance,
		Software:       &fm.CapabilityStatementSoftware{Name: "medmesh"},
		Implementation: &fm.CapabilityStatementImplementation{Description: "medmesh node " + a.Self.String() + ": read-only FHIR R4 facade over what this node knows", Url: ptr(b)},
		// R4. 4.0.0, not the technical correction 4.0.1: the official R4
		// JSON schema that validates what this facade serves
		// (scripts/fhir-validate) knows 4.0.0 only; the resource
		// structures served are the same in both.
		FhirVersion: fm.FHIRVersion4_0_0, Format: []string{"application/fhir+json"},
		Rest: []fm.CapabilityStatementRest{{Mode: fm.RestfulCapabilityModeServer, Resource: res,
			Documentation: ptr("Bearer token of the node's API (the repo's api.token). Searches page with _count (at most 500) and _offset; an unknown parameter is an error unless Prefer: handling=lenient."),
			Security:      &fm.CapabilityStatementRestSecurity{Description: ptr("Authorization: Bearer <api.token>; loopback only")}}},
	}
}

func resourceType(name string) (fm.ResourceType, error) {
	var rt fm.ResourceType
	err := json.Unmarshal([]byte(strconv.Quote(name)), &rt)
	return rt, err
}

func searchParamType(t string) fm.SearchParamType {
	switch t {
	case pDate:
		return fm.SearchParamTypeDate
	case pReference:
		return fm.SearchParamTypeReference
	}
	return fm.SearchParamTypeToken
}

func ptr[T any](v T) *T { return &v }

// export answers GET /api/v1/fhir/export?patient=ID: what this node may
// show about one of its patients as a collection Bundle.
func (a Area) export(w http.ResponseWriter, r *http.Request) {
	// A medmesh API route: its errors are the API's, for the CLI.
	local := r.URL.Query().Get("patient")
	if local == "" {
		api.Fail(w, fault.Invalidf("", "patient is required"))
		return
	}
	b, err := a.Export(r.Context(), base(r), local)
	if err != nil {
		api.Fail(w, err)
		return
	}
	write(w, http.StatusOK, b)
}

// Export gathers what this node may show about a local patient (the
// patient, its implanted devices and their procedures, its imaging studies
// and consents) as a collection Bundle. A patient this node does not know
// is NotFound.
func (a Area) Export(ctx context.Context, b, local string) (*fm.Bundle, error) {
	pid := patientID(local)
	q := &query{conds: []cond{{p: param{name: "patient", typ: pReference, target: "Patient"}, values: []string{pid}}}, count: maxCount}
	pq := &query{conds: []cond{{p: param{name: "_id", typ: pToken}, values: []string{pid}}}}
	bundle := &fm.Bundle{Type: fm.BundleTypeCollection, Timestamp: ptr(time.Now().UTC().Format(time.RFC3339))}
	add := func(typ string, list func(context.Context, *http.Request, *query) ([]*item, error), q *query) error {
		items, err := list(ctx, nil, q)
		if err != nil {
			return err
		}
		for _, it := range items {
			if q.match(it) {
				raw, err := resourceJSON(it.res)
				if err != nil {
					return err
				}
				bundle.Entry = append(bundle.Entry, fm.BundleEntry{FullUrl: ptr(b + "/" + typ + "/" + it.id), Resource: raw})
			}
		}
		return nil
	}
	if err := add("Patient", a.patients, pq); err != nil {
		return nil, err
	}
	if len(bundle.Entry) == 0 {
		return nil, fault.NotFoundf("this node knows the patients of its DICOM studies and its implantations", "patient %q is not known on this node", local)
	}
	for _, k := range []struct {
		typ  string
		list func(context.Context, *http.Request, *query) ([]*item, error)
	}{{"Device", a.devices}, {"Procedure", a.procedures}, {"ImagingStudy", a.studies}, {"Consent", a.consents}} {
		if err := add(k.typ, k.list, q); err != nil {
			return nil, err
		}
	}
	if len(bundle.Entry) > 1 {
		// The studies' Endpoint, so the bundle is whole.
		if err := add("Endpoint", a.endpoints, &query{}); err != nil {
			return nil, err
		}
	}
	return bundle, nil
}

// ---- identifiers ----

// Identifier systems of what medmesh names.
const (
	sysPatient = "urn:medmesh:local-patient-id"
	sysDevice  = "urn:medmesh:device"
	sysRecord  = "urn:medmesh:record"
	sysEntry   = "urn:medmesh:ledger-entry"
	sysPeer    = "urn:medmesh:peer"
	sysDICOM   = "http://dicom.nema.org/resources/ontology/DCM"
)

// patientID is the FHIR id of a local patient ID: the ID itself when it is
// a valid FHIR id ([A-Za-z0-9-.]{1,64}), else a hash of it.
func patientID(local string) string {
	ok := len(local) > 0 && len(local) <= 64
	for i := 0; ok && i < len(local); i++ {
		c := local[i]
		ok = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.'
	}
	if ok {
		return local
	}
	return "h-" + hashHex(local)[:40]
}

func peerRef(p string, display string) *fm.Reference {
	return &fm.Reference{Identifier: &fm.Identifier{System: ptr(sysPeer), Value: ptr(p)}, Display: ptr(display)}
}

func ident(system, value string) fm.Identifier {
	return fm.Identifier{System: ptr(system), Value: ptr(value)}
}

func coding(system, code, display string) fm.Coding {
	c := fm.Coding{System: ptr(system), Code: ptr(code)}
	if display != "" {
		c.Display = ptr(display)
	}
	return c
}

// fhirDate renders a DICOM DA (YYYYMMDD) as a FHIR date.
func fhirDate(da string) (string, bool) {
	t, err := time.Parse("20060102", da)
	if err != nil {
		return "", false
	}
	return t.Format("2006-01-02"), true
}

func instant(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func cidOf(id string) (cid.Cid, error) {
	c, err := cid.Decode(id)
	if err != nil {
		return cid.Undef, fault.NotFoundf("", "no resource %q here", id)
	}
	return c, nil
}

func sortItems(items []*item) []*item {
	sort.SliceStable(items, func(i, j int) bool { return items[i].id < items[j].id })
	return items
}

// errorf is fmt.Errorf, for storage and internal failures.
var errorf = fmt.Errorf

// encodeB64 is base64 (FHIR base64Binary).
func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

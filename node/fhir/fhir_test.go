package fhir

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/fhir/fhirtest"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/implants"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

const (
	devA    = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	devB    = "bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su"
	useA    = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
	study   = "bafkreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"
	recOwn  = "bafkreiaxnnnb7qz2focittuqq3ya25q7rcv3bqynnczfzao35ec6ezaoly"
	recPeer = "bafkreib2odzhm7vz3mb6fzyydoxvpgzdtnvvshaiuiyt3d5ixgtwadpo5u"
	selfID  = "12D3KooWEHBSs2cAojaGGdjwReUFbrz2BmDkCG3bnMeVBn8td4M9"
)

type fakeImplants struct{}

func (fakeImplants) Devices(context.Context) ([]api.ImplantDevice, error) {
	exp := "2030-12-31"
	return []api.ImplantDevice{
		{Device: devA, UDI: "(01)09506000134352(17)301231(10)LOT42(21)SN1", Issuer: "gs1", DI: "09506000134352", Lot: "LOT42", Serial: "SN1", Expiry: &exp,
			Custodian: selfID, Registrant: selfID, Status: "implanted", Implanted: api.Nullable(time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)),
			Patient: "P-4711", Procedure: "L4-L5 fusion", Recalled: true, Recalls: []string{useA}},
		{Device: devB, UDI: "+A123BJC5D6E71G", Issuer: "hibcc", DI: "A123BJC5D6E71", Custodian: selfID, Registrant: selfID, Status: "available", Recalls: []string{}},
	}, nil
}

func (f fakeImplants) Implantations(ctx context.Context, patient string) ([]implants.Local, error) {
	ds, _ := f.Devices(ctx)
	if patient != "" && patient != "P-4711" {
		return nil, nil
	}
	d := ds[0]
	d.Explanted = api.Nullable(time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC))
	return []implants.Local{{Device: d, UseEntry: useA, ExplantEntry: devB, Patient: "P-4711", Procedure: "L4-L5 fusion", Time: ds[0].Implanted.Time}}, nil
}

type fakeImaging struct{}

func (fakeImaging) Find(_ context.Context, f dicom.Filter) ([]dicom.Hit, error) {
	h := dicom.Hit{RecordID: study, StudyUID: "1.2.826.0.1.3680043.8.498.1", PatientID: "P-4711", PatientName: "Doe^Jane", Modalities: []string{"MR"}, StudyDate: "20240102", Description: "LSPINE", Instances: 2}
	if f.PatientID != "" && f.PatientID != h.PatientID {
		return nil, nil
	}
	return []dicom.Hit{h}, nil
}

func (fakeImaging) Open(context.Context, cid.Cid, int, string) (*imaging.Opened, error) {
	return &imaging.Opened{Study: &dicom.Study{UID: "1.2.826.0.1.3680043.8.498.1", Series: []*dicom.Series{{UID: "1.2.826.0.1.3680043.8.498.2", Modality: "MR", Number: 1,
		Instances: []*dicom.InstanceRef{{SOPInstanceUID: "1.2.826.0.1.3680043.8.498.3", SOPClassUID: "1.2.840.10008.5.1.4.1.1.4", Number: 1}, {SOPInstanceUID: "1.2.826.0.1.3680043.8.498.4", SOPClassUID: "1.2.840.10008.5.1.4.1.1.4", Number: 2}}}}}}, nil
}

type fakeRecords struct{ reads int }

func (fakeRecords) List(context.Context) ([]api.Record, error) {
	t := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	return []api.Record{
		{ID: recOwn, Size: 5, Owner: selfID, Class: "report", Version: 1, Created: t, Mine: true, Readable: true},
		{ID: recPeer, Size: 7, Owner: "12D3KooWFgUEogLVmrC1jAEihRw5c8WkFq1bL8T4aQSgd9PoFpEz", Class: "lab", Version: 1, Created: t, Readable: true},
		{ID: study, Size: 100, Owner: selfID, Class: "imaging", Version: 1, Created: t, Mine: true, Readable: true},
	}, nil
}

func (fakeRecords) Open(context.Context, cid.Cid, int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	return ledger.RecordInfo{}, &record.Manifest{Name: "report.txt", MediaType: "text/plain", Files: []record.File{{Size: 5}}}, record.Key{}, nil, nil
}

func (f *fakeRecords) Get(_ context.Context, id cid.Cid, req records.GetRequest, w io.Writer) error {
	if id.String() != recOwn {
		return fault.NotFoundf("", "unknown record %s", id)
	}
	f.reads++
	if req.Opened != nil {
		req.Opened(5)
	}
	_, err := w.Write([]byte("hello"))
	return err
}

func (fakeRecords) Audit(id cid.Cid) ([]api.AccessEvent, error) {
	t := time.Date(2026, 5, 2, 8, 0, 0, 0, time.UTC)
	return []api.AccessEvent{{ID: id.String(), Version: 1, Reader: "12D3KooWFgUEogLVmrC1jAEihRw5c8WkFq1bL8T4aQSgd9PoFpEz", Purpose: "treatment", Time: t, Until: t.Add(time.Minute), Count: 2,
		AttestedBy: []string{selfID}, Emergency: true, Review: true, Notes: []string{"emergency grant"}}}, nil
}

type fakeResearch struct{}

func (fakeResearch) Consents(_ context.Context, patient, _ string) ([]api.ConsentInfo, error) {
	if patient != "" && patient != "P-4711" {
		return []api.ConsentInfo{}, nil
	}
	return []api.ConsentInfo{{Entry: useA, Author: selfID, Patient: "ab12", Purpose: "research", Modality: "MR", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Expires: api.Nullable(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))}}, nil
}

// TestFacade drives every resource type's read and search, the metadata,
// paging, errors and the export through HTTP, and validates every
// resource it got against the official R4 JSON schema.
func TestFacade(t *testing.T) {
	self, _ := peer.Decode(selfID)
	recs := &fakeRecords{}
	mux := serveMux{http.NewServeMux()}
	Area{Self: self, Implants: fakeImplants{}, Imaging: fakeImaging{}, Records: recs, Research: fakeResearch{}}.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var produced [][]byte
	get := func(path string, code int, hdr ...string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != code {
			t.Fatalf("GET %s: %d, want %d\n%s", path, resp.StatusCode, code, b)
		}
		if strings.HasPrefix(path, "/api/") && code != http.StatusOK {
			return nil // a medmesh API error, for the CLI: {"error", "hint"}
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
			t.Fatalf("GET %s: Content-Type %q", path, ct)
		}
		produced = append(produced, b)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	total := func(b map[string]any) int { return int(b["total"].(float64)) }
	entry := func(b map[string]any, i int) map[string]any {
		return b["entry"].([]any)[i].(map[string]any)["resource"].(map[string]any)
	}

	md := get("/fhir/metadata", 200)
	var types []string
	for _, r := range md["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		types = append(types, r.(map[string]any)["type"].(string))
	}
	if strings.Join(types, ",") != "Patient,Device,Procedure,ImagingStudy,DocumentReference,Binary,Consent,AuditEvent,Endpoint" {
		t.Fatalf("metadata lists %v", types)
	}

	// Device: udi-di, lot-number, patient, identifier, paging.
	if b := get("/fhir/Device?udi-di=09506000134352", 200); total(b) != 1 || entry(b, 0)["lotNumber"] != "LOT42" || entry(b, 0)["patient"] == nil {
		t.Fatalf("Device?udi-di: %v", b)
	}
	if b := get("/fhir/Device?lot-number=NOPE", 200); total(b) != 0 {
		t.Fatal("lot-number NOPE matched")
	}
	if b := get("/fhir/Device?patient=Patient/P-4711&lot-number=LOT42", 200); total(b) != 1 {
		t.Fatal("Device?patient&lot-number")
	}
	page := get("/fhir/Device?_count=1", 200)
	if total(page) != 2 || len(page["entry"].([]any)) != 1 || !strings.Contains(mustJSON(page["link"]), `"next"`) {
		t.Fatalf("paging: %v", page)
	}
	get("/fhir/Device/"+devB, 200)
	get("/fhir/Device/"+recOwn, 404)

	// ImagingStudy: patient, modality (any case), date prefixes, identifier.
	is := get("/fhir/ImagingStudy?patient=P-4711", 200)
	if total(is) != 1 || entry(is, 0)["series"] == nil || entry(is, 0)["numberOfInstances"].(float64) != 2 {
		t.Fatalf("ImagingStudy?patient: %v", is)
	}
	for q, want := range map[string]int{
		"modality=mr": 1, "modality=CT": 0, "date=ge2024-01-01": 1, "date=lt2024": 0, "date=2024-01": 1, "started=2024-01-02": 1,
		"identifier=urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.8.498.1": 1, "subject=Patient/P-9": 0,
	} {
		if b := get("/fhir/ImagingStudy?"+q, 200); total(b) != want {
			t.Errorf("ImagingStudy?%s: %d, want %d", q, total(b), want)
		}
	}
	get("/fhir/Endpoint/dicomweb", 200)

	// Procedure and Patient: only what this node knows.
	if b := get("/fhir/Procedure?patient=P-4711&date=2026-06-01", 200); total(b) != 1 {
		t.Fatalf("Procedure: %v", b)
	}
	if b := get("/fhir/Procedure?patient=P-4711", 200); total(b) != 2 || !strings.Contains(mustJSON(b), `"explanted"`) {
		t.Fatalf("Procedure: the implantation and the removal: %v", b)
	}
	if p := get("/fhir/Patient/P-4711", 200); p["name"] == nil {
		t.Fatalf("Patient: %v", p)
	}
	get("/fhir/Patient/P-0000", 404)

	// DocumentReference (not studies), Binary (a read), Consent, AuditEvent.
	docs := get("/fhir/DocumentReference", 200)
	if total(docs) != 2 {
		t.Fatalf("DocumentReference: %v", docs)
	}
	get("/fhir/DocumentReference?category=report", 200)
	resp, err := http.Get(srv.URL + "/fhir/Binary/" + recOwn)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(raw) != "hello" || recs.reads != 1 {
		t.Fatalf("Binary raw: %q, %d reads", raw, recs.reads)
	}
	if b := get("/fhir/Binary/"+recOwn, 200, "Accept", "application/fhir+json"); b["data"] != "aGVsbG8=" {
		t.Fatalf("Binary as a resource: %v", b)
	}
	get("/fhir/Binary/"+recPeer, 404, "Accept", "application/fhir+json")
	if b := get("/fhir/Consent?patient=P-4711", 200); total(b) != 1 || entry(b, 0)["patient"] == nil {
		t.Fatalf("Consent: %v", b)
	}
	if b := get("/fhir/AuditEvent?entity=DocumentReference/"+recOwn, 200); total(b) != 1 {
		t.Fatalf("AuditEvent: %v", b)
	}

	// Errors are OperationOutcomes with the right status.
	get("/fhir/AuditEvent", 400)
	get("/fhir/Device?colour=blue", 400)
	get("/fhir/Device?colour=blue", 200, "Prefer", "handling=lenient")
	get("/fhir/ImagingStudy?date=yesterday", 400)
	get("/fhir/Observation", 404)
	get("/fhir/metadata", 406, "Accept", "application/fhir+xml")

	// The export: a collection Bundle for one patient.
	ex := get("/api/v1/fhir/export?patient=P-4711", 200)
	if ex["type"] != "collection" || len(ex["entry"].([]any)) < 5 {
		t.Fatalf("export: %v", ex)
	}
	get("/api/v1/fhir/export?patient=P-0000", 404)

	res := fhirtest.Validate(t, produced...)
	t.Logf("%d resources validated against the R4 JSON schema", len(res))
}

// serveMux adapts net/http's mux to httpapi.Mux.
type serveMux struct{ *http.ServeMux }

func (m serveMux) HandleFunc(p string, h http.HandlerFunc) { m.ServeMux.HandleFunc(p, h) }

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestDateParam(t *testing.T) {
	day := dayRange("20240102")
	for v, want := range map[string]bool{
		"2024": true, "2024-01": true, "2024-01-02": true, "2024-01-03": false, "ge2024-01-02": true, "gt2024-01-02": false,
		"le2024-01-02": true, "lt2024-01-02": false, "lt2024-01-03": true, "ne2024-01-03": true, "2024-01-02T10:00": false,
	} {
		p, r, err := parseDateParam(v)
		if err != nil {
			t.Fatal(v, err)
		}
		if got := matchDate(p, r, day); got != want {
			t.Errorf("%s matches 2024-01-02: %v, want %v", v, got, want)
		}
	}
	for _, bad := range []string{"2024-13", "24-01-01", "xx2024", "2024-01-02T25:00"} {
		if _, _, err := parseDateParam(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if v := refValue("Patient", "http://h/fhir/Patient/1"); v != "Patient/1" {
		t.Error(v)
	}
	if patientID("P-4711") != "P-4711" || !strings.HasPrefix(patientID("Doe, John"), "h-") {
		t.Error("patientID")
	}
	_ = url.Values{}
}

// FuzzSearchQuery: search parameters as clients send them never panic the
// parsing or the matching, for any resource type's parameters.
func FuzzSearchQuery(f *testing.F) {
	for _, s := range []string{
		"udi-di=09506000134352&lot-number=LOT42", "patient=Patient/P-4711&_count=1&_offset=1", "date=ge2024-01-01&date=lt2025",
		"identifier=urn:dicom:uid|urn:oid:1.2.3", "modality=mr,ct", "entity=DocumentReference/" + recOwn, "date=2024-01-02T10:00:00+02:00", "_format=json",
	} {
		f.Add(s)
	}
	it := newItem("x", nil)
	it.token("udi-di", "", "09506000134352")
	it.ref("patient", "Patient", "P-4711")
	it.date("date", dayRange("20240102"))
	a := Area{}
	f.Fuzz(func(t *testing.T, raw string) {
		vals, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for _, k := range a.kinds() {
			for _, lenient := range []bool{false, true} {
				if q, err := parseQuery(vals, k.params, lenient); err == nil {
					q.match(it)
					searchset("http://h/fhir", k.name, q, []*item{it, it})
				}
			}
		}
	})
}

func TestResourceJSON(t *testing.T) {
	b, err := resourceJSON(searchset("http://h/fhir", "Device", &query{count: 1, raw: url.Values{"a": {"1"}}}, []*item{newItem("x", map[string]any{"resourceType": "Device", "id": "x"})}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"resourceType":"Bundle",`) || strings.Contains(string(b), `\u0026`) || !strings.Contains(string(b), "?_count=1&_offset=0&a=1") {
		t.Fatalf("%s", b)
	}
}

func TestUnescapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		`"a\u0026b"`: `"a&b"`, `"\\u0026"`: `"\\u0026"`, `"\\\u003c"`: `"\\<"`, `"x\u003e"`: `"x>"`, `"\u00e9"`: `"\u00e9"`, `"\"q\""`: `"\"q\""`,
	} {
		if got := string(unescapeHTML([]byte(in))); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

package dimse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// orthanc is an Orthanc (Debian package) started for one test with a
// temporary configuration: storage in a temp dir, HTTP and DICOM on free
// ports, no plugins, and our AE as its only modality. In the private
// network namespace (see netns_linux_test.go) loopback is all there is;
// on the host network, RemoteAccessAllowed=false refuses non-loopback
// HTTP clients and the DICOM server admits only the configured modality
// from 127.0.0.1.
type orthanc struct {
	t         *testing.T
	http      string // base URL
	dicomPort string
	aet       string
}

func startOrthanc(t *testing.T, modalityAE, modalityAddr string) *orthanc {
	t.Helper()
	bin, err := exec.LookPath("Orthanc")
	if err != nil {
		t.Skip("Orthanc not installed (apt-get install orthanc): skipping the Orthanc interop test")
	}
	// Orthanc commits its SQLite index per instance: on tmpfs when there is
	// one, so that the test measures DICOM, not fsync.
	dir := t.TempDir()
	if d, err := os.MkdirTemp("/dev/shm", "medmesh-orthanc-"); err == nil {
		dir = d
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	httpPort, dicomPort := freePort(t), freePort(t)
	host, port := hostPort(t, modalityAddr)
	cfg := map[string]any{
		"Name":                    "medmesh-test",
		"StorageDirectory":        filepath.Join(dir, "db"),
		"IndexDirectory":          filepath.Join(dir, "db"),
		"StorageCompression":      false,
		"Plugins":                 []string{},
		"HttpServerEnabled":       true,
		"HttpPort":                atoi(httpPort),
		"RemoteAccessAllowed":     false,
		"AuthenticationEnabled":   false,
		"DicomServerEnabled":      true,
		"DicomAet":                "ORTHANC",
		"DicomPort":               atoi(dicomPort),
		"DicomCheckCalledAet":     true,
		"DicomAlwaysAllowEcho":    false,
		"DicomAlwaysAllowStore":   false,
		"DicomCheckModalityHost":  true,
		"DicomScuTimeout":         10,
		"SaveJobs":                false,
		"UnknownSopClassAccepted": true,
		"DicomModalities": map[string]any{
			"medmesh": map[string]any{"AET": modalityAE, "Host": host, "Port": atoi(port),
				"AllowEcho": true, "AllowFind": true, "AllowMove": true, "AllowGet": true, "AllowStore": true},
		},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, cfgPath)
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	// killed at the end: its storage is thrown away, a clean stop buys nothing
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("Orthanc log (tail):\n%s", tail(logBuf.String(), 4000))
		}
	})
	o := &orthanc{t: t, http: "http://127.0.0.1:" + httpPort, dicomPort: dicomPort, aet: "ORTHANC"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := o.get("/system"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Orthanc did not start:\n%s", tail(logBuf.String(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !privateNetwork() {
		t.Logf("Orthanc runs on the host network (no private namespace here): HTTP refuses remote clients, DICOM admits only %s@%s", modalityAE, host)
	}
	return o
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (o *orthanc) get(path string) ([]byte, error) {
	resp, err := http.Get(o.http + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, err
}

func (o *orthanc) post(path string, body any, out any) {
	o.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(o.http+path, "application/json", bytes.NewReader(b))
	if err != nil {
		o.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		o.t.Fatalf("POST %s %s: %s: %s", path, b, resp.Status, rb)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			o.t.Fatalf("POST %s: %v: %s", path, err, rb)
		}
	}
}

// instances returns Orthanc's instances: SOP Instance UID -> Orthanc ID.
func (o *orthanc) instances() map[string]string {
	o.t.Helper()
	b, err := o.get("/instances?expand")
	if err != nil {
		o.t.Fatal(err)
	}
	var list []struct {
		ID            string
		MainDicomTags map[string]string
	}
	if err := json.Unmarshal(b, &list); err != nil {
		o.t.Fatal(err)
	}
	out := map[string]string{}
	for _, in := range list {
		out[in.MainDicomTags["SOPInstanceUID"]] = in.ID
	}
	return out
}

// file returns the Part 10 file Orthanc holds for an instance, split.
func (o *orthanc) file(id string) part10File {
	o.t.Helper()
	b, err := o.get("/instances/" + id + "/file")
	if err != nil {
		o.t.Fatal(err)
	}
	m, ds, err := OpenPart10(bytes.NewReader(b))
	if err != nil {
		o.t.Fatal(err)
	}
	data, _ := io.ReadAll(ds)
	return part10File{Meta: m, Data: data}
}

// TestOrthanc exercises both directions with Orthanc: our SCU stores into
// Orthanc; Orthanc (driven by its REST API) echoes, stores to, queries and
// moves from our SCP; our SCU queries, moves and gets from Orthanc.
// Every instance that crosses is compared byte for byte.
func TestOrthanc(t *testing.T) {
	needTool(t, "dcmdump") // compares what Orthanc re-encoded
	files := validFiles(t)
	arch := newArchive(t, archiveFiles(t))
	store := newMemStore()
	srv, addr := startServer(t, ServerOptions{AETitle: "MEDMESH", Store: store, Find: arch, Move: arch, Get: arch})
	o := startOrthanc(t, "MEDMESH", addr)
	srv.o.Allowed = mustCallers(t, "ORTHANC@127.0.0.1", "MEDMESH@127.0.0.1")
	srv.dests["ORTHANC"] = "127.0.0.1:" + o.dicomPort
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Orthanc → us: C-ECHO.
	o.post("/modalities/medmesh/echo", map[string]any{}, nil)

	// Us → Orthanc: C-STORE of every valid file with a transfer syntax or
	// SOP class of its own (the DICOMDIR set adds only more of the same;
	// one file per SOP Instance UID: Orthanc keeps the first of duplicates).
	var batch []testFile
	seen := map[string]bool{}
	for _, f := range files {
		if !strings.Contains(filepath.ToSlash(f.Path), "/dicomdir/") && !seen[f.SOPInstanceUID] {
			seen[f.SOPInstanceUID] = true
			batch = append(batch, f)
		}
	}
	sendFilesAs(t, "MEDMESH", "127.0.0.1:"+o.dicomPort, "ORTHANC", batch)
	ids := o.instances()
	sameAsFile := 0
	for _, tf := range batch {
		id, ok := ids[tf.SOPInstanceUID]
		if !ok {
			t.Errorf("%s: not in Orthanc", tf.Path)
			continue
		}
		f, got := readPart10(t, tf.Path), o.file(id)
		if got.Meta.TransferSyntaxUID != f.Meta.TransferSyntaxUID {
			t.Errorf("%s: Orthanc holds it in %s, sent in %s", tf.Path, got.Meta.TransferSyntaxUID, f.Meta.TransferSyntaxUID)
		}
		if bytes.Equal(got.Data, f.Data) || bytes.Equal(got.Data, append(f.Data, 0)) {
			sameAsFile++
		}
		if diff := dataSetDiff(t, got.Meta, got.Data, f.Meta, f.Data); diff != "" {
			t.Errorf("%s: Orthanc holds another data set than the file:\n%s", tf.Path, diff)
		}
	}
	t.Logf("C-STORE to Orthanc: %d instances, all held with the file's elements and values; %d byte-identical (Orthanc re-encodes through dcmtk)", len(batch), sameAsFile)

	// Orthanc → us: C-STORE of what Orthanc holds (Orthanc's C-STORE SCU,
	// which re-encodes through dcmtk as storescu does: what we store is
	// compared element by element, and in the same transfer syntax).
	var all []string
	for _, id := range ids {
		all = append(all, id)
	}
	sort.Strings(all)
	var job map[string]any
	o.post("/modalities/medmesh/store", map[string]any{"Resources": all, "Synchronous": true}, &job)
	for uid, id := range ids {
		got, req, ok := store.get(uid)
		if !ok {
			t.Errorf("Orthanc's C-STORE of %s did not reach us", uid)
			continue
		}
		want := o.file(id)
		m := req.FileMeta()
		if m.TransferSyntaxUID != want.Meta.TransferSyntaxUID {
			t.Errorf("%s: Orthanc sent it in %s, holds it in %s", uid, m.TransferSyntaxUID, want.Meta.TransferSyntaxUID)
		}
		if diff := dataSetDiff(t, &m, got, want.Meta, want.Data); diff != "" {
			t.Errorf("%s: we stored another data set than Orthanc holds:\n%s", uid, diff)
		}
	}

	// Orthanc → us: C-FIND at study level.
	patient := arch.insts[0].attrs[tag.PatientID]
	var q struct{ ID string }
	o.post("/modalities/medmesh/query", map[string]any{"Level": "Study", "Query": map[string]string{"PatientID": patient, "StudyInstanceUID": ""}}, &q)
	b, err := o.get("/queries/" + q.ID + "/answers?expand&simplify")
	if err != nil {
		t.Fatal(err)
	}
	var answers []map[string]any
	json.Unmarshal(b, &answers)
	var studies []string
	for _, a := range answers {
		studies = append(studies, fmt.Sprint(a["StudyInstanceUID"]))
	}
	sort.Strings(studies)
	if want := distinctOf(arch.selectInsts(tag.PatientID, patient), tag.StudyInstanceUID); strings.Join(studies, ",") != strings.Join(want, ",") {
		t.Errorf("Orthanc's C-FIND: %v, want %v", studies, want)
	}

	// Orthanc → us: C-MOVE of a study to Orthanc itself.
	study := arch.insts[len(arch.insts)-1].attrs[tag.StudyInstanceUID]
	o.post("/modalities/medmesh/move", map[string]any{"Level": "Study", "Resources": []map[string]string{{"StudyInstanceUID": study}},
		"TargetAet": "ORTHANC", "Synchronous": true}, nil)
	ids = o.instances()
	for _, in := range arch.selectInsts(tag.StudyInstanceUID, study) {
		id, ok := ids[in.attrs[tag.SOPInstanceUID]]
		if !ok {
			t.Errorf("C-MOVE to Orthanc: %s did not arrive", in.path)
			continue
		}
		if got := o.file(id); dataSetDiff(t, got.Meta, got.Data, in.meta, in.data) != "" {
			t.Errorf("C-MOVE to Orthanc: %s: Orthanc holds another data set", in.path)
		}
	}

	// Us → Orthanc: C-ECHO, C-FIND, C-MOVE (to us), C-GET.
	var props []Proposal
	for _, m := range []string{StudyRootFind, StudyRootMove, StudyRootGet} {
		props = append(props, Proposal{AbstractSyntax: m, TransferSyntaxes: []string{ExplicitVRLittleEndian}})
	}
	props = append(props, Proposal{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}})
	classes := map[[2]string]bool{}
	for _, in := range arch.insts {
		classes[[2]string{in.meta.MediaStorageSOPClassUID, in.meta.TransferSyntaxUID}] = true
	}
	for k := range classes {
		props = append(props, Proposal{AbstractSyntax: k[0], TransferSyntaxes: []string{k[1]}, SCP: true})
	}
	got := newMemStore()
	a, err := Dial(ctx, "127.0.0.1:"+o.dicomPort, ClientOptions{CallingAE: "MEDMESH", CalledAE: "ORTHANC", Proposals: props, Store: got, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(ctx)
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("C-ECHO to Orthanc: %v", err)
	}
	studies = nil
	for ds, err := range a.Find(ctx, StudyRootFind, ident(t, "STUDY", tag.StudyInstanceUID, "")) {
		if err != nil {
			t.Fatal(err)
		}
		studies = append(studies, stringValue(ds, tag.StudyInstanceUID))
	}
	if !contains(studies, study) {
		t.Errorf("C-FIND in Orthanc: %v lacks the study moved there (%s)", studies, study)
	}
	want := arch.selectInsts(tag.StudyInstanceUID, study)
	store.reset()
	res, err := a.Move(ctx, StudyRootMove, "MEDMESH", ident(t, "STUDY", tag.StudyInstanceUID, study), nil)
	if err != nil || res.Completed != len(want) {
		t.Fatalf("C-MOVE from Orthanc to us: %+v %v, want %d completed", res, err, len(want))
	}
	res, err = a.Get(ctx, StudyRootGet, ident(t, "STUDY", tag.StudyInstanceUID, study), nil)
	if err != nil || res.Completed != len(want) {
		t.Fatalf("C-GET from Orthanc: %+v %v, want %d completed", res, err, len(want))
	}
	for _, in := range want {
		uid := in.attrs[tag.SOPInstanceUID]
		for name, m := range map[string]*memStore{"C-MOVE": store, "C-GET": got} {
			b, req, ok := m.get(uid)
			if !ok {
				t.Errorf("%s from Orthanc: %s not received", name, in.path)
				continue
			}
			fm := req.FileMeta()
			if dataSetDiff(t, &fm, b, in.meta, in.data) != "" {
				t.Errorf("%s from Orthanc: %s: another data set than we moved there", name, in.path)
			}
		}
	}
}

// dataSetDiff returns "" if the two data sets are the same (byte for byte,
// or element for element: see semanticDump), else where they differ.
func dataSetDiff(t testing.TB, m1 *FileMeta, d1 []byte, m2 *FileMeta, d2 []byte) string {
	t.Helper()
	if m1.TransferSyntaxUID == m2.TransferSyntaxUID && bytes.Equal(d1, d2) {
		return ""
	}
	return firstDiff(semanticDump(t, m1, d1), semanticDump(t, m2, d2))
}

// semanticDump is dcmdump's listing of a data set with what an encoder may
// change removed: group lengths, trailing padding, sequence and item
// delimiters and length annotations. Two data sets with the same elements
// and values, however encoded, dump the same.
func semanticDump(t testing.TB, m *FileMeta, data []byte) string {
	t.Helper()
	needTool(t, "dcmdump")
	h, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "x.dcm")
	if err := os.WriteFile(f, append(h, data...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dcmdump", "-q", "+L", "-dc", f).Output()
	if err != nil {
		t.Fatalf("dcmdump: %v", err)
	}
	var keep []string
	inData := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "# Dicom-Data-Set") {
			inData = true
			continue
		}
		l := strings.TrimSpace(line)
		if !inData || l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "(fffc,fffc)") || strings.HasPrefix(l, "(fffe,e00d)") || strings.HasPrefix(l, "(fffe,e0dd)") || groupLength.MatchString(l) {
			continue
		}
		if i := strings.LastIndex(l, "#"); i > 0 {
			l = strings.TrimSpace(l[:i])
		}
		l = lengthNote.ReplaceAllString(l, "")
		l = blankValue.ReplaceAllString(l, "(no value available)")
		l = paddedValue.ReplaceAllString(l, "[$1]")
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

var (
	groupLength = regexp.MustCompile(`^\([0-9a-f]{4},0000\)`)
	lengthNote  = regexp.MustCompile(` with (explicit|undefined) length #=\d+`)
	blankValue  = regexp.MustCompile(`\[ *\]`)
	paddedValue = regexp.MustCompile(`\[([^\]]*?) +\]`)
)

func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  %s\n  %s", i+1, x, y)
		}
	}
	return ""
}

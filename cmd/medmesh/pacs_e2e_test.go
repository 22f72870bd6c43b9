package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// The PACS checks, from a terminal: real `medmesh daemon`
// processes configured with `medmesh config set dicom.*`, driven by dcmtk's
// echoscu, storescu, findscu, getscu and movescu, and by Orthanc as SCU
// (its REST API asks it to C-ECHO, C-STORE, C-FIND and C-MOVE against the
// node) and as SCP (`medmesh dicom send`, and C-MOVE to it).

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dcmtk orthanc; .ci/run does): skipping", tool)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// dcmtkRun runs a dcmtk tool (Nagle off: Debian's dcmtk leaves it on).
func dcmtkRun(t *testing.T, dir, tool string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// part10Split returns a Part 10 file's SOP Instance UID and data set.
func part10Split(t *testing.T, path string) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ds, err := dimse.OpenPart10(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, _ := io.ReadAll(ds)
	return m.MediaStorageSOPInstanceUID, data
}

// dataSets reads every Part 10 file under dir: data set by SOP Instance UID.
func dataSets(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range findFiles(t, dir) {
		uid, ds := part10Split(t, p)
		out[uid] = ds
	}
	return out
}

// sameSets checks that got holds exactly want's instances, data sets byte
// for byte.
func sameSets(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	for uid, w := range want {
		g, ok := got[uid]
		switch {
		case !ok:
			t.Errorf("%s: %s missing", what, uid)
		case !bytes.Equal(g, w):
			t.Errorf("%s: %s: data set differs (%d bytes, want %d)", what, uid, len(g), len(w))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d instances, want %d", what, len(got), len(want))
	}
}

// cfind runs findscu and returns each match's values by tag ("0010,0010").
func cfind(t *testing.T, dir, ae, addr string, args ...string) []map[string]string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	x := filepath.Join(dir, fmt.Sprintf("find-%d.xml", time.Now().UnixNano()))
	out, err := dcmtkRun(t, dir, "findscu", append(append([]string{"-aet", "FINDSCU", "-aec", ae, "-Xs", x}, args...), host, port)...)
	if err != nil {
		t.Fatalf("findscu %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(x)
	if err != nil {
		t.Fatalf("findscu wrote no XML: %v\n%s", err, out)
	}
	var doc struct {
		Sets []struct {
			Elements []struct {
				Tag   string `xml:"tag,attr"`
				Value string `xml:",chardata"`
			} `xml:"element"`
		} `xml:"data-set"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("findscu XML: %v", err)
	}
	var rows []map[string]string
	for _, s := range doc.Sets {
		m := map[string]string{}
		for _, e := range s.Elements {
			m[strings.ToUpper(e.Tag)] = strings.TrimSpace(e.Value)
		}
		rows = append(rows, m)
	}
	return rows
}

func waitFor(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPACS is the DIMSE "done when", through the real binary.
func TestPACS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two daemons, dcmtk and Orthanc")
	}
	needTools(t, "echoscu", "storescu", "findscu", "getscu", "movescu", "dcmdump")
	dir := t.TempDir()
	rad := &cli{t: t, repo: filepath.Join(dir, "radiology")}
	hosp := &cli{t: t, repo: filepath.Join(dir, "hospital")}
	radPort, hospPort, movePort := freePort(t), freePort(t), freePort(t)
	radAddr, hospAddr := "127.0.0.1:"+radPort, "127.0.0.1:"+hospPort
	var orth *orthancProc
	if _, err := exec.LookPath("Orthanc"); err == nil {
		orth = startOrthancProc(t, dir, "MEDMESH", radAddr)
	} else {
		t.Log("Orthanc not installed: the Orthanc part is skipped")
	}
	orthDest := ""
	if orth != nil {
		orthDest = ",ORTHANC=127.0.0.1:" + orth.dicomPort
	}

	// Two clinics, configured as an operator would.
	local := []string{"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"}
	rad.must(append([]string{"init", "--org", "Radiology"}, local...)...)
	rad.must("network", "create", "--name", "e2e-pacs")
	for _, kv := range [][]string{
		{"dicom.listen", radAddr},
		{"dicom.allowed", "ECHOSCU@127.0.0.1,STORESCU@127.0.0.1,FINDSCU@127.0.0.1,GETSCU@127.0.0.1,MOVESCU@127.0.0.1,ORTHANC@127.0.0.1,MEDMESH@127.0.0.1"},
		{"dicom.destinations", "MOVESCU=127.0.0.1:" + movePort + orthDest},
		{"dicom.store_delay", "500ms"},
	} {
		rad.must(append([]string{"config", "set"}, kv...)...)
	}
	rd := rad.startDaemon()
	defer func() { rd.Process.Signal(syscall.SIGTERM); rd.Wait() }()
	hosp.must(append([]string{"init", "--org", "Hospital"}, local...)...)
	hid := decode[api.IDInfo](t, hosp.must("id", "--json")).Peer
	inv := decode[api.InviteResult](t, rad.must("network", "invite", "--peer", hid, "--json"))
	hosp.must("network", "join", inv.Token)
	hosp.must("config", "set", "dicom.listen", hospAddr)
	hosp.must("config", "set", "dicom.allowed", "FINDSCU@127.0.0.1,MOVESCU@127.0.0.1")
	hosp.must("config", "set", "dicom.destinations", "MOVESCU=127.0.0.1:"+movePort)
	hd := hosp.startDaemon()
	defer func() { hd.Process.Signal(syscall.SIGTERM); hd.Wait() }()

	host := "127.0.0.1"
	// C-ECHO: allowed, unknown AE, and node to node.
	if out, err := dcmtkRun(t, dir, "echoscu", "-aet", "ECHOSCU", "-aec", "MEDMESH", host, radPort); err != nil {
		t.Fatalf("echoscu from an allowed AE: %v\n%s", err, out)
	}
	if out, err := dcmtkRun(t, dir, "echoscu", "-aet", "STRANGER", "-aec", "MEDMESH", host, radPort); err == nil || !strings.Contains(out, "Association Rejected") {
		t.Fatalf("echoscu from an unknown AE was not rejected: %v\n%s", err, out)
	}
	echo := decode[api.DicomEchoResult](t, hosp.must("dicom", "echo", "MEDMESH@"+radAddr, "--json"))
	if echo.To != "MEDMESH@"+radAddr || echo.CallingAE != "MEDMESH" {
		t.Errorf("dicom echo: %+v", echo)
	}

	// storescu of a series: every instance stored, one study.
	src := filepath.Join(dir, "series")
	var files []string
	var err error
	if td := dicomTestdata(t); td != "" {
		files, err = dicomtest.WriteSeriesFrom(filepath.Join(td, "valid", "ct_small_explicit_le.dcm"), src, 24, 77)
	} else {
		files, err = dicomtest.WriteStudy(src, dicomtest.Options{InstancesPerSeries: 24, Rows: 32, Cols: 32, Seed: 77})
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, err := dcmtkRun(t, dir, "storescu", append([]string{"-aet", "STORESCU", "-aec", "MEDMESH", host, radPort}, files...)...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	var hits []api.DicomStudyHit
	waitFor(t, "the stored series in dicom query", 60*time.Second, func() error {
		hits = decode[[]api.DicomStudyHit](t, rad.must("dicom", "query", "--json"))
		if len(hits) != 1 || hits[0].Instances != len(files) {
			return fmt.Errorf("dicom query: %+v, want one study of %d instances", hits, len(files))
		}
		return nil
	})
	study, studyUID := hits[0].ID, hits[0].StudyUID
	// What the node stores is what storescu sent: export it byte for byte.
	rad.must("dicom", "export", study, "-o", filepath.Join(dir, "stored"))
	stored := dataSets(t, filepath.Join(dir, "stored"))
	orig := dataSets(t, src)
	if len(stored) != len(orig) {
		t.Fatalf("stored %d instances, sent %d", len(stored), len(orig))
	}
	// storescu sends what dcmtk re-encodes (sequences get explicit
	// lengths): the stored instances hold the originals' elements and
	// values, as dcmdump reads them.
	exported := map[string]string{}
	for _, p := range findFiles(t, filepath.Join(dir, "stored")) {
		uid, _ := part10Split(t, p)
		exported[uid] = p
	}
	for _, f := range files {
		uid, _ := part10Split(t, f)
		if a, b := dumpContent(t, f), dumpContent(t, exported[uid]); a != b {
			al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
			for i := range min(len(al), len(bl)) {
				if al[i] != bl[i] {
					t.Errorf("%s: stored instance's content differs from the file sent, line %d:\n%s\n%s", uid, i, al[i], bl[i])
					break
				}
			}
			if len(al) != len(bl) {
				t.Errorf("%s: %d dcmdump lines, sent %d", uid, len(bl), len(al))
			}
		}
	}

	// findscu: a lower-case wildcard name at STUDY level; counts match.
	pn := strings.ToLower(strings.SplitN(firstPatientName(t, files[0]), "^", 2)[0]) + "*"
	rows := cfind(t, dir, "MEDMESH", radAddr, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName="+pn, "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances")
	if len(rows) != 1 || rows[0]["0020,000D"] != studyUID || rows[0]["0020,1208"] != fmt.Sprint(len(files)) {
		t.Fatalf("findscu PatientName=%s: %v", pn, rows)
	}
	if rows := cfind(t, dir, "MEDMESH", radAddr, "-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", "StudyInstanceUID="+studyUID, "-k", "SOPInstanceUID"); len(rows) != len(files) {
		t.Fatalf("findscu IMAGE level: %d matches, want %d", len(rows), len(files))
	}

	// getscu and movescu deliver every instance, data sets as stored.
	getDir, moveDir := filepath.Join(dir, "get"), filepath.Join(dir, "move")
	os.MkdirAll(getDir, 0o755)
	os.MkdirAll(moveDir, 0o755)
	if out, err := dcmtkRun(t, dir, "getscu", "-aet", "GETSCU", "-aec", "MEDMESH", "+B", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyUID, "-od", getDir, host, radPort); err != nil {
		t.Fatalf("getscu: %v\n%s", err, out)
	}
	sameSets(t, "getscu", dataSets(t, getDir), stored)
	if out, err := dcmtkRun(t, dir, "movescu", "-aet", "MOVESCU", "-aec", "MEDMESH", "-aem", "MOVESCU", "+P", movePort, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyUID, "-od", moveDir, host, radPort); err != nil {
		t.Fatalf("movescu: %v\n%s", err, out)
	}
	sameSets(t, "movescu", dataSets(t, moveDir), stored)

	// Granted to the hospital: its node finds the study and moves it,
	// fetching it from radiology.
	rad.must("grant", study, "--to", hid, "--purpose", "treatment")
	waitFor(t, "the granted study on the hospital's node", 60*time.Second, func() error {
		if rows := cfind(t, dir, "MEDMESH", hospAddr, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyUID); len(rows) != 1 {
			return fmt.Errorf("findscu on the hospital: %v", rows)
		}
		return nil
	})
	move2 := filepath.Join(dir, "move-granted")
	os.MkdirAll(move2, 0o755)
	if out, err := dcmtkRun(t, dir, "movescu", "-aet", "MOVESCU", "-aec", "MEDMESH", "-aem", "MOVESCU", "+P", movePort, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyUID, "-od", move2, host, hospPort); err != nil {
		t.Fatalf("movescu from the hospital: %v\n%s", err, out)
	}
	sameSets(t, "movescu of the granted study", dataSets(t, move2), stored)
	var audit []api.AccessEvent
	waitFor(t, "the hospital's read in radiology's audit", 30*time.Second, func() error {
		audit = decode[[]api.AccessEvent](t, rad.must("audit", study, "--json"))
		if len(audit) == 0 {
			return fmt.Errorf("no read audited")
		}
		return nil
	})

	if orth == nil {
		return
	}
	// Orthanc as SCU: C-ECHO, C-FIND and C-MOVE (to itself) against the node.
	orth.post(t, "/modalities/medmesh/echo", map[string]any{}, nil)
	var q struct{ ID string }
	orth.post(t, "/modalities/medmesh/query", map[string]any{"Level": "Study", "Query": map[string]string{"StudyInstanceUID": studyUID, "PatientName": pn}}, &q)
	var answers []map[string]any
	orth.getJSON(t, "/queries/"+q.ID+"/answers?expand&simplify", &answers)
	if len(answers) != 1 || answers[0]["StudyInstanceUID"] != studyUID {
		t.Fatalf("Orthanc's C-FIND: %v", answers)
	}
	orth.post(t, "/modalities/medmesh/move", map[string]any{"Level": "Study", "Resources": []map[string]string{{"StudyInstanceUID": studyUID}},
		"TargetAet": "ORTHANC", "Synchronous": true}, nil)
	got := orth.dataSets(t)
	sameSets(t, "C-MOVE into Orthanc", got, stored)

	// Orthanc as SCU of C-STORE: a second study uploaded to Orthanc, then
	// sent by Orthanc to the node.
	other, err := dicomtest.WriteStudy(filepath.Join(dir, "other"), dicomtest.Options{InstancesPerSeries: 3, Rows: 16, Cols: 16, Modality: "MR", Seed: 78})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range other {
		b, _ := os.ReadFile(f)
		var r struct{ ID string }
		orth.postRaw(t, "/instances", b, &r)
		ids = append(ids, r.ID)
	}
	orth.post(t, "/modalities/medmesh/store", map[string]any{"Resources": ids, "Synchronous": true}, nil)
	waitFor(t, "Orthanc's C-STORE in dicom query", 60*time.Second, func() error {
		if hits := decode[[]api.DicomStudyHit](t, rad.must("dicom", "query", "--modality", "MR", "--json")); len(hits) != 1 || hits[0].Instances != 3 {
			return fmt.Errorf("dicom query --modality MR: %+v", hits)
		}
		return nil
	})

	// Orthanc as SCP: medmesh dicom send pushes the MR study into it.
	mr := decode[[]api.DicomStudyHit](t, rad.must("dicom", "query", "--modality", "MR", "--json"))[0]
	orth.delete(t, "/studies/"+orth.studyID(t, mr.StudyUID))
	sent := decode[api.DicomSendResult](t, rad.must("dicom", "send", mr.ID, "--to", "ORTHANC@127.0.0.1:"+orth.dicomPort, "--json"))
	if sent.Sent != 3 || len(sent.Failed) != 0 {
		t.Fatalf("dicom send: %+v", sent)
	}
	rad.must("dicom", "export", mr.ID, "-o", filepath.Join(dir, "mr"))
	want := dataSets(t, filepath.Join(dir, "mr"))
	all := orth.dataSets(t)
	for uid, w := range want {
		if !bytes.Equal(all[uid], w) {
			t.Errorf("dicom send to Orthanc: %s differs or is missing", uid)
		}
	}
}

// dumpContent is dcmdump's reading of a file's data set, without the File
// Meta Information, trailing padding and how sequence and item lengths
// are encoded.
func dumpContent(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("dcmdump", "-q", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump %s: %v\n%s", path, err, out)
	}
	var b strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		// (FFFC,FFFC) Data Set Trailing Padding is dropped by dcmtk on
		// the network, as PS3.5 7.8 allows.
		if strings.HasPrefix(l, "(0002,") || strings.HasPrefix(l, "(fffc,fffc)") || strings.Contains(l, "DelimitationItem") || strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if i := strings.Index(l, "#"); i >= 0 && !strings.Contains(l[:i], "(Sequence") && !strings.Contains(l[:i], "(Item") {
			l = strings.TrimSpace(l[:i])
		}
		for _, w := range []string{"with explicit length ", "with undefined length "} {
			l = strings.ReplaceAll(l, w, "")
		}
		if i := strings.Index(l, ")"); strings.Contains(l, "(Sequence") || strings.Contains(l, "(Item") {
			if j := strings.LastIndex(l, "#"); j > i {
				l = strings.TrimSpace(l[:j])
			}
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

func firstPatientName(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("dcmdump", "+P", "PatientName", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump: %v %s", err, out)
	}
	s := string(out)
	i, j := strings.Index(s, "["), strings.Index(s, "]")
	if i < 0 || j < i {
		t.Fatalf("no PatientName in %s: %s", path, s)
	}
	return s[i+1 : j]
}

// orthancProc is an Orthanc (Debian package) started for one test: storage
// in the test's folder, HTTP (refusing remote clients) and DICOM on free
// ports, no plugins, the node as its modality "medmesh".
type orthancProc struct {
	http, dicomPort string
}

func startOrthancProc(t *testing.T, dir, nodeAE, nodeAddr string) *orthancProc {
	return startOrthancWith(t, dir, nodeAE, nodeAddr, nil)
}

// startOrthancWith starts Orthanc with extra configuration keys.
func startOrthancWith(t *testing.T, dir, nodeAE, nodeAddr string, extra map[string]any) *orthancProc {
	t.Helper()
	httpPort, dicomPort := freePort(t), freePort(t)
	host, port, _ := net.SplitHostPort(nodeAddr)
	od := filepath.Join(dir, "orthanc")
	cfg := map[string]any{
		"Name": "medmesh-e2e", "StorageDirectory": od, "IndexDirectory": od, "StorageCompression": false, "Plugins": []string{},
		"HttpServerEnabled": true, "HttpPort": mustAtoi(t, httpPort), "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
		"DicomServerEnabled": true, "DicomAet": "ORTHANC", "DicomPort": mustAtoi(t, dicomPort), "DicomCheckCalledAet": true,
		"DicomAlwaysAllowEcho": false, "DicomAlwaysAllowStore": false, "DicomCheckModalityHost": true, "DicomScuTimeout": 30,
		"SaveJobs": false, "UnknownSopClassAccepted": true,
		"DicomModalities": map[string]any{"medmesh": map[string]any{"AET": nodeAE, "Host": host, "Port": mustAtoi(t, port),
			"AllowEcho": true, "AllowFind": true, "AllowMove": true, "AllowGet": true, "AllowStore": true}},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg)
	cp := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("Orthanc", cp)
	var logb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			s := logb.String()
			if len(s) > 4000 {
				s = s[len(s)-4000:]
			}
			t.Logf("Orthanc log (tail):\n%s", s)
		}
	})
	o := &orthancProc{http: "http://127.0.0.1:" + httpPort, dicomPort: dicomPort}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get(o.http + "/system"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return o
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Orthanc did not start:\n%s", logb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (o *orthancProc) do(t *testing.T, method, path, ctype string, body []byte, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, o.http+path, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("Orthanc %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("Orthanc %s %s: %s: %s", method, path, resp.Status, rb)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("Orthanc %s %s: %v: %s", method, path, err, rb)
		}
	}
}

func (o *orthancProc) post(t *testing.T, path string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	o.do(t, "POST", path, "application/json", b, out)
}

func (o *orthancProc) postRaw(t *testing.T, path string, body []byte, out any) {
	t.Helper()
	o.do(t, "POST", path, "application/dicom", body, out)
}

func (o *orthancProc) getJSON(t *testing.T, path string, out any) {
	t.Helper()
	o.do(t, "GET", path, "", nil, out)
}

func (o *orthancProc) delete(t *testing.T, path string) {
	t.Helper()
	o.do(t, "DELETE", path, "", nil, nil)
}

func (o *orthancProc) studyID(t *testing.T, uid string) string {
	t.Helper()
	var ids []string
	var found []struct{ ID, Type string }
	o.do(t, "POST", "/tools/lookup", "text/plain", []byte(uid), &found)
	for _, f := range found {
		if f.Type == "Study" {
			ids = append(ids, f.ID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("Orthanc has %d studies %s", len(ids), uid)
	}
	return ids[0]
}

// dataSets returns every instance Orthanc holds: data set by SOP UID.
func (o *orthancProc) dataSets(t *testing.T) map[string][]byte {
	t.Helper()
	var ids []string
	o.getJSON(t, "/instances", &ids)
	sort.Strings(ids)
	out := map[string][]byte{}
	for _, id := range ids {
		req, _ := http.NewRequest("GET", o.http+"/instances/"+id+"/file", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m, ds, err := dimse.OpenPart10(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Orthanc instance %s: %v", id, err)
		}
		data, _ := io.ReadAll(ds)
		out[m.MediaStorageSOPInstanceUID] = data
	}
	return out
}

// TestPACSKilledDaemon: instances the node acknowledged are not lost when
// its daemon is killed (SIGKILL) in the middle of an association, while
// the study is being encrypted as it arrives: the next start stores them
// from the inbox, and the half-written record is gone.
func TestPACSKilledDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	dir := t.TempDir()
	c := &cli{t: t, repo: filepath.Join(dir, "node")}
	port := freePort(t)
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	c.must("network", "create", "--name", "e2e-kill")
	c.must("config", "set", "dicom.listen", "127.0.0.1:"+port)
	c.must("config", "set", "dicom.allowed", "SENDER@127.0.0.1")
	d := c.startDaemon()
	files, err := dicomtest.WriteStudy(filepath.Join(dir, "src"), dicomtest.Options{InstancesPerSeries: 40, Rows: 64, Cols: 64, Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	var params []dimse.StoreParams
	for _, f := range files {
		fh, _ := os.Open(f)
		p, _, err := dimse.Part10Params(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		params = append(params, p)
	}
	ctx := context.Background()
	a, err := dimse.Dial(ctx, "127.0.0.1:"+port, dimse.ClientOptions{CallingAE: "SENDER", CalledAE: "MEDMESH", Proposals: dimse.StorageProposals(params)})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string][]byte{}
	for i, f := range files[:30] {
		fh, _ := os.Open(f)
		_, err := a.StorePart10(ctx, fh)
		fh.Close()
		if err != nil {
			t.Fatalf("C-STORE %d: %v", i, err)
		}
		uid, ds := part10Split(t, f)
		acked[uid] = ds
	}
	// Killed with the association open and the study half encrypted.
	d.Process.Signal(syscall.SIGKILL)
	d.Wait()
	a.Abort()
	d = c.startDaemon()
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()
	var hits []api.DicomStudyHit
	waitFor(t, "the acknowledged instances after the restart", 60*time.Second, func() error {
		hits = decode[[]api.DicomStudyHit](t, c.must("dicom", "query", "--json"))
		if len(hits) != 1 || hits[0].Instances != len(acked) {
			return fmt.Errorf("dicom query: %+v, want one study of %d instances", hits, len(acked))
		}
		return nil
	})
	c.must("dicom", "export", hits[0].ID, "-o", filepath.Join(dir, "out"))
	sameSets(t, "stored after the restart", dataSets(t, filepath.Join(dir, "out")), acked)
	if ents, _ := os.ReadDir(filepath.Join(c.repo, "dicom-inbox")); len(ents) != 1 { // .incoming only
		t.Errorf("inbox after the restart: %v", ents)
	}
	recs := decode[[]api.Record](t, c.must("ls", "--json"))
	if len(recs) != 1 {
		t.Errorf("%d records after the restart, want the one study", len(recs))
	}
}

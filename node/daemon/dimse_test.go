package daemon_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/pacs"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// needDcmtk skips the test without dcmtk's network tools.
func needDcmtk(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"echoscu", "storescu", "findscu", "movescu", "getscu"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dcmtk): skipping", tool)
		}
	}
}

// dcmtk runs a dcmtk tool (Nagle off, as dcmtk's tools leave it on) and
// returns its combined output and error.
func dcmtk(t *testing.T, dir, tool string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dataSet returns a Part 10 file's data set: the bytes after its File Meta
// Information.
func dataSet(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, ds, err := dimse.OpenPart10(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(ds)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// findXML is what findscu -Xs writes: one data set per response.
type findXML struct {
	Responses []struct {
		Elements []struct {
			Tag   string `xml:"tag,attr"`
			Value string `xml:",chardata"`
		} `xml:"element"`
	} `xml:"data-set"`
}

// findscu runs a C-FIND and returns each match's values by tag.
func findscu(t *testing.T, dir, addr string, args ...string) []map[string]string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	xmlPath := filepath.Join(dir, fmt.Sprintf("find-%d.xml", time.Now().UnixNano()))
	out, err := dcmtk(t, dir, "findscu", append(append([]string{"-aet", "FINDSCU", "-aec", "MEDMESH", "-Xs", xmlPath}, args...), host, port)...)
	if err != nil {
		t.Fatalf("findscu %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(xmlPath)
	if err != nil {
		t.Fatalf("findscu wrote no XML: %v\n%s", err, out)
	}
	var doc findXML
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("findscu XML: %v\n%s", err, b)
	}
	var rows []map[string]string
	for _, r := range doc.Responses {
		m := map[string]string{}
		for _, e := range r.Elements {
			m[strings.ToUpper(e.Tag)] = strings.TrimSpace(e.Value)
		}
		rows = append(rows, m)
	}
	return rows
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestDIMSE: the node as a DICOM AE, driven by dcmtk's tools: C-ECHO from
// an allowed AE and a refused one; storescu of a series (every instance
// stored, as one study, counts matching); findscu at each level with
// wildcards and ranges; getscu and movescu bring back every instance with
// its data set byte for byte; a study granted by another clinic is found
// and moved from the grantee's node.
func TestDIMSE(t *testing.T) {
	needDcmtk(t)
	if testing.Short() {
		t.Skip("runs two nodes and dcmtk")
	}
	ctx := context.Background()
	dir := t.TempDir()
	moveTo := freeTCPPort(t)
	callers, err := dimse.ParseCallers("STORESCU@127.0.0.1,FINDSCU@127.0.0.1,MOVESCU@*,GETSCU@127.0.0.1,ECHOSCU@127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dests, err := dimse.ParseDestinations("MOVESCU=127.0.0.1:" + moveTo)
	if err != nil {
		t.Fatal(err)
	}
	set := &pacs.Settings{Listen: "127.0.0.1:0", AETitle: "MEDMESH", Allowed: callers, Destinations: dests, StoreDelay: 2 * time.Second} // the default: two storescu runs in a row under load are further apart than 300 ms
	n, err := devnet.Start(ctx, filepath.Join(dir, "net"), []string{"radiology", "hospital"}, devnet.Options{Daemon: daemon.Options{DICOM: set}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	rad, hosp := n.Nodes[0], n.Nodes[1]
	radAddr := rad.Daemon.DICOMAddr().String()
	host, port, _ := net.SplitHostPort(radAddr)

	// C-ECHO
	if out, err := dcmtk(t, dir, "echoscu", "-aet", "ECHOSCU", "-aec", "MEDMESH", host, port); err != nil {
		t.Fatalf("echoscu from an allowed AE: %v\n%s", err, out)
	}
	out, err := dcmtk(t, dir, "echoscu", "-aet", "INTRUDER", "-aec", "MEDMESH", host, port)
	if err == nil || !strings.Contains(out, "Association Rejected") {
		t.Fatalf("echoscu from an unknown AE: %v\n%s", err, out)
	}

	// C-STORE a series of 12 in two associations (6 + 6): one study.
	src := filepath.Join(dir, "src")
	paths, err := dicomtest.WriteStudy(src, dicomtest.Options{SeriesPerStudy: 2, InstancesPerSeries: 6, Rows: 32, Cols: 32, Seed: 14})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, half := range [][]string{paths[:6], paths[6:]} {
		if out, err := dcmtk(t, dir, "storescu", append([]string{"-aet", "STORESCU", "-aec", "MEDMESH", host, port}, half...)...); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
	}
	var rows []map[string]string
	eventually(t, "the stored study", func() error {
		rows = findscu(t, dir, radAddr, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances", "-k", "PatientName=demo*")
		if len(rows) != 1 || rows[0]["0020,1208"] != "12" {
			return fmt.Errorf("C-FIND: %v", rows)
		}
		return nil
	})
	var recs []api.Record
	if err := rad.API.Do(ctx, "GET", "/api/v1/records", nil, &recs); err != nil || len(recs) != 1 {
		t.Fatalf("records: %v %v (want the one study, sent in two associations)", recs, err)
	}
	studyUID := rows[0]["0020,000D"]

	// C-FIND at every level.
	if got := findscu(t, dir, radAddr, "-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "-k", "NumberOfPatientRelatedInstances"); len(got) != 1 || got[0]["0020,1204"] != "12" {
		t.Errorf("PATIENT level: %v", got)
	}
	if got := findscu(t, dir, radAddr, "-S", "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID="+studyUID, "-k", "SeriesInstanceUID", "-k", "NumberOfSeriesRelatedInstances"); len(got) != 2 || got[0]["0020,1209"] != "6" {
		t.Errorf("SERIES level: %v", got)
	}
	if got := findscu(t, dir, radAddr, "-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", "StudyInstanceUID="+studyUID, "-k", "SOPInstanceUID", "-k", "Rows"); len(got) != 12 || got[0]["0028,0010"] != "32" {
		t.Errorf("IMAGE level: %d matches %v", len(got), got)
	}
	if got := findscu(t, dir, radAddr, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyDate=19000101-19991231"); len(got) != 0 {
		t.Errorf("date range outside the study: %v", got)
	}

	// C-GET: every instance back, data sets equal.
	getDir := filepath.Join(dir, "get")
	os.MkdirAll(getDir, 0o755)
	if out, err := dcmtk(t, dir, "getscu", "-aet", "GETSCU", "-aec", "MEDMESH", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyUID, "-od", getDir, host, port); err != nil {
		t.Fatalf("getscu: %v\n%s", err, out)
	}
	sameDataSets(t, getDir, paths)

	// C-MOVE to the movescu's own storage SCP.
	moveDir := filepath.Join(dir, "move")
	os.MkdirAll(moveDir, 0o755)
	if out, err := dcmtk(t, dir, "movescu", "-aet", "MOVESCU", "-aec", "MEDMESH", "-aem", "MOVESCU", "+P", moveTo, "-S", "-k", "QueryRetrieveLevel=STUDY",
		"-k", "StudyInstanceUID="+studyUID, "-od", moveDir, host, port); err != nil {
		t.Fatalf("movescu: %v\n%s", err, out)
	}
	sameDataSets(t, moveDir, paths)

	// Granted to the hospital: found and moved from the hospital's node,
	// which fetches it from radiology.
	var grantRes api.Grant
	if err := rad.API.Do(ctx, "POST", "/api/v1/records/"+recs[0].ID+"/grants", api.GrantRequest{To: hosp.ID.String(), Purpose: "treatment"}, &grantRes); err != nil {
		t.Fatalf("grant: %v", err)
	}
	hospAddr := hosp.Daemon.DICOMAddr().String()
	eventually(t, "the granted study in the hospital's index", func() error {
		if got := findscu(t, dir, hospAddr, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+studyUID); len(got) != 1 {
			return fmt.Errorf("C-FIND on the hospital: %v", got)
		}
		return nil
	})
	moveDir2 := filepath.Join(dir, "move2")
	os.MkdirAll(moveDir2, 0o755)
	hh, hp, _ := net.SplitHostPort(hospAddr)
	if out, err := dcmtk(t, dir, "movescu", "-aet", "MOVESCU", "-aec", "MEDMESH", "-aem", "MOVESCU", "+P", moveTo, "-S", "-k", "QueryRetrieveLevel=SERIES",
		"-k", "StudyInstanceUID="+studyUID, "-od", moveDir2, hh, hp); err != nil {
		t.Fatalf("movescu from the hospital: %v\n%s", err, out)
	}
	sameDataSets(t, moveDir2, paths)
}

// sameDataSets checks that dir holds exactly the instances of paths, each
// data set byte for byte equal to the original's.
func sameDataSets(t *testing.T, dir string, paths []string) {
	t.Helper()
	want := map[string][]byte{}
	for _, p := range paths {
		b := dataSet(t, p)
		want[string(sopOf(t, p))] = b
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		w, ok := want[string(sopOf(t, p))]
		if !ok {
			t.Errorf("%s: not an instance that was stored", e.Name())
			continue
		}
		if !bytes.Equal(dataSet(t, p), w) {
			t.Errorf("%s: data set differs from the one stored", e.Name())
		}
		got++
	}
	if got != len(paths) {
		t.Errorf("%s holds %d instances, want %d", dir, got, len(paths))
	}
}

func sopOf(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, _, err := dimse.OpenPart10(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m.MediaStorageSOPInstanceUID
}

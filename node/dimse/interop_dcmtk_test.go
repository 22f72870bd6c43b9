package dimse

import (
	"bytes"
	"fmt"
	"sort"
	"sync"

	"context"
	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interop with dcmtk's tools as peers of our Server.

func TestDcmtkEchoAllowedAndRejected(t *testing.T) {
	needTool(t, "echoscu")
	_, addr := startServer(t, ServerOptions{AETitle: "MEDMESH", Allowed: mustCallers(t, "ECHOSCU@127.0.0.1", "OTHER@*")})
	host, port := hostPort(t, addr)

	out, err := run(t, 30*time.Second, "echoscu", "-v", "-aet", "ECHOSCU", "-aec", "MEDMESH", host, port)
	if err != nil {
		t.Fatalf("echoscu from an allowed AE: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Received Echo Response (Success)") {
		t.Fatalf("echoscu: no success response:\n%s", out)
	}

	// An AE that is not allowed: A-ASSOCIATE-RJ, calling AE not recognized.
	out, err = run(t, 30*time.Second, "echoscu", "-v", "-aet", "STRANGER", "-aec", "MEDMESH", host, port)
	if err == nil {
		t.Fatalf("echoscu from an unknown AE succeeded:\n%s", out)
	}
	if !strings.Contains(out, "Association Rejected") || !strings.Contains(out, "Calling AE Title Not Recognized") {
		t.Fatalf("echoscu from an unknown AE: want a rejection (calling AE not recognized):\n%s", out)
	}

	// The right AE at the wrong called AE title.
	out, err = run(t, 30*time.Second, "echoscu", "-v", "-aet", "ECHOSCU", "-aec", "NOTUS", host, port)
	if err == nil || !strings.Contains(out, "Called AE Title Not Recognized") {
		t.Fatalf("echoscu to another called AE: want a rejection (called AE not recognized): %v\n%s", err, out)
	}

	// Allowed from any host.
	out, err = run(t, 30*time.Second, "echoscu", "-aet", "OTHER", "-aec", "MEDMESH", host, port)
	if err != nil {
		t.Fatalf("echoscu from AE@*: %v\n%s", err, out)
	}
}

// validFiles returns the shared test files that must parse (MANIFEST
// intent "parse"), less the DICOMDIR, with the SOP Instance UID of their
// data set (one file's File Meta disagrees with it).
func validFiles(t testing.TB) []testFile {
	t.Helper()
	dir, ok := sharedDir()
	if !ok {
		t.Logf("shared DICOM test data not found at %s: using synthetic files (Explicit VR Little Endian only)", dir)
		var out []testFile
		for _, p := range syntheticStudies(t, 100) {
			ds, err := lib.ParseFile(p, nil, lib.SkipPixelData())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, testFile{Path: p, SOPInstanceUID: stringValue(&ds, tag.SOPInstanceUID)})
		}
		return out
	}
	var out []testFile
	for _, e := range readManifest(t, dir) {
		if !e.Parse || strings.HasSuffix(e.File, "DICOMDIR") {
			continue
		}
		p := filepath.Join(dir, e.File)
		// An instance names itself in its data set; files that do only in
		// their File Meta cannot be sent (storescu refuses them too).
		ds, err := lib.ParseFile(p, nil, lib.SkipPixelData(), lib.AllowUnknownSpecificCharacterSet())
		if err != nil {
			t.Logf("%s: skipped: %v", e.File, err)
			continue
		}
		uid := stringValue(&ds, tag.SOPInstanceUID)
		if uid == "" {
			continue
		}
		out = append(out, testFile{Path: p, SOPInstanceUID: uid})
	}
	return out
}

// storescuOption is the storescu flag that proposes a transfer syntax
// (and the uncompressed ones), so that dcmtk sends a file in its own
// syntax instead of converting it.
var storescuOption = map[string]string{
	ExplicitVRLittleEndian:   "-xe",
	ImplicitVRLittleEndian:   "-xi",
	ExplicitVRBigEndian:      "-xb",
	"1.2.840.10008.1.2.1.99": "-xd",
	"1.2.840.10008.1.2.5":    "-xr",
	"1.2.840.10008.1.2.4.50": "-xy",
	"1.2.840.10008.1.2.4.51": "-xx",
	"1.2.840.10008.1.2.4.70": "-xs",
	"1.2.840.10008.1.2.4.80": "-xt",
	"1.2.840.10008.1.2.4.90": "-xv",
	"1.2.840.10008.1.2.4.91": "-xw",
}

// startStorescp runs dcmtk's storescp (bit-preserving: it writes each data
// set exactly as received) with AE title aet into dir, and returns its
// port.
func startStorescp(t testing.TB, aet, dir string) string {
	t.Helper()
	needTool(t, "storescp")
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "storescp", "-aet", aet, "+xa", "+B", "+uf", "-dhl", "-od", dir, port)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("storescp output:\n%s", out.String())
		}
	})
	waitPort(t, "127.0.0.1:"+port)
	return port
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p := hostPort(t, l.Addr().String())
	return p
}

func waitPort(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type testFile struct {
	Path           string
	SOPInstanceUID string
}

// storedFiles reads what storescp wrote into dir in transfer syntax ts,
// by SOP instance UID.
func storedFiles(t testing.TB, dir, ts string) map[string]part10File {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]part10File{}
	for _, e := range ents {
		f := readPart10(t, filepath.Join(dir, e.Name()))
		if f.Meta.TransferSyntaxUID == ts {
			out[f.Meta.MediaStorageSOPInstanceUID] = f
		}
	}
	return out
}

// TestDcmtkStorescuByteExact sends every valid shared test file with
// storescu, once to our SCP and once to dcmtk's bit-preserving storescp,
// one association per transfer syntax with the storescu option that
// proposes it (so dcmtk sends files as they are). Every data set we stored
// must be byte for byte what storescp received (dcmtk re-encodes some
// files, e.g. it drops Data Set Trailing Padding), in the file's transfer
// syntax; where dcmtk sent the file unchanged, ours equals the file.
func TestDcmtkStorescuByteExact(t *testing.T) {
	needTool(t, "storescu")
	files := validFiles(t)
	groups := map[string][]part10File{}
	uids := map[string]string{}
	for _, tf := range files {
		f := readPart10(t, tf.Path)
		uids[tf.Path] = tf.SOPInstanceUID
		groups[f.Meta.TransferSyntaxUID] = append(groups[f.Meta.TransferSyntaxUID], f)
	}
	store := newMemStore()
	_, addr := startServer(t, ServerOptions{AETitle: "MEDMESH", Allowed: mustCallers(t, "STORESCU@127.0.0.1"), Store: store})
	host, port := hostPort(t, addr)
	refDir := t.TempDir()
	refPort := startStorescp(t, "REFSCP", refDir)
	sameAsFile, total := 0, 0
	for _, ts := range sortedKeys(groups) {
		opt, ok := storescuOption[ts]
		if !ok {
			t.Errorf("no storescu option proposes %s", ts)
			continue
		}
		var paths []string
		for _, f := range groups[ts] {
			paths = append(paths, f.Path)
		}
		store.reset()
		// the same storescu run against both, at once
		var wg sync.WaitGroup
		errs := make([]string, 2)
		for i, target := range []struct{ aec, port string }{{"MEDMESH", port}, {"REFSCP", refPort}} {
			args := append([]string{"-aet", "STORESCU", "-aec", target.aec, opt, host, target.port}, paths...)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := run(t, 60*time.Second, "storescu", args...); err != nil {
					errs[i] = fmt.Sprintf("storescu %s to %s: %v\n%s", opt, target.aec, err, out)
				}
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Fatal(e)
			}
		}
		ref := storedFiles(t, refDir, ts)
		for _, f := range groups[ts] {
			total++
			uid := uids[f.Path]
			got, req, ok := store.get(uid)
			want, okRef := ref[uid]
			if !ok || !okRef {
				t.Errorf("%s: stored by us %v, by storescp %v", f.Path, ok, okRef)
				continue
			}
			if req.TransferSyntaxUID != ts || want.Meta.TransferSyntaxUID != ts || req.SOPClassUID != f.Meta.MediaStorageSOPClassUID {
				t.Errorf("%s: stored in %s (storescp: %s), class %s; file: %s, %s", f.Path, req.TransferSyntaxUID, want.Meta.TransferSyntaxUID, req.SOPClassUID, ts, f.Meta.MediaStorageSOPClassUID)
			}
			if !bytes.Equal(got, want.Data) {
				t.Errorf("%s: our data set (%d bytes, %s) differs from storescp's (%d bytes, %s)", f.Path, len(got), sum(got), len(want.Data), sum(want.Data))
			}
			if bytes.Equal(got, f.Data) {
				sameAsFile++
			}
		}
	}
	t.Logf("%d files in %d transfer syntaxes: all stored as storescp received them; %d byte-identical to the file (dcmtk re-encoded the others)", total, len(groups), sameAsFile)
}

// extracted reads the C-FIND responses findscu extracted into dir.
func extracted(t *testing.T, dir string) []*lib.Dataset {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []*lib.Dataset
	for _, e := range ents {
		ds, err := lib.ParseFile(filepath.Join(dir, e.Name()), nil, lib.AllowUnknownSpecificCharacterSet())
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, &ds)
	}
	return out
}

func TestDcmtkFindscu(t *testing.T) {
	needTool(t, "findscu")
	arch := newArchive(t, archiveFiles(t))
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "FINDSCU@127.0.0.1"), Find: arch})
	host, port := hostPort(t, addr)
	// the last patient's name, its last four characters replaced by "*"
	name := arch.insts[len(arch.insts)-1].attrs[tag.PatientName]
	namePattern := name[:max(len(name)-4, 1)] + "*"
	for _, tc := range []struct {
		name string
		args []string
		key  tag.Tag
		want []string
	}{
		{"patient root, patients", []string{"-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientName", "-k", "PatientID"},
			tag.PatientID, arch.distinct(tag.PatientID)},
		{"study root, wildcard name", []string{"-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=" + namePattern, "-k", "StudyInstanceUID", "-k", "StudyDate"},
			tag.StudyInstanceUID, distinctOf(arch.matching(tag.PatientName, namePattern), tag.StudyInstanceUID)},
		{"study root, series of a study", []string{"-S", "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=" + arch.insts[0].attrs[tag.StudyInstanceUID], "-k", "SeriesInstanceUID", "-k", "Modality"},
			tag.SeriesInstanceUID, distinctOf(arch.selectInsts(tag.StudyInstanceUID, arch.insts[0].attrs[tag.StudyInstanceUID]), tag.SeriesInstanceUID)},
		{"no match", []string{"-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=NOBODY", "-k", "StudyInstanceUID"}, tag.StudyInstanceUID, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"-aet", "FINDSCU", "-aec", "MEDMESH", "-X", "-od", dir}, tc.args...)
			out, err := run(t, 30*time.Second, "findscu", append(args, host, port)...)
			if err != nil {
				t.Fatalf("findscu: %v\n%s", err, out)
			}
			var got []string
			for _, ds := range extracted(t, dir) {
				got = append(got, stringValue(ds, tc.key))
				if lvl := stringValue(ds, tag.QueryRetrieveLevel); lvl == "" {
					t.Errorf("response without Query/Retrieve Level")
				}
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("findscu found %v, want %v\n%s", got, tc.want, out)
			}
		})
	}
}

func distinctOf(insts []*archInst, k tag.Tag) []string {
	m := map[string]bool{}
	for _, in := range insts {
		m[in.attrs[k]] = true
	}
	return sortedKeys(m)
}

func TestDcmtkMovescu(t *testing.T) {
	needTool(t, "movescu")
	arch := newArchive(t, archiveFiles(t))
	destDir := t.TempDir()
	destPort := startStorescp(t, "DEST", destDir)
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "MOVESCU@127.0.0.1"), Move: arch,
		Destinations: []Destination{{AETitle: "DEST", Addr: "127.0.0.1:" + destPort}}})
	host, port := hostPort(t, addr)
	study := arch.insts[len(arch.insts)-1].attrs[tag.StudyInstanceUID]
	want := arch.selectInsts(tag.StudyInstanceUID, study)
	out, err := run(t, 60*time.Second, "movescu", "-v", "-S", "-aet", "MOVESCU", "-aec", "MEDMESH", "-aem", "DEST",
		"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, host, port)
	if err != nil {
		t.Fatalf("movescu: %v\n%s", err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("Completed Suboperations       : %d", len(want))) && !strings.Contains(out, "Received Final Move Response (Success)") {
		t.Errorf("movescu output lacks the final success:\n%s", out)
	}
	checkReceived(t, destDir, want)

	// An unknown destination is refused with 0xA801.
	out, err = run(t, 60*time.Second, "movescu", "-v", "-S", "-aet", "MOVESCU", "-aec", "MEDMESH", "-aem", "NOWHERE",
		"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, host, port)
	if !strings.Contains(out, "Refused: MoveDestinationUnknown") {
		t.Errorf("movescu to an unknown destination: want status 0xA801: %v\n%s", err, out)
	}
}

func TestDcmtkGetscu(t *testing.T) {
	needTool(t, "getscu")
	arch := newArchive(t, archiveFiles(t))
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "GETSCU@127.0.0.1"), Get: arch})
	host, port := hostPort(t, addr)
	patient := arch.insts[0].attrs[tag.PatientID]
	want := arch.selectInsts(tag.PatientID, patient)
	dir := t.TempDir()
	out, err := run(t, 60*time.Second, "getscu", "-v", "-P", "+B", "-od", dir, "-aet", "GETSCU", "-aec", "MEDMESH",
		"-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID="+patient, host, port)
	if err != nil {
		t.Fatalf("getscu: %v\n%s", err, out)
	}
	checkReceived(t, dir, want)
}

func TestDcmtkFindscuCancel(t *testing.T) {
	needTool(t, "findscu")
	arch := newArchive(t, archiveFiles(t))
	arch.gate = make(chan struct{}) // the handler waits after each match
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "FINDSCU@127.0.0.1"), Find: arch})
	host, port := hostPort(t, addr)
	out, err := run(t, 30*time.Second, "findscu", "-v", "-S", "--cancel", "1", "-aet", "FINDSCU", "-aec", "MEDMESH",
		"-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID", host, port)
	if err != nil {
		t.Fatalf("findscu --cancel 1: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)") {
		t.Fatalf("findscu --cancel 1: no final Cancel response:\n%s", out)
	}
	arch.mu.Lock()
	defer arch.mu.Unlock()
	if arch.cancelled != 1 {
		t.Fatalf("the handler saw %d cancellations", arch.cancelled)
	}
}

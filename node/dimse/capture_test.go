package dimse

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// The fuzz targets are seeded with real encodings: PDUs and byte streams
// recorded between dcmtk's tools (and Orthanc) and our SCP by a recording
// proxy. TestCaptureSeeds regenerates testdata/captures:
//
//	MEDMESH_DIMSE_CAPTURE=1 go test ./node/dimse -run TestCaptureSeeds
//
// Each session leaves its PDUs (NAME-SEQ-DIR-TYPE.pdu, DIR c2s or s2c, at
// most maxSeedPDU bytes each) and the client's whole byte stream
// (NAME.c2s, at most maxSeedStream bytes).

const (
	captureDir    = "testdata/captures"
	maxSeedPDU    = 24 << 10
	maxSeedStream = 96 << 10
)

// recorder is a TCP proxy to target that records both directions.
type recorder struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	c2s    []byte
	s2c    []byte
	wg     sync.WaitGroup
}

func newRecorder(t testing.TB, target string) *recorder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{l: l, target: target}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.wg.Add(2)
			go r.pipe(c, s, &r.c2s)
			go r.pipe(s, c, &r.s2c)
		}
	}()
	t.Cleanup(func() { l.Close() })
	return r
}

func (r *recorder) pipe(from, to net.Conn, rec *[]byte) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			r.mu.Lock()
			*rec = append(*rec, buf[:n]...)
			r.mu.Unlock()
			to.Write(buf[:n])
		}
		if err != nil {
			if tc, ok := to.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

func (r *recorder) addr() string { return r.l.Addr().String() }

// save writes the session's PDUs and client stream under dir, and resets.
func (r *recorder) save(t testing.TB, dir, name string) {
	t.Helper()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: proxy did not drain", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range []struct {
		dir string
		b   []byte
	}{{"c2s", r.c2s}, {"s2c", r.s2c}} {
		for i, p := range splitPDUs(d.b) {
			if len(p) > maxSeedPDU {
				continue
			}
			f := filepath.Join(dir, fmt.Sprintf("%s-%02d-%s-%02x.pdu", name, i, d.dir, p[0]))
			if err := os.WriteFile(f, p, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	c2s := r.c2s
	if len(c2s) > maxSeedStream {
		c2s = c2s[:maxSeedStream]
	}
	if err := os.WriteFile(filepath.Join(dir, name+".c2s"), c2s, 0o644); err != nil {
		t.Fatal(err)
	}
	r.c2s, r.s2c = nil, nil
}

// splitPDUs cuts a recorded stream at PDU boundaries.
func splitPDUs(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= pduHeaderLen {
		n := int(binary.BigEndian.Uint32(b[2:]))
		if n > len(b)-pduHeaderLen {
			break
		}
		out = append(out, b[:pduHeaderLen+n])
		b = b[pduHeaderLen+n:]
	}
	return out
}

// loadSeeds returns the recorded seeds whose names end with suffix.
func loadSeeds(t testing.TB, suffix string) [][]byte {
	t.Helper()
	ents, err := os.ReadDir(captureDir)
	if err != nil {
		t.Fatalf("reading seeds: %v", err)
	}
	var out [][]byte
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			b, err := os.ReadFile(filepath.Join(captureDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s seeds in %s", suffix, captureDir)
	}
	return out
}

// commandSeeds returns the command sets inside the recorded P-DATA PDUs.
func commandSeeds(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	var cur []byte
	for _, b := range loadSeeds(t, ".pdu") {
		if b[0] != TypePDataTF {
			continue
		}
		p, err := DecodePDU(b)
		if err != nil {
			t.Fatalf("recorded PDU does not decode: %v", err)
		}
		for _, v := range p.(*PDataTF).Items {
			if v.Command {
				cur = append(cur, v.Data...)
				if v.Last {
					out = append(out, cur)
					cur = nil
				}
			}
		}
	}
	return out
}

func TestCaptureSeeds(t *testing.T) {
	if os.Getenv("MEDMESH_DIMSE_CAPTURE") == "" {
		t.Skip("set MEDMESH_DIMSE_CAPTURE=1 to record the fuzz seeds from dcmtk and Orthanc")
	}
	for _, tool := range []string{"echoscu", "storescu", "findscu", "movescu", "getscu", "storescp"} {
		needTool(t, tool)
	}
	dir := captureDir
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	td := testdataDir(t)
	arch := newArchive(t, archiveFiles(t))
	destDir := t.TempDir()
	destPort := startStorescp(t, "DEST", destDir)
	store := newMemStore()
	_, addr := startServer(t, ServerOptions{AETitle: "MEDMESH", Allowed: mustCallers(t, "DCMTK@127.0.0.1", "ORTHANC@127.0.0.1"),
		Store: store, Find: arch, Move: arch, Get: arch, Destinations: []Destination{{AETitle: "DEST", Addr: "127.0.0.1:" + destPort}}})
	rec := newRecorder(t, addr)
	host, port := hostPort(t, rec.addr())
	small := filepath.Join(td, "valid", "mr_small_implicit_le.dcm")
	study := arch.insts[0].attrs[tag.StudyInstanceUID]
	sessions := []struct {
		name  string
		tool  string
		args  []string
		files []string // after peer and port
	}{
		{"echoscu", "echoscu", []string{"-aet", "DCMTK", "-aec", "MEDMESH"}, nil},
		{"echoscu-rejected", "echoscu", []string{"-aet", "STRANGER", "-aec", "MEDMESH"}, nil},
		{"storescu-implicit", "storescu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-xi", "-R"}, []string{small}},
		{"storescu-jpeg", "storescu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-xy", "-R"}, []string{filepath.Join(td, "valid", "sc_rgb_jpeg_baseline.dcm")}},
		{"storescu-deflated", "storescu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-xd", "-R"}, []string{filepath.Join(td, "valid", "sc_deflated.dcm")}},
		{"storescu-useridentity", "storescu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-R", "-usr", "alice", "-pwd", "secret"}, []string{small}},
		{"storescu-abort", "storescu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-R", "--abort"}, []string{small}},
		{"storescu-smallpdu", "storescu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-R", "--max-send-pdu", "4096"}, []string{small}},
		{"findscu-study", "findscu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=Doe*", "-k", "StudyInstanceUID", "-k", "StudyDate"}, nil},
		{"findscu-patient", "findscu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "-k", "PatientName"}, nil},
		{"movescu", "movescu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-aem", "DEST", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study}, nil},
		{"getscu", "getscu", []string{"-aet", "DCMTK", "-aec", "MEDMESH", "-S", "--ignore", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study}, nil},
	}
	for _, s := range sessions {
		out, err := run(t, time.Minute, s.tool, append(append(s.args, host, port), s.files...)...)
		if err != nil && s.name != "echoscu-rejected" {
			t.Fatalf("%s: %v\n%s", s.name, err, out)
		}
		rec.save(t, dir, s.name)
	}
	arch.gate = make(chan struct{})
	if out, err := run(t, time.Minute, "findscu", "-aet", "DCMTK", "-aec", "MEDMESH", "-S", "--cancel", "1", "-k", "QueryRetrieveLevel=IMAGE", "-k", "SOPInstanceUID", host, port); err != nil {
		t.Fatalf("findscu --cancel: %v\n%s", err, out)
	}
	rec.save(t, dir, "findscu-cancel")
	arch.gate = nil

	// Orthanc as requestor (C-ECHO, C-STORE) and as acceptor.
	if _, err := exec.LookPath("Orthanc"); err == nil {
		o := startOrthanc(t, "MEDMESH", rec.addr())
		o.post("/modalities/medmesh/echo", map[string]any{}, nil)
		rec.save(t, dir, "orthanc-echo")
		oRec := newRecorder(t, "127.0.0.1:"+o.dicomPort)
		sendFilesAs(t, "MEDMESH", oRec.addr(), "ORTHANC", []testFile{{Path: small}})
		oRec.save(t, dir, "ours-to-orthanc")
		ids := o.instances()
		var all []string
		for _, id := range ids {
			all = append(all, id)
		}
		o.post("/modalities/medmesh/store", map[string]any{"Resources": all, "Synchronous": true}, nil)
		rec.save(t, dir, "orthanc-store")
	}
	ents, _ := os.ReadDir(dir)
	t.Logf("%d seed files in %s", len(ents), dir)
}

package dimse

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"os"
	"os/exec"
	"testing"
	"time"
)

// sendFiles stores the files with our Client over one association.
func sendFiles(t *testing.T, addr, calledAE string, files []testFile) {
	sendFilesAs(t, "MEDMESHSCU", addr, calledAE, files)
}

func sendFilesAs(t *testing.T, callingAE, addr, calledAE string, files []testFile) {
	t.Helper()
	var params []StoreParams
	for _, f := range files {
		fh, err := os.Open(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := Part10Params(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		params = append(params, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Dial(ctx, addr, ClientOptions{CallingAE: callingAE, CalledAE: calledAE, Proposals: StorageProposals(params), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fh, err := os.Open(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.StorePart10(ctx, fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		if st.Code != StatusSuccess {
			t.Errorf("%s: status %v", f.Path, st)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
}

// TestClientStoreByteExact: our SCU sends every valid shared file as
// stored, to our SCP and to dcmtk's bit-preserving storescp; both receive
// each file's data set byte for byte, in its transfer syntax.
func TestClientStoreByteExact(t *testing.T) {
	files := validFiles(t)
	store := newMemStore()
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "MEDMESHSCU@127.0.0.1"), Store: store})
	byUID := map[string][]testFile{}
	for _, f := range files {
		byUID[f.SOPInstanceUID] = append(byUID[f.SOPInstanceUID], f)
	}
	// Files that share a SOP Instance UID (one data set in several
	// transfer syntaxes) go in separate rounds.
	for round := 0; ; round++ {
		var batch []testFile
		for _, uid := range sortedKeys(byUID) {
			if fs := byUID[uid]; round < len(fs) {
				batch = append(batch, fs[round])
			}
		}
		if len(batch) == 0 {
			break
		}
		store.reset()
		sendFiles(t, addr, "MEDMESH", batch)
		var refDir, refPort string
		if _, err := exec.LookPath("storescp"); err == nil {
			refDir = t.TempDir()
			refPort = startStorescp(t, "REFSCP", refDir)
			sendFiles(t, "127.0.0.1:"+refPort, "REFSCP", batch)
		}
		for _, tf := range batch {
			f := readPart10(t, tf.Path)
			if f.Meta.TransferSyntaxUID == tsDeflatedLE && len(f.Data)%2 == 1 {
				f.Data = append(f.Data, 0) // padded to even length when sent
			}
			got, req, ok := store.get(tf.SOPInstanceUID)
			if !ok {
				t.Errorf("%s: not stored", tf.Path)
				continue
			}
			if req.TransferSyntaxUID != f.Meta.TransferSyntaxUID || !bytes.Equal(got, f.Data) {
				t.Errorf("%s: stored %d bytes (%s) in %s; file: %d bytes (%s) in %s", tf.Path, len(got), sum(got), req.TransferSyntaxUID, len(f.Data), sum(f.Data), f.Meta.TransferSyntaxUID)
			}
			if refDir == "" {
				continue
			}
			ref := storedFiles(t, refDir, f.Meta.TransferSyntaxUID)[tf.SOPInstanceUID]
			if !bytes.Equal(ref.Data, f.Data) {
				t.Errorf("%s: storescp received %d bytes (%s); file: %d bytes (%s)", tf.Path, len(ref.Data), sum(ref.Data), len(f.Data), sum(f.Data))
			}
		}
	}
}

func elem(t testing.TB, tg tag.Tag, v ...string) *lib.Element {
	t.Helper()
	if v == nil {
		v = []string{""}
	}
	e, err := lib.NewElement(tg, v)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ident(t testing.TB, level string, kv ...any) *lib.Dataset {
	t.Helper()
	ds := &lib.Dataset{Elements: []*lib.Element{elem(t, tag.QueryRetrieveLevel, level)}}
	for i := 0; i < len(kv); i += 2 {
		ds.Elements = append(ds.Elements, elem(t, kv[i].(tag.Tag), kv[i+1].(string)))
	}
	return ds
}

// TestClientQueryRetrieve drives our SCP with our SCU: C-FIND (and
// cancelling one), C-MOVE to the server itself, C-GET, and the failures
// a caller must be told about.
func TestClientQueryRetrieve(t *testing.T) {
	arch := newArchive(t, archiveFiles(t))
	dest := newMemStore()
	srv, addr := startServer(t, ServerOptions{AETitle: "MEDMESH", Allowed: mustCallers(t, "SCU@127.0.0.1", "MEDMESH@127.0.0.1"),
		Find: arch, Move: arch, Get: arch, Store: dest})
	srv.o.Destinations = []Destination{{AETitle: "MEDMESH", Addr: addr}}
	srv.dests["MEDMESH"] = addr

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var props []Proposal
	for _, m := range []string{StudyRootFind, StudyRootMove, StudyRootGet, PatientRootFind} {
		props = append(props, Proposal{AbstractSyntax: m, TransferSyntaxes: []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian}})
	}
	seen := map[string]bool{}
	for _, in := range arch.insts {
		if !seen[in.meta.MediaStorageSOPClassUID] {
			seen[in.meta.MediaStorageSOPClassUID] = true
			props = append(props, Proposal{AbstractSyntax: in.meta.MediaStorageSOPClassUID, TransferSyntaxes: []string{in.meta.TransferSyntaxUID}, SCP: true})
		}
	}
	props = append(props, Proposal{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}})
	got := newMemStore()
	a, err := Dial(ctx, addr, ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH", Proposals: props, Store: got, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(ctx)

	// C-FIND: the studies of one patient.
	patient := arch.insts[0].attrs[tag.PatientID]
	var studies []string
	for ds, err := range a.Find(ctx, StudyRootFind, ident(t, "STUDY", tag.PatientID, patient, tag.StudyInstanceUID, "")) {
		if err != nil {
			t.Fatal(err)
		}
		studies = append(studies, stringValue(ds, tag.StudyInstanceUID))
	}
	sort.Strings(studies)
	if want := distinctOf(arch.selectInsts(tag.PatientID, patient), tag.StudyInstanceUID); strings.Join(studies, ",") != strings.Join(want, ",") {
		t.Fatalf("C-FIND: %v, want %v", studies, want)
	}

	// Breaking out of a C-FIND cancels it (the handler sees its context
	// end); the association stays usable.
	arch.gate = make(chan struct{})
	n := 0
	for _, err := range a.Find(ctx, StudyRootFind, ident(t, "IMAGE", tag.SOPInstanceUID, "")) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 1 {
			break
		}
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("C-ECHO after a cancelled C-FIND: %v", err)
	}
	arch.mu.Lock()
	if arch.cancelled != 1 {
		t.Fatalf("the cancelled C-FIND's handler saw %d cancellations", arch.cancelled)
	}
	arch.gate = nil
	arch.mu.Unlock()

	// C-MOVE of a study to ourselves.
	study := arch.insts[len(arch.insts)-1].attrs[tag.StudyInstanceUID]
	want := arch.selectInsts(tag.StudyInstanceUID, study)
	var progress []Progress
	res, err := a.Move(ctx, StudyRootMove, "MEDMESH", ident(t, "STUDY", tag.StudyInstanceUID, study), func(p Progress) { progress = append(progress, p) })
	if err != nil || res.Completed != len(want) || res.Failed != 0 {
		t.Fatalf("C-MOVE: %+v, %v; want %d completed", res, err, len(want))
	}
	if len(progress) != len(want) || progress[0].Remaining != len(want)-1 {
		t.Errorf("C-MOVE pending responses: %+v", progress)
	}
	for _, in := range want {
		b, req, ok := dest.get(in.attrs[tag.SOPInstanceUID])
		if !ok || !bytes.Equal(b, in.data) || req.MoveOriginatorAE != "SCU" {
			t.Errorf("C-MOVE: %s: stored %v, equal %v, move originator %q", in.path, ok, bytes.Equal(b, in.data), req.MoveOriginatorAE)
		}
	}

	// C-GET of a patient, back on this association.
	want = arch.selectInsts(tag.PatientID, patient)
	res, err = a.Get(ctx, StudyRootGet, ident(t, "STUDY", tag.StudyInstanceUID, want[0].attrs[tag.StudyInstanceUID]), nil)
	want = arch.selectInsts(tag.StudyInstanceUID, want[0].attrs[tag.StudyInstanceUID])
	if err != nil || res.Completed != len(want) {
		t.Fatalf("C-GET: %+v, %v; want %d completed", res, err, len(want))
	}
	for _, in := range want {
		if b, _, ok := got.get(in.attrs[tag.SOPInstanceUID]); !ok || !bytes.Equal(b, in.data) {
			t.Errorf("C-GET: %s: received %v, equal %v", in.path, ok, bytes.Equal(b, in.data))
		}
	}

	// An unknown destination is a *Status error with 0xA801.
	_, err = a.Move(ctx, StudyRootMove, "NOWHERE", ident(t, "STUDY", tag.StudyInstanceUID, study), nil)
	var st *Status
	if !errors.As(err, &st) || st.Code != StatusMoveDestinationUnknown {
		t.Fatalf("C-MOVE to an unknown destination: %v", err)
	}
	// A store the peer fails is reported per sub-operation.
	dest.fail = func(r *StoreRequest) error { return NewStatus(StatusOutOfResources, "full") }
	res, err = a.Move(ctx, StudyRootMove, "MEDMESH", ident(t, "STUDY", tag.StudyInstanceUID, study), nil)
	if err != nil || res.Status.Code != StatusSubOpsWarning || res.Failed != len(arch.selectInsts(tag.StudyInstanceUID, study)) || len(res.FailedSOPInstanceUIDs) != res.Failed {
		t.Fatalf("C-MOVE with failing stores: %+v %v", res, err)
	}
	// A query model the peer did not accept fails before anything is sent.
	if _, err := a.Move(ctx, PatientRootMove, "MEDMESH", ident(t, "PATIENT"), nil); !errors.As(err, new(*NoContextError)) {
		t.Fatalf("C-MOVE on a model not negotiated: %v", err)
	}
}

package dimse

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// sendFiles stores the files with our Client over one association.
func sendFiles(t *testing.T, addr, calledAE string, files []testFile) {
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
	a, err := Dial(ctx, addr, ClientOptions{CallingAE: "MEDMESHSCU", CalledAE: calledAE, Proposals: StorageProposals(params), Logger: testLogger(t)})
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

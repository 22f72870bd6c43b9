package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// rawUpload posts body to the add endpoint with the given Content-Length
// (-1: chunked), as a client other than the CLI might.
func rawUpload(t *testing.T, base, token string, body io.Reader, length int64) (*http.Response, api.AddResult) {
	t.Helper()
	req, err := http.NewRequest("POST", base+api.Prefix+"/records?name=x.txt&replicas=1", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.ContentLength = length
	if length < 0 {
		req.TransferEncoding = []string{"chunked"}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, api.AddResult{}
	}
	defer resp.Body.Close()
	var res api.AddResult
	json.NewDecoder(resp.Body).Decode(&res)
	return resp, res
}

// TestUploadLengths: an empty upload is an empty record whether it says
// Content-Length: 0 or comes chunked; a chunked upload of unknown length is
// stored whole; a chunked upload cut off before its last chunk stores
// nothing.
func TestUploadLengths(t *testing.T) {
	n, _ := startNet(t, "A")
	A := n.Nodes[0]
	base, token := A.API.Base, A.API.Token

	for name, length := range map[string]int64{"content-length 0": 0, "chunked": -1} {
		var body io.Reader = http.NoBody
		if length < 0 {
			body = io.MultiReader() // a reader of unknown length with nothing in it
		}
		resp, res := rawUpload(t, base, token, body, length)
		if resp == nil || resp.StatusCode != http.StatusOK || res.ID == "" || res.Size != 0 {
			t.Fatalf("%s empty upload: %v %+v", name, resp, res)
		}
		if got, err := get(A, res.ID, 0); err != nil || len(got) != 0 {
			t.Fatalf("%s empty record read back: %d bytes, %v", name, len(got), err)
		}
	}

	data := randomBytes(3<<20 + 7)
	resp, res := rawUpload(t, base, token, io.MultiReader(bytes.NewReader(data)), -1)
	if resp == nil || resp.StatusCode != http.StatusOK || res.Size != int64(len(data)) {
		t.Fatalf("chunked upload: %v %+v", resp, res)
	}
	if got, err := get(A, res.ID, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("chunked record read back: %v", err)
	}

	// A chunked body that ends without its last chunk: nothing is stored.
	before := countBlocks(t, A)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(randomBytes(2 << 20))
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}()
	if resp, _ := rawUpload(t, base, token, pr, -1); resp != nil && resp.StatusCode == http.StatusOK {
		t.Fatal("truncated chunked upload accepted")
	}
	var recs []api.Record
	deadline := time.Now().Add(10 * time.Second)
	for countBlocks(t, A) != before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // the handler's rollback runs after the connection drops
	}
	if after := countBlocks(t, A); after != before {
		t.Fatalf("truncated chunked upload left %d blocks", after-before)
	}
	if err := A.API.Do(context.Background(), "GET", api.Prefix+"/records", nil, &recs); err != nil || len(recs) != 3 {
		t.Fatalf("ls: %v %d records, want 3", err, len(recs))
	}
}

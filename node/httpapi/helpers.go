package httpapi

import (
	"io"
	"net/http"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
)

// Reply writes v as JSON with status 200, or err as a JSON error with its
// status.
func Reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		api.Fail(w, err)
		return
	}
	api.JSON(w, http.StatusOK, v)
}

// PathCID parses the record ID in path element name.
func PathCID(r *http.Request, name string) (cid.Cid, error) {
	c, err := cid.Decode(r.PathValue(name))
	if err != nil {
		return cid.Undef, fault.Invalidf("record IDs look like bafkrei…", "%q is not a record ID: %v", r.PathValue(name), err)
	}
	return c, nil
}

// PathPeer parses the peer ID in path element name.
func PathPeer(r *http.Request, name string) (peer.ID, error) {
	p, err := peer.Decode(r.PathValue(name))
	if err != nil {
		return "", fault.Invalidf("peer IDs look like 12D3KooW…", "%q is not a peer ID", r.PathValue(name))
	}
	return p, nil
}

// UploadBody accepts an upload whose end is known, so a truncated upload is
// caught: net/http reports a body shorter than its Content-Length, or a
// chunked body without its final chunk, as an error. An empty upload
// (Content-Length: 0) is an empty file. (net/http moves Transfer-Encoding
// out of the header map into r.TransferEncoding.)
func UploadBody(r *http.Request) (io.Reader, error) {
	if r.ContentLength < 0 && !slices.Contains(r.TransferEncoding, "chunked") {
		return nil, fault.Invalidf("send Content-Length, or the body chunked", "upload without a length")
	}
	return r.Body, nil
}

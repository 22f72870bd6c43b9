package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Client calls a node's API.
type Client struct {
	Base  string // http://127.0.0.1:PORT
	Token string
	HTTP  *http.Client
}

// NewClient returns a client of the API at addr (host:port) with token.
func NewClient(addr, token string) *Client {
	return &Client{Base: "http://" + addr, Token: token, HTTP: &http.Client{}}
}

// ErrNoDaemon means no daemon is running for the repo.
var ErrNoDaemon = errors.New("no medmesh daemon is running for this repo")

// ClientForRepo finds the running daemon of the repo in dir through the
// repo's api file (written by the daemon when it is ready).
func ClientForRepo(dir string) (*Client, error) {
	addr, err := os.ReadFile(filepath.Join(dir, "api"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (start one with `medmesh daemon --repo %s`)", ErrNoDaemon, dir)
	}
	if err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(dir, "api.token"))
	if err != nil {
		return nil, fmt.Errorf("read API token: %w", err)
	}
	return NewClient(strings.TrimSpace(string(addr)), strings.TrimSpace(string(tok))), nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	return req, nil
}

// Do sends in as JSON (if not nil) and decodes the answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Upload streams body (of the given size, -1 if unknown) to path.
func (c *Client) Upload(ctx context.Context, path string, body io.Reader, size int64, out any) error {
	if size == 0 {
		// net/http sends a body whose length is 0 with an unknown length
		// (chunked) unless it is http.NoBody: say "Content-Length: 0".
		body = http.NoBody
	}
	req, err := c.newRequest(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// Stream is a download in progress.
type Stream struct {
	// Body is the content; read it to the end, then call Finish.
	Body io.Reader
	// Size is the announced plaintext size, or -1 if unknown.
	Size int64
	// Name is the record's name from its manifest, as the daemon sent it
	// (Content-Disposition), or "". It comes from the record's owner: use
	// SafeFileName before making a path of it.
	Name string
	resp *http.Response
	n    int64
}

func (s *Stream) Read(b []byte) (int, error) {
	n, err := s.resp.Body.Read(b)
	s.n += int64(n)
	return n, err
}

// Finish closes the stream and returns an error unless the whole body was
// read and the server confirmed in the trailer that it is complete and
// verified.
func (s *Stream) Finish() error {
	defer s.resp.Body.Close()
	if _, err := io.Copy(io.Discard, s.resp.Body); err != nil {
		return fmt.Errorf("download interrupted after %d bytes: %w", s.n, err)
	}
	if res := s.resp.Trailer.Get(TrailerResult); res != "ok" {
		return &IncompleteError{Result: res}
	}
	return nil
}

// IncompleteError means the daemon did not confirm a download as complete
// and verified: what was received must be discarded.
type IncompleteError struct {
	// Result is the daemon's trailer ("" if it sent none: the stream broke).
	Result string
}

// TrailerVerifyFailed starts the trailer of a download whose content failed
// verification (as opposed to one that was cut short).
const TrailerVerifyFailed = "record failed verification"

func (e *IncompleteError) Error() string {
	if e.Result == "" {
		return "the daemon did not confirm the download"
	}
	return e.Result
}

// VerifyFailed reports whether the content failed verification.
func (e *IncompleteError) VerifyFailed() bool {
	return strings.HasPrefix(e.Result, TrailerVerifyFailed)
}

// Close abandons the download: the rest of the body is not read.
func (s *Stream) Close() error { return s.resp.Body.Close() }

// Open starts a download of path.
func (c *Client) Open(ctx context.Context, path string) (*Stream, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	s := &Stream{resp: resp, Size: -1}
	s.Body = s
	if v, err := strconv.ParseInt(resp.Header.Get(HeaderSize), 10, 64); err == nil && v >= 0 {
		s.Size = v
	}
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		s.Name = params["filename"]
	}
	return s, nil
}

// Download streams path into w and returns an error unless the server
// confirmed in the trailer that what it sent is complete and verified.
func (c *Client) Download(ctx context.Context, path string, w io.Writer) (int64, error) {
	s, err := c.Open(ctx, path)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(w, s.Body); err != nil {
		s.resp.Body.Close()
		return s.n, fmt.Errorf("download interrupted after %d bytes: %w", s.n, err)
	}
	return s.n, s.Finish()
}

// DownloadRaw streams path into w without expecting a trailer (metrics, DICOM).
func (c *Client) DownloadRaw(ctx context.Context, path string, w io.Writer) error {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v (start one with `medmesh daemon`)", ErrNoDaemon, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return nil, &RemoteError{Status: resp.StatusCode, E: e}
	}
	return resp, nil
}

// RemoteError is an error the daemon returned.
type RemoteError struct {
	Status int
	E      Error
}

// Hint says what to do about it ("" if the daemon gave none).
func (e *RemoteError) Hint() string { return e.E.Hint }

func (e *RemoteError) Error() string {
	if e.E.Hint != "" {
		return e.E.Error + " (" + e.E.Hint + ")"
	}
	return e.E.Error
}

// SafeFileName turns a record's name, which its owner chose, into the name
// of a file in a directory: the last element of the path, without control
// characters, never "." or "..". It returns "" when nothing usable is left.
func SafeFileName(name string) string {
	name = strings.TrimRight(name, "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if name == "." || name == ".." || len(name) > 255 || !utf8.ValidString(name) {
		return ""
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return ""
		}
	}
	return name
}

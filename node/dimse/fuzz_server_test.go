package dimse

import (
	"bytes"
	"context"
	"io"
	"iter"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	lib "github.com/suyashkumar/dicom"
)

// panicCatcher is a slog handler that remembers any record mentioning a
// panic (the server turns handler panics into logs; under fuzzing, a panic
// of ours must fail the target).
type panicCatcher struct {
	mu  sync.Mutex
	msg string
}

func (p *panicCatcher) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicCatcher) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicCatcher) WithGroup(string) slog.Handler            { return p }
func (p *panicCatcher) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		var sb strings.Builder
		sb.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { sb.WriteString(" " + a.String()); return true })
		p.msg = sb.String()
		p.mu.Unlock()
	}
	return nil
}

// nullQR answers queries with one match and retrievals with nothing.
type nullQR struct{}

func (nullQR) Find(ctx context.Context, req *QueryRequest) iter.Seq2[*lib.Dataset, error] {
	return func(yield func(*lib.Dataset, error) bool) { yield(req.Identifier, nil) }
}
func (nullQR) Move(ctx context.Context, req *QueryRequest) (*Retrieval, error) {
	return &Retrieval{}, nil
}
func (nullQR) Get(ctx context.Context, req *QueryRequest) (*Retrieval, error) {
	return &Retrieval{}, nil
}

type discardStore struct{}

func (discardStore) Store(ctx context.Context, req *StoreRequest, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// FuzzServerStream feeds a byte stream, as a peer would send it, to one
// association of our SCP (all handlers set): the upper layer, the state
// machine, message assembly, command and identifier decoding and the
// operations must neither panic nor hang. Seeds: whole client streams of
// dcmtk's tools and Orthanc.
func FuzzServerStream(f *testing.F) {
	for _, b := range loadSeeds(f, ".c2s") {
		f.Add(b)
	}
	catcher := &panicCatcher{}
	s, err := NewServer(ServerOptions{AETitle: "MEDMESH", Allowed: mustCallers(f, "DCMTK@*", "ORTHANC@*", "MEDMESH@*"),
		Store: discardStore{}, Find: nullQR{}, Move: nullQR{}, Get: nullQR{},
		Destinations: []Destination{{AETitle: "DEST", Addr: "127.0.0.1:1"}},
		Timeouts:     Timeouts{ARTIM: 100 * time.Millisecond, DIMSE: 100 * time.Millisecond, Idle: 100 * time.Millisecond},
		Logger:       slog.New(catcher)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		done := make(chan struct{})
		go func() {
			s.ServeConn(&streamConn{r: bytes.NewReader(b)})
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			panic("the server did not finish an association within 20 s")
		}
		catcher.mu.Lock()
		defer catcher.mu.Unlock()
		if catcher.msg != "" {
			t.Fatal(catcher.msg)
		}
	})
}

// streamConn is a connection whose peer sends a fixed byte stream, then
// half-closes; what the server writes is discarded.
type streamConn struct {
	r *bytes.Reader
}

func (c *streamConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *streamConn) Close() error                { return nil }
func (c *streamConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 104} }
func (c *streamConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

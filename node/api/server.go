package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/medmesh/medmesh/internal/fault"
)

// StatusError is an error with an HTTP status and a hint for the operator.
type StatusError struct {
	Code int
	Msg  string
	Hint string
	Err  error
}

func (e *StatusError) Error() string {
	if e.Err != nil && e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *StatusError) Unwrap() error { return e.Err }

// Errorf makes a StatusError.
func Errorf(code int, hint, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &StatusError{Code: code, Msg: err.Error(), Hint: hint, Err: errors.Unwrap(err)}
}

// Server is the HTTP API server.
type Server struct {
	mux    *http.ServeMux
	token  string
	log    *slog.Logger
	srv    *http.Server
	ln     net.Listener
	public map[string]bool
	// cors: path prefixes browsers of these origins may call (CORS).
	cors []corsRule
	// observe, when set, is told of every request once it is answered.
	observe func(method, pattern string, code int, d time.Duration)
	// browser serves the paths under browserPrefix without the token
	// (Browser).
	browser       http.Handler
	browserPrefix string
}

// Browser mounts h for the paths under prefix (such as "/ui/", and the
// prefix without its slash): a browser's pages, which cannot carry the
// bearer token. Requests there pass the loopback Host check but not the
// token check; h authenticates them itself (the console's session cookie)
// and serves nothing without it. No other path is reachable without the
// token: the API's routes never see a request Browser's prefix took, and h
// is asked only for paths under the prefix. One prefix per server; call it
// before Serve.
func (s *Server) Browser(prefix string, h http.Handler) {
	if s.browser != nil {
		panic("api: Browser called twice")
	}
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || len(prefix) < 3 || strings.HasPrefix(prefix, Prefix) {
		panic("api: Browser prefix must look like /ui/, outside " + Prefix)
	}
	s.browser, s.browserPrefix = h, prefix
}

// forBrowser reports whether a request's path is under Browser's prefix.
func (s *Server) forBrowser(r *http.Request) bool {
	if s.browser == nil {
		return false
	}
	p := r.URL.Path
	return strings.HasPrefix(p, s.browserPrefix) || p == strings.TrimSuffix(s.browserPrefix, "/")
}

// Observe sets fn to be told of every request once it is answered: its
// method, the route pattern that served it ("/api/v1/records/{id}"; ""
// when none matched) and status, and how long it took (metrics). Call it
// before Serve.
func (s *Server) Observe(fn func(method, pattern string, code int, d time.Duration)) { s.observe = fn }

// corsRule lets pages of origins call paths under prefix from a browser.
type corsRule struct {
	prefix  string
	origins map[string]bool
}

// AllowOrigins lets web pages of origins (scheme://host[:port]) call the
// paths under prefix from a browser (CORS): their preflight requests
// (which carry no token) are answered, and responses name them in
// Access-Control-Allow-Origin. Requests still need the token. Call it
// before Serve.
func (s *Server) AllowOrigins(prefix string, origins []string) {
	if len(origins) == 0 {
		return
	}
	r := corsRule{prefix: prefix, origins: map[string]bool{}}
	for _, o := range origins {
		r.origins[strings.TrimRight(o, "/")] = true
	}
	s.cors = append(s.cors, r)
}

// corsHeaders sets the CORS response headers for an allowed origin; ok
// says whether the request came from one (or is not cross-origin).
func (s *Server) corsHeaders(w http.ResponseWriter, r *http.Request) (preflight, allowed bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false, true
	}
	for _, c := range s.cors {
		if !strings.HasPrefix(r.URL.Path, c.prefix) || !c.origins[origin] {
			continue
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Warning, Content-Type, Content-Length, Content-Location, WWW-Authenticate")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept")
			h.Set("Access-Control-Max-Age", "600")
			if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
				// Chrome's Private Network Access: a page on the
				// internet calling a loopback service.
				h.Set("Access-Control-Allow-Private-Network", "true")
			}
			return true, true
		}
		return false, true
	}
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "", false
}

// NewServer makes a server that checks token on every call.
func NewServer(token string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{mux: http.NewServeMux(), token: token, log: log, public: map[string]bool{}}
}

// Handle registers a handler for a pattern such as "GET /api/v1/records/{id}".
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFunc registers a handler function.
func (s *Server) HandleFunc(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// ServeHTTP applies the loopback Host check and token check, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: 200}
	if s.observe != nil {
		defer func() {
			pattern := r.Pattern
			if pattern == "" && s.forBrowser(r) {
				pattern = s.browserPrefix // one series for the pages
			} else if pattern == "" {
				_, pattern = s.mux.Handler(r) // refused before routing
			}
			if _, path, ok := strings.Cut(pattern, " "); ok {
				pattern = path
			}
			s.observe(r.Method, pattern, sw.code, time.Since(start))
		}()
	}
	w = sw
	// No answer of the API is a page to render or frame: a browser that is
	// sent one (a link, an iframe) runs nothing in it and sniffs no other
	// type. Browser's handler sets its pages' own policy.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// DNS-rebinding defence: a browser tricked into calling us carries a
	// foreign Host header. Only loopback names are ours.
	if !loopbackHost(r.Host) {
		Fail(w, Errorf(http.StatusForbidden, "call the API at 127.0.0.1", "host %q is not a loopback address", r.Host))
		return
	}
	if s.forBrowser(r) {
		s.browser.ServeHTTP(sw, r)
		return
	}
	if len(s.cors) > 0 {
		// A preflight carries no token: an allowed origin's is answered
		// here, anyone else's refused; the request itself is checked below.
		switch preflight, allowed := s.corsHeaders(w, r); {
		case preflight && allowed:
			w.WriteHeader(http.StatusNoContent)
			return
		case preflight:
			Fail(w, Errorf(http.StatusForbidden, "add the origin to dicomweb.cors_origins", "origin %q may not call %s from a browser", r.Header.Get("Origin"), r.URL.Path))
			return
		}
	}
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="medmesh"`)
		Fail(w, Errorf(http.StatusUnauthorized, "send `Authorization: Bearer <token>` with the token from the repo's api.token file", "missing or wrong API token"))
		return
	}
	s.mux.ServeHTTP(sw, r)
	s.log.Debug("api", "method", r.Method, "path", r.URL.Path, "status", sw.code, "dur", time.Since(start))
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(c int) { s.code = c; s.ResponseWriter.WriteHeader(c) }
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Listen binds the API address (which must be loopback; repo validates it).
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("API listen on %s: %w (is another daemon running? choose another --api port)", addr, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("API address %s is not loopback", ln.Addr())
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return ln.Addr(), nil
}

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting calls and waits for those under way.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// JSON writes v as the response. Lists (nil slices and maps included) are
// written as [] and {}, never null.
func JSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(EmptyLists(v))
}

// Fail writes err as a JSON error with its status (StatusOf) and hint.
func Fail(w http.ResponseWriter, err error) {
	e := Error{Error: err.Error(), Hint: fault.HintOf(err)}
	var se *StatusError
	if errors.As(err, &se) && se.Hint != "" {
		e.Hint = se.Hint
	}
	JSON(w, StatusOf(err), e)
}

// StatusOf is the HTTP status of an error: a StatusError's own, else the
// status of its fault kind (internal/fault).
func StatusOf(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	switch fault.KindOf(err) {
	case fault.Invalid:
		return http.StatusBadRequest
	case fault.NotFound:
		return http.StatusNotFound
	case fault.Forbidden:
		return http.StatusForbidden
	case fault.Conflict:
		return http.StatusConflict
	case fault.TooLarge:
		return http.StatusRequestEntityTooLarge
	case fault.Unavailable:
		if errors.Is(err, context.DeadlineExceeded) {
			return http.StatusGatewayTimeout
		}
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Decode reads a JSON request body strictly (at most 1 MiB).
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, "", "bad request body: %v", err)
	}
	return nil
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func startServer(t *testing.T) (*Server, *Client) {
	t.Helper()
	s := NewServer("secret-token", nil)
	s.HandleFunc("GET /api/v1/ping", func(w http.ResponseWriter, r *http.Request) {
		JSON(w, 200, map[string]string{"pong": "yes"})
	})
	s.HandleFunc("GET /api/v1/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", TrailerResult)
		io.WriteString(w, "hello")
		if r.URL.Query().Get("fail") != "" {
			w.Header().Set(TrailerResult, "plaintext hash mismatch")
			return
		}
		w.Header().Set(TrailerResult, "ok")
	})
	s.HandleFunc("POST /api/v1/up", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			Fail(w, Errorf(400, "", "upload truncated: %v", err))
			return
		}
		JSON(w, 200, map[string]int{"n": len(b)})
	})
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, &Client{Base: "http://" + addr.String(), Token: "secret-token", HTTP: &http.Client{}}
}

func TestTokenRequired(t *testing.T) {
	_, c := startServer(t)
	var out map[string]string
	if err := c.Do(context.Background(), "GET", "/api/v1/ping", nil, &out); err != nil || out["pong"] != "yes" {
		t.Fatalf("good token: %v %v", out, err)
	}
	bad := *c
	bad.Token = "wrong"
	err := bad.Do(context.Background(), "GET", "/api/v1/ping", nil, &out)
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != 401 || !strings.Contains(err.Error(), "api.token") {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestForeignHostRefused(t *testing.T) {
	_, c := startServer(t)
	req, _ := http.NewRequest("GET", c.Base+"/api/v1/ping", nil)
	req.Host = "evil.example:80"
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
}

func TestDownloadTrailer(t *testing.T) {
	_, c := startServer(t)
	var buf bytes.Buffer
	if _, err := c.Download(context.Background(), "/api/v1/stream", &buf); err != nil || buf.String() != "hello" {
		t.Fatalf("%q %v", buf.String(), err)
	}
	if _, err := c.Download(context.Background(), "/api/v1/stream?fail=1", io.Discard); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Fatalf("unconfirmed download accepted: %v", err)
	}
}

func TestListenRefusesPublic(t *testing.T) {
	s := NewServer("t", nil)
	if _, err := s.Listen("0.0.0.0:0"); err == nil {
		t.Fatal("listened on a public address")
	}
}

func TestNoDaemon(t *testing.T) {
	if _, err := ClientForRepo(t.TempDir()); !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "medmesh daemon") {
		t.Fatalf("got %v", err)
	}
}

// TestJSONListsNeverNull: every answer prints lists as [] (and maps as
// {}), however the handler built them, without touching the handler's
// values; absent times print as null.
func TestJSONListsNeverNull(t *testing.T) {
	type inner struct {
		Peers []string       `json:"peers"`
		When  NullTime       `json:"when"`
		Raw   []byte         `json:"raw"`
		M     map[string]int `json:"m"`
	}
	type outer struct {
		Items []inner  `json:"items"`
		P     *inner   `json:"p"`
		Any   any      `json:"any"`
		Nil   *inner   `json:"nil"`
		Names []string `json:"names"`
	}
	in := &outer{Items: []inner{{}}, P: &inner{}, Any: inner{}}
	rec := httptest.NewRecorder()
	JSON(rec, 200, in)
	got := rec.Body.String()
	for _, bad := range []string{`"peers": null`, `"names": null`, `"m": null`, `"items": null`, "0001-01-01"} {
		if strings.Contains(got, bad) {
			t.Errorf("%s in %s", bad, got)
		}
	}
	for _, want := range []string{`"peers": []`, `"names": []`, `"m": {}`, `"when": null`, `"nil": null`, `"raw": null`} {
		if !strings.Contains(got, want) {
			t.Errorf("no %s in %s", want, got)
		}
	}
	if in.Names != nil || in.P.Peers != nil || in.Items[0].Peers != nil {
		t.Error("JSON modified the handler's values")
	}
	var rt outer
	if err := json.Unmarshal(rec.Body.Bytes(), &rt); err != nil || !rt.Items[0].When.IsZero() {
		t.Errorf("round trip: %v %+v", err, rt)
	}
}

// TestBrowserPrefix: Browser's handler alone answers its prefix without
// the token (after the Host check); every other path still needs the
// token, however it is spelled; every answer says it is not a page.
func TestBrowserPrefix(t *testing.T) {
	s := NewServer("secret-token", nil)
	s.HandleFunc("GET /api/v1/ping", func(w http.ResponseWriter, r *http.Request) { JSON(w, 200, "pong") })
	s.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) { JSON(w, 200, "root") })
	s.Browser("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "browser:"+r.URL.Path)
	}))
	for _, c := range []struct {
		host, path string
		code       int
		body       string
	}{
		{"127.0.0.1:1", "/ui/", 200, "browser:/ui/"},
		{"127.0.0.1:1", "/ui", 200, "browser:/ui"},
		{"localhost", "/ui/records/x", 200, "browser:/ui/records/x"},
		{"evil.example:1", "/ui/", 403, ""},
		{"127.0.0.1:1", "/api/v1/ping", 401, ""},
		{"127.0.0.1:1", "/", 401, ""},
		{"127.0.0.1:1", "/uix", 401, ""},
		{"127.0.0.1:1", "/UI/", 401, ""},
		{"127.0.0.1:1", "//ui/", 401, ""},
		{"127.0.0.1:1", "/api/v1/../ui/", 401, ""},
	} {
		req := httptest.NewRequest("GET", "http://x"+c.path, nil)
		req.URL.Path = c.path // as the client sent it, unclean
		req.Host = c.host
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != c.code || (c.body != "" && w.Body.String() != c.body) {
			t.Errorf("%s %s: %d %q, want %d %q", c.host, c.path, w.Code, w.Body.String(), c.code, c.body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", c.path, csp)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("a second Browser prefix was accepted")
		}
	}()
	s.Browser("/other/", http.NotFoundHandler())
}

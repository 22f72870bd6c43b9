package console

import (
	"net/http"
	"path"
	"strings"
)

// csp is every console answer's Content-Security-Policy: only the
// console's own files, no inline script or style (the templates have
// none), no plugins, no framing, forms only to the console, and DOM sinks
// that take strings refused (the script builds nodes, it never parses
// HTML).
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'none'; " +
	"object-src 'none'; media-src 'none'; worker-src 'none'; manifest-src 'none'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'"

// secure sets the headers of every console answer.
func secure(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer a browser sends
	// "Origin: null" with the console's own forms, which the origin check
	// below could not tell from a sandboxed page's.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	h.Set("Cache-Control", "no-store")
}

// serveBrowser is the console's front door (api.Server.Browser hands it
// the paths under /ui/ after the loopback Host check): headers, then the
// checks every request passes, then the routes.
func (k *Console) serveBrowser(w http.ResponseWriter, r *http.Request) {
	secure(w.Header())
	// One spelling per page: "/ui/records/../x" is refused, not cleaned
	// into a redirect somewhere else.
	if p := r.URL.Path; p != "/ui" && path.Clean(p) != p && path.Clean(p)+"/" != p {
		plain(w, http.StatusBadRequest, "bad path")
		return
	}
	if !sameOrigin(r) {
		plain(w, http.StatusForbidden, "the console answers only its own pages")
		return
	}
	k.mux.ServeHTTP(w, r)
}

// sameOrigin applies the browser's fetch metadata (and Origin): requests
// another site — or another program on another port of 127.0.0.1, which
// SameSite counts as the same site — makes are refused, except a plain
// navigation to a page (a link), which does nothing but show it.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && o != "http://"+r.Host {
		return false
	}
	if o := r.Header.Get("Origin"); o == "null" && r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get("Sec-Fetch-Site") != "same-origin" {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Sec-Fetch-Mode") == "navigate" &&
		r.Header.Get("Sec-Fetch-Dest") == "document"
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}

// wantsJSON reports whether the console's script made the request (it asks
// for JSON answers instead of pages and redirects).
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

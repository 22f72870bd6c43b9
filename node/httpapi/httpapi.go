// Package httpapi is the node's HTTP layer: it maps the API's routes
// (/api/v1/..., see node/api) to the services that do the work, and the
// services' errors (internal/fault kinds) to HTTP statuses. The services
// never see HTTP; the daemon (the composition root) builds them and mounts
// one Area per concern here. Protocols with HTTP of their own (DICOMweb,
// FHIR, the console) are Areas in packages beside this one.
//
// Every Area declares the small interface it needs from its service, so
// handlers are tested, and services replaced, without the rest of the node.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/medmesh/medmesh/node/api"
)

// Mux is where an Area registers its routes ("GET /api/v1/records/{id}"
// patterns, as net/http.ServeMux takes them).
type Mux interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h http.HandlerFunc)
}

// An Area serves the routes of one concern.
type Area interface {
	Routes(m Mux)
}

// A BrowserArea also serves the pages a browser loads under its prefix
// (the console, node/console): they authenticate by the area's own session,
// not the bearer token, which a browser cannot send (api.Server.Browser).
// At most one area of a server is one.
type BrowserArea interface {
	Area
	Browser() (prefix string, h http.Handler)
}

// New returns the API server (loopback only, bearer token; node/api.Server)
// with every area's routes.
func New(token string, log *slog.Logger, areas ...Area) *api.Server {
	s := api.NewServer(token, log)
	for _, a := range areas {
		a.Routes(s)
		if b, ok := a.(BrowserArea); ok {
			s.Browser(b.Browser())
		}
	}
	return s
}

// p is the API's path prefix.
const p = api.Prefix

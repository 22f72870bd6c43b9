package httpapi

import (
	"context"
	"net/http"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
)

// ImplantService is what the implant routes need (node/implants.Service).
type ImplantService interface {
	Register(ctx context.Context, req api.ImplantRegisterRequest) (*api.ImplantDevice, error)
	Transfer(ctx context.Context, id cid.Cid, req api.ImplantTransferRequest) (*api.ImplantDevice, error)
	Use(ctx context.Context, id cid.Cid, req api.ImplantUseRequest) (*api.ImplantDevice, error)
	Explant(ctx context.Context, id cid.Cid) (*api.ImplantDevice, error)
	Device(ctx context.Context, id cid.Cid, history bool) (*api.ImplantDevice, error)
	Devices(ctx context.Context) ([]api.ImplantDevice, error)
	Recall(ctx context.Context, req api.ImplantRecallRequest) (*api.ImplantRecall, error)
	// Recalls lists recalls with the devices they cover (only this node's
	// if mine is set).
	Recalls(ctx context.Context, mine bool) ([]api.ImplantRecall, error)
	Authorize(ctx context.Context, req api.ImplantAuthorizeRequest) (*api.ImplantAuthorization, error)
	Manufacturers(ctx context.Context) ([]api.ImplantAuthorization, error)
}

// Implants serves `medmesh implant ...` (/api/v1/implants).
type Implants struct{ S ImplantService }

// Routes implements Area.
func (a Implants) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/implants", serve(func(r *http.Request) (any, error) {
		var req api.ImplantRegisterRequest
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return orNil(a.S.Register(r.Context(), req))
	}))
	m.HandleFunc("GET "+p+"/implants", serve(func(r *http.Request) (any, error) {
		return orNil(a.S.Devices(r.Context()))
	}))
	m.HandleFunc("GET "+p+"/implants/{id}", a.device(func(r *http.Request, id cid.Cid) (any, error) {
		return orNil(a.S.Device(r.Context(), id, true))
	}))
	m.HandleFunc("POST "+p+"/implants/{id}/transfer", a.device(func(r *http.Request, id cid.Cid) (any, error) {
		var req api.ImplantTransferRequest
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return orNil(a.S.Transfer(r.Context(), id, req))
	}))
	m.HandleFunc("POST "+p+"/implants/{id}/use", a.device(func(r *http.Request, id cid.Cid) (any, error) {
		var req api.ImplantUseRequest
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return orNil(a.S.Use(r.Context(), id, req))
	}))
	m.HandleFunc("POST "+p+"/implants/{id}/explant", a.device(func(r *http.Request, id cid.Cid) (any, error) {
		return orNil(a.S.Explant(r.Context(), id))
	}))
	m.HandleFunc("POST "+p+"/implants/recalls", serve(func(r *http.Request) (any, error) {
		var req api.ImplantRecallRequest
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return orNil(a.S.Recall(r.Context(), req))
	}))
	m.HandleFunc("GET "+p+"/implants/recalls", serve(func(r *http.Request) (any, error) {
		return orNil(a.S.Recalls(r.Context(), r.URL.Query().Get("mine") == "true"))
	}))
	m.HandleFunc("POST "+p+"/implants/manufacturers", serve(func(r *http.Request) (any, error) {
		var req api.ImplantAuthorizeRequest
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return orNil(a.S.Authorize(r.Context(), req))
	}))
	m.HandleFunc("GET "+p+"/implants/manufacturers", serve(func(r *http.Request) (any, error) {
		return orNil(a.S.Manufacturers(r.Context()))
	}))
}

// serve replies what fn returns.
func serve(fn func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		Reply(w, v, err)
	}
}

// device parses the device ID in the path and replies what fn returns.
func (a Implants) device(fn func(r *http.Request, id cid.Cid) (any, error)) http.HandlerFunc {
	return serve(func(r *http.Request) (any, error) {
		id, err := cid.Decode(r.PathValue("id"))
		if err != nil {
			return nil, fault.Invalidf("a device ID is the CID `medmesh implant register` printed (bafkrei…); `medmesh implant ls` lists them", "%q is not a device ID", r.PathValue("id"))
		}
		return fn(r, id)
	})
}

// orNil turns a typed nil pointer into an untyped nil, so that Reply
// writes an error rather than "null".
func orNil[T any](v T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

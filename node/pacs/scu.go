package pacs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/dimse"
)

// The node as an SCU: `medmesh dicom echo` (Verify) and `medmesh dicom send`, from
// the node's AE title. They work whether or not the SCP is on.

// target is a DICOM peer: an AE title at host:port.
type target struct{ ae, addr string }

func (t target) String() string { return t.ae + "@" + t.addr }

// resolve reads "AE@host:port", or the AE title of a dicom.destinations
// entry.
func (s *Service) resolve(to string) (target, error) {
	to = strings.TrimSpace(to)
	ae, addr, ok := strings.Cut(to, "@")
	if !ok {
		for _, d := range s.set.Destinations {
			if d.AETitle == to {
				return target{d.AETitle, d.Addr}, nil
			}
		}
		return target{}, fault.Invalidf("write AE@host:port (e.g. PACS@10.0.0.5:104), or name an AE of dicom.destinations",
			"%q is neither AE@host:port nor a configured destination", to)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return target{}, fault.Invalidf("write AE@host:port (e.g. PACS@10.0.0.5:104)", "%q: no host:port after the @", to)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return target{}, fault.Invalidf("write AE@host:port (e.g. PACS@10.0.0.5:104)", "%q: bad port", to)
	}
	if ae == "" || len(ae) > 16 || strings.ContainsAny(ae, `\`) || strings.TrimSpace(ae) != ae {
		return target{}, fault.Invalidf("an AE title is 1 to 16 characters, no backslash or leading/trailing spaces", "%q: bad AE title %q", to, ae)
	}
	return target{ae, addr}, nil
}

// dialErr turns an association failure into a fault with a hint.
func (s *Service) dialErr(t target, err error) error {
	var rj *dimse.RejectError
	if errors.As(err, &rj) {
		return fault.Wrap(fault.Forbidden, fmt.Sprintf("the peer must know this node as %s at this host's address (its list of modalities / AE titles)", s.set.AETitle), err)
	}
	return fault.Wrap(fault.Unavailable, "check the address and that the peer's DICOM service is running", err)
}

// Verify verifies a peer with C-ECHO.
func (s *Service) Verify(ctx context.Context, to string) (*api.DicomEchoResult, error) {
	t, err := s.resolve(to)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	a, err := dimse.Dial(ctx, t.addr, dimse.ClientOptions{CallingAE: s.set.AETitle, CalledAE: t.ae, MaxPDULength: s.set.MaxPDU,
		Timeouts: s.clientTimeouts(), Logger: s.log,
		Proposals: []dimse.Proposal{{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}}})
	if err != nil {
		return nil, s.dialErr(t, err)
	}
	if err := a.Echo(ctx); err != nil {
		a.Abort()
		return nil, fault.Wrap(fault.Unavailable, "", fmt.Errorf("C-ECHO to %s: %w", t, err))
	}
	if err := a.Release(ctx); err != nil {
		s.log.Warn("dicom: echo: release", "peer", t.String(), "err", err)
	}
	return &api.DicomEchoResult{To: t.String(), CallingAE: s.set.AETitle, Seconds: time.Since(start).Seconds()}, nil
}

func (s *Service) clientTimeouts() dimse.Timeouts {
	t := s.set.Timeouts
	t.Idle = 0 // a client waits on its own operations only
	return t
}

// Send pushes a stored study (one series if series is set) to a peer with
// C-STORE, every instance as stored (its transfer syntax; nothing is
// transcoded). Reading a granted study is claimed with purpose (the
// grant's if empty). The result lists what the peer did not store.
func (s *Service) Send(ctx context.Context, id cid.Cid, version int, series, to, purpose string) (*api.DicomSendResult, error) {
	t, err := s.resolve(to)
	if err != nil {
		return nil, err
	}
	o, err := s.img.Open(ctx, id, version, purpose)
	if err != nil {
		return nil, err
	}
	sel := o.Select(series, "")
	if len(sel) == 0 {
		return nil, fault.NotFoundf("`medmesh dicom query --study UID --json` lists the study", "study %s has no series %s", o.Study.UID, series)
	}
	start := time.Now()
	res := &api.DicomSendResult{ID: o.Info.ID.String(), StudyUID: o.Study.UID, To: t.String(), Instances: len(sel), Failed: []api.DicomSendFailure{}}
	params := make([]dimse.StoreParams, len(sel))
	for i, in := range sel {
		params[i] = dimse.StoreParams{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, TransferSyntaxUID: in.TransferSyntax}
	}
	props := dimse.StorageProposals(params)
	if len(props) > 128 {
		return nil, fault.Invalidf("send one series at a time (--series)", "the study needs %d presentation contexts; an association has 128", len(props))
	}
	a, err := dimse.Dial(ctx, t.addr, dimse.ClientOptions{CallingAE: s.set.AETitle, CalledAE: t.ae, Proposals: props,
		MaxPDULength: s.set.MaxPDU, Timeouts: s.clientTimeouts(), Logger: s.log})
	if err != nil {
		return nil, s.dialErr(t, err)
	}
	defer func() {
		if a.Err() == nil {
			a.Release(context.WithoutCancel(ctx))
		}
	}()
	for _, in := range sel {
		if err := ctx.Err(); err != nil {
			a.Abort()
			return nil, err
		}
		rc := s.img.OpenInstance(ctx, o, in)
		_, err := a.StorePart10(ctx, rc)
		rc.Close()
		if err != nil {
			res.Failed = append(res.Failed, api.DicomSendFailure{SOPInstanceUID: in.SOPInstanceUID, Error: err.Error()})
			s.m.sent.WithLabelValues("failed").Inc()
			if a.Err() != nil {
				// The association is gone: the rest cannot be sent.
				for _, rest := range sel[len(res.Failed)+res.Sent:] {
					res.Failed = append(res.Failed, api.DicomSendFailure{SOPInstanceUID: rest.SOPInstanceUID, Error: "not sent: " + a.Err().Error()})
				}
				break
			}
			continue
		}
		res.Sent++
		res.Size += o.Size(in)
		s.m.sent.WithLabelValues("completed").Inc()
	}
	s.img.ReadDone(ctx, o, purpose)
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

package daemon

import (
	"net/http"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// member returns this ledger's record of peer p as a member.
func (d *Daemon) member(p string) (ledger.Member, bool) {
	for _, m := range d.Ledger.Members() {
		if m.Peer.String() == p {
			return m, true
		}
	}
	return ledger.Member{}, false
}

// declareOrgIfNeeded states this node's organisation on the ledger (a
// member.org entry) once it is a member whose admission set none: the
// founding admin always, a member when `network invite` gave no --org. The
// organisation comes from the repo's config (`init --org`, `network create
// --org`). An organisation the admin set wins; a different configured one
// is only logged.
func (d *Daemon) declareOrgIfNeeded() {
	want := d.Repo.Config.Org
	if want == "" {
		return
	}
	m, ok := d.member(d.self.String())
	if !ok {
		return
	}
	if m.Org != "" {
		if m.Org != want {
			d.log.Warn("the ledger has another organisation for this node than its config; the admin's (or the first stated) stands",
				"ledger_org", m.Org, "config_org", want)
		}
		return
	}
	if err := ledger.CheckOrg(want); err != nil {
		d.log.Warn("not stating the configured organisation on the ledger", "err", err)
		return
	}
	if _, err := d.Ledger.Append(d.ctx, ledger.TypeMemberOrg, ledger.MemberOrgPayload{Peer: d.self, Org: want}); err != nil {
		d.log.Warn("state organisation on the ledger", "org", want, "err", err)
		return
	}
	d.log.Info("stated this node's organisation on the ledger", "org", want)
}

func (d *Daemon) memberRoutes() {
	d.api.HandleFunc("GET "+p+"/members", func(w http.ResponseWriter, r *http.Request) {
		out := []api.Member{}
		for _, m := range d.Ledger.Members() {
			roles := m.Roles
			if roles == nil {
				roles = []string{}
			}
			out = append(out, api.Member{Peer: m.Peer.String(), Org: m.Org, Roles: roles})
		}
		api.JSON(w, http.StatusOK, out)
	})
}

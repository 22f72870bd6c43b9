// Package devnet starts a small medmesh network on this machine: real
// daemons (real libp2p hosts on 127.0.0.1, real badger repos, the real API)
// in one process. The demo, the integration tests and the benchmarks use it.
package devnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/node/membership"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Node is one node of a devnet.
type Node struct {
	Name   string
	Dir    string
	ID     peer.ID
	Daemon *daemon.Daemon
	API    *api.Client
	opts   daemon.Options
}

// Net is a running devnet.
type Net struct {
	Dir   string
	Nodes []*Node
	Log   *slog.Logger
	opts  daemon.Options
}

// Options tune a devnet.
type Options struct {
	Logger  *slog.Logger
	Daemon  daemon.Options
	Timeout time.Duration // to converge; default 30s
	// Roles gives nodes, by name, extra roles when they are admitted
	// (e.g. "emergency").
	Roles map[string][]string
	// Clocks gives nodes, by name, clocks of their own (tests of clock
	// skew); the others use Daemon.Now.
	Clocks map[string]func() time.Time
}

// Start creates len(names) nodes under dir; the first creates the network
// and invites the others through its API (each joins with its token and
// bootstraps to the first). It returns once every node is a member and
// every node knows every node's key-wrapping key.
func Start(ctx context.Context, dir string, names []string, o Options) (*Net, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	o.Daemon.Logger = o.Logger
	n := &Net{Dir: dir, Log: o.Logger, opts: o.Daemon}
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	for i, name := range names {
		nd := &Node{Name: name, Dir: filepath.Join(dir, name), opts: o.Daemon}
		if c := o.Clocks[name]; c != nil {
			nd.opts.Now = c
		}
		r, err := repo.Init(nd.Dir, repo.InitOptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, API: "127.0.0.1:0", Org: name})
		if err != nil {
			return nil, err
		}
		if nd.ID, err = r.PeerID(); err != nil {
			return nil, err
		}
		if i == 0 {
			key, err := r.Identity()
			if err != nil {
				return nil, err
			}
			gen, _, err := ledger.NewGenesis(key, "devnet", time.Now(), daemon.LedgerTypes(), ledger.WithScopes())
			if err != nil {
				return nil, err
			}
			psk, _ := repo.NewPSK()
			if err := r.SetNetwork(&repo.Network{Genesis: gen, PSK: psk}); err != nil {
				return nil, err
			}
		} else {
			pid := nd.ID
			var inv api.InviteResult
			if err := n.Nodes[0].API.Do(ctx, "POST", api.Prefix+"/network/invite", api.InviteRequest{Peer: pid.String(), Org: name, Roles: o.Roles[name]}, &inv); err != nil {
				return nil, fmt.Errorf("invite %s: %w", name, err)
			}
			if _, err := membership.Join(r, inv.Token, time.Now()); err != nil {
				return nil, fmt.Errorf("%s joins: %w", name, err)
			}
		}
		if err := nd.Start(ctx); err != nil {
			return nil, err
		}
		n.Nodes = append(n.Nodes, nd)
	}
	if err := n.WaitConverged(ctx, o.Timeout); err != nil {
		return nil, err
	}
	ok = true
	return n, nil
}

// Start (re)starts a node's daemon.
func (nd *Node) Start(ctx context.Context) error {
	d, err := daemon.Start(ctx, nd.Dir, nd.opts)
	if err != nil {
		return fmt.Errorf("start %s: %w", nd.Name, err)
	}
	nd.Daemon = d
	nd.API = d.Client()
	return nil
}

// Stop stops a node's daemon (its repo stays).
func (nd *Node) Stop() error {
	if nd.Daemon == nil {
		return nil
	}
	err := nd.Daemon.Close()
	nd.Daemon = nil
	return err
}

// WaitConverged waits until every running node sees every node as a member
// with an announced key, and all running nodes have the same ledger state.
func (n *Net) WaitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if n.converged() {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("devnet did not converge: nodes do not agree on members and keys")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Net) converged() bool {
	var digest string
	for _, a := range n.Nodes {
		if a.Daemon == nil {
			continue
		}
		for _, b := range n.Nodes {
			if !a.Daemon.Ledger.IsMember(b.ID) {
				return false
			}
			if _, ok := a.Daemon.Ledger.KEMKey(b.ID); !ok {
				return false
			}
		}
		dg := string(a.Daemon.Ledger.Digest())
		if digest != "" && dg != digest {
			return false
		}
		digest = dg
	}
	return true
}

// WaitLedgerSync waits until all running nodes have the same ledger digest
// (the global scope's) and, for every other scope, the same heads on every
// running node that follows it.
func (n *Net) WaitLedgerSync(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var digest string
		same := true
		scopes := map[string]string{}
		for _, a := range n.Nodes {
			if a.Daemon == nil {
				continue
			}
			dg := string(a.Daemon.Ledger.Digest())
			if digest != "" && dg != digest {
				same = false
				break
			}
			digest = dg
			for _, s := range a.Daemon.Ledger.Followed()[1:] {
				hs, err := a.Daemon.Ledger.ScopeHeads(s)
				if err != nil {
					return err
				}
				h := fmt.Sprint(hs)
				if prev, ok := scopes[s]; ok && prev != h {
					same = false
				}
				scopes[s] = h
			}
		}
		if same {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("ledgers did not converge in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops every node.
func (n *Net) Close() error {
	var errs []error
	for i := len(n.Nodes) - 1; i >= 0; i-- {
		errs = append(errs, n.Nodes[i].Stop())
	}
	return errors.Join(errs...)
}

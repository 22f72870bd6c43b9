package daemon

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// The peer book: the last known addresses of the network's members, kept
// in the repo so a restarted node finds its peers again even when it has
// no bootstrap peer (the network's first node) or its peers' addresses
// changed since it was invited. The replication manager dials members with
// known addresses (node/replication: Manager.observe).

var peerBookKey = datastore.NewKey("/peerbook")

// peerBookTTL is how long loaded addresses stay in the peerstore.
const peerBookTTL = 7 * 24 * time.Hour

// peerBookInterval is how often the book is saved while the node runs
// (and once more at shutdown), so a killed daemon loses little.
const peerBookInterval = time.Minute

// loadPeerBook puts the saved addresses of current members into the
// peerstore.
func (d *Daemon) loadPeerBook(ctx context.Context) {
	raw, err := d.local.Get(ctx, peerBookKey)
	if err != nil {
		return
	}
	var book map[string][]string
	if err := json.Unmarshal(raw, &book); err != nil {
		d.log.Warn("peer book unreadable; starting without it", "err", err)
		return
	}
	n := 0
	for id, addrs := range book {
		p, err := peer.Decode(id)
		if err != nil || p == d.self || !d.Ledger.IsMember(p) {
			continue
		}
		var mas []multiaddr.Multiaddr
		for _, a := range addrs {
			if ma, err := multiaddr.NewMultiaddr(a); err == nil {
				mas = append(mas, ma)
			}
		}
		if len(mas) > 0 {
			d.P2P.Host.Peerstore().AddAddrs(p, mas, peerBookTTL)
			n++
		}
	}
	d.log.Debug("peer book loaded", "members", n)
}

// savePeerBook records the members' current addresses.
func (d *Daemon) savePeerBook(ctx context.Context) {
	book := map[string][]string{}
	for _, m := range d.Ledger.Members() {
		if m.Peer == d.self {
			continue
		}
		for _, a := range d.P2P.Host.Peerstore().Addrs(m.Peer) {
			book[m.Peer.String()] = append(book[m.Peer.String()], a.String())
		}
	}
	raw, err := json.Marshal(book)
	if err != nil {
		return
	}
	if err := d.local.Put(ctx, peerBookKey, raw); err != nil {
		d.log.Warn("save peer book", "err", err)
	}
}

// keepPeerBook saves the book every peerBookInterval until the node stops.
func (d *Daemon) keepPeerBook() {
	defer d.wg.Done()
	t := time.NewTicker(peerBookInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.savePeerBook(d.ctx)
		}
	}
}

package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ipnet "github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/net/pnet"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The network's pre-shared key, rotatable without restarting the host.
//
// libp2p's private networks (libp2p.PrivateNetwork) fix one key per host,
// applied by the connection upgrader. A node must switch keys when the
// admin rotates them (a member was removed), without dropping its
// services, so the node applies the same protection (libp2p's pnet: a
// 24-byte nonce each way, then XSalsa20 under the key) itself, below the
// upgrader, with the key chosen per connection from a schedule:
//
//   - an outbound connection uses the newest key whose activation time
//     has passed;
//   - an inbound connection is accepted under any key not retired yet:
//     the dialer's first bytes under the key must be multistream-select's
//     header, which libp2p's dialer always sends first, so the listener
//     tries each key on them and refuses the connection when none fits
//     (before any handshake: the removed member's key is useless).
//
// Keys received before their activation are accepted at once (a member
// that switched early reaches the others), and the previous key is
// accepted until its retirement, so nodes whose clocks or ledgers lag
// briefly still connect. Connections opened before a switch stay up: they
// were authenticated with Noise to members, and the gater closes a removed
// member's connections when its removal is applied.

// NetworkKey is one pre-shared key of the schedule.
type NetworkKey struct {
	PSK ipnet.PSK
	// From is when dialing with it starts (zero: always).
	From time.Time
	// Until is when it stops being accepted (zero: never).
	Until time.Time
}

// mssHeader is what libp2p's dialer writes first on every connection: the
// multistream-select header (length-prefixed "/multistream/1.0.0\n").
var mssHeader = []byte("\x13/multistream/1.0.0\n")

const pnetNonceSize = 24

// keyring is the node's key schedule.
type keyring struct {
	mu   sync.RWMutex
	keys []NetworkKey
	now  func() time.Time
}

func (r *keyring) set(keys []NetworkKey) {
	r.mu.Lock()
	r.keys = slices.Clone(keys)
	r.mu.Unlock()
}

// dialKey is the newest key whose activation passed (the first key if
// none did).
func (r *keyring) dialKey() ipnet.PSK {
	r.mu.RLock()
	defer r.mu.RUnlock()
	now := r.now()
	best := -1
	for i, k := range r.keys {
		if !k.From.After(now) && (best < 0 || k.From.After(r.keys[best].From) || k.From.Equal(r.keys[best].From)) {
			best = i
		}
	}
	if best < 0 {
		best = 0
	}
	return r.keys[best].PSK
}

// acceptKeys are the keys not retired yet, newest first.
func (r *keyring) acceptKeys() []ipnet.PSK {
	r.mu.RLock()
	defer r.mu.RUnlock()
	now := r.now()
	var out []ipnet.PSK
	for i := len(r.keys) - 1; i >= 0; i-- {
		if k := r.keys[i]; k.Until.IsZero() || now.Before(k.Until) {
			out = append(out, k.PSK)
		}
	}
	return out
}

// SetNetworkKeys replaces the node's pre-shared key schedule: new
// connections follow it at once (see NetworkKey).
func (n *Node) SetNetworkKeys(keys []NetworkKey) error {
	if len(keys) == 0 {
		return errors.New("p2p: no network key")
	}
	for _, k := range keys {
		if len(k.PSK) != 32 {
			return errors.New("p2p: a network key must be 32 bytes")
		}
	}
	n.keys.set(keys)
	n.log.Info("network key schedule updated", "keys", len(keys))
	return nil
}

// pskUpgrader applies the key schedule below libp2p's upgrader.
type pskUpgrader struct {
	transport.Upgrader
	keys    *keyring
	refused func()
}

func (u *pskUpgrader) Upgrade(ctx context.Context, t transport.Transport, c manet.Conn, dir network.Direction, p peer.ID, scope network.ConnManagementScope) (transport.CapableConn, error) {
	var pc net.Conn
	var err error
	if dir == network.DirOutbound {
		pc, err = pnet.NewProtectedConn(u.keys.dialKey(), c)
	} else {
		pc, err = &inboundConn{Conn: c, keys: u.keys.acceptKeys(), refused: u.refused}, nil
	}
	if err != nil {
		c.Close()
		scope.Done()
		return nil, err
	}
	return u.Upgrader.Upgrade(ctx, t, &protectedMaConn{Conn: pc, ma: c}, dir, p, scope)
}

func (u *pskUpgrader) UpgradeGatedMaListener(t transport.Transport, l transport.GatedMaListener) transport.Listener {
	return u.Upgrader.UpgradeGatedMaListener(t, &pskListener{GatedMaListener: l, u: u})
}

// pskListener protects accepted connections (the key is chosen on their
// first bytes, in the upgrade's goroutine, not in Accept).
type pskListener struct {
	transport.GatedMaListener
	u *pskUpgrader
}

func (l *pskListener) Accept() (manet.Conn, network.ConnManagementScope, error) {
	c, scope, err := l.GatedMaListener.Accept()
	if err != nil {
		return c, scope, err
	}
	return &protectedMaConn{Conn: &inboundConn{Conn: c, keys: l.u.keys.acceptKeys(), refused: l.u.refused}, ma: c}, scope, nil
}

// protectedMaConn is a protected net.Conn with the raw connection's
// multiaddrs.
type protectedMaConn struct {
	net.Conn
	ma manet.Conn
}

func (c *protectedMaConn) LocalMultiaddr() multiaddr.Multiaddr  { return c.ma.LocalMultiaddr() }
func (c *protectedMaConn) RemoteMultiaddr() multiaddr.Multiaddr { return c.ma.RemoteMultiaddr() }

// inboundConn picks, on the dialer's first bytes, the key they were
// protected with, then reads and writes under it.
type inboundConn struct {
	net.Conn
	keys    []ipnet.PSK
	refused func()

	once sync.Once
	pc   net.Conn // the protected conn under the chosen key
	err  error
}

var errNoNetworkKey = errors.New("p2p: the peer's connection is protected with no network key this node accepts (a removed member, another network, or a node that missed a key rotation)")

func (c *inboundConn) pick() {
	c.once.Do(func() {
		head := make([]byte, pnetNonceSize+len(mssHeader))
		if _, err := io.ReadFull(c.Conn, head); err != nil {
			c.err = err
			return
		}
		for _, k := range c.keys {
			pc, err := pnet.NewProtectedConn(k, &replayConn{Conn: c.Conn, pending: slices.Clone(head)})
			if err != nil {
				continue
			}
			got := make([]byte, len(mssHeader))
			if _, err := io.ReadFull(pc, got); err != nil || !bytes.Equal(got, mssHeader) {
				continue
			}
			// The header was consumed to test the key: hand it back.
			c.pc = &prefixConn{Conn: pc, pending: got}
			return
		}
		c.err = errNoNetworkKey
		if c.refused != nil {
			c.refused()
		}
		c.Conn.Close()
	})
}

func (c *inboundConn) Read(b []byte) (int, error) {
	if c.pick(); c.err != nil {
		return 0, c.err
	}
	return c.pc.Read(b)
}

func (c *inboundConn) Write(b []byte) (int, error) {
	if c.pick(); c.err != nil {
		return 0, c.err
	}
	return c.pc.Write(b)
}

// replayConn reads pending before the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// prefixConn reads pending (plaintext) before the protected stream.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

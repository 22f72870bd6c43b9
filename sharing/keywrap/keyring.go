package keywrap

import (
	"sync"
)

// Keyring is a node's key-wrapping keys: the current one, which it
// announces and new envelopes are sealed to, and the previous ones it keeps
// after a rotation (`medmesh keys rotate`) until nothing needs them. An
// envelope names the key it was sealed to (Envelope.KeyID), so opening one
// picks its key by ID. Safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	cur  *PrivateKey
	keys map[KeyID]*PrivateKey
}

// NewKeyring returns a keyring whose current key is cur.
func NewKeyring(cur *PrivateKey, old ...*PrivateKey) *Keyring {
	r := &Keyring{cur: cur, keys: map[KeyID]*PrivateKey{cur.ID(): cur}}
	for _, k := range old {
		r.keys[k.ID()] = k
	}
	return r
}

// Current is the current key.
func (r *Keyring) Current() *PrivateKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur
}

// Public is the current key's public half.
func (r *Keyring) Public() []byte { return r.Current().Public() }

// Key returns the key with ID id, current or previous.
func (r *Keyring) Key(id KeyID) (*PrivateKey, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.keys[id]
	return k, ok
}

// Rotate makes next the current key; the previous one stays in the ring.
func (r *Keyring) Rotate(next *PrivateKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur = next
	r.keys[next.ID()] = next
}

// Old lists the IDs of the previous keys.
func (r *Keyring) Old() []KeyID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []KeyID
	for id := range r.keys {
		if id != r.cur.ID() {
			out = append(out, id)
		}
	}
	return out
}

// Drop forgets a previous key (never the current one).
func (r *Keyring) Drop(id KeyID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id != r.cur.ID() {
		delete(r.keys, id)
	}
}

// Key returns p itself if its ID is id: a single key is a keyring of one.
func (p *PrivateKey) Key(id KeyID) (*PrivateKey, bool) {
	if id == p.ID() {
		return p, true
	}
	return nil, false
}

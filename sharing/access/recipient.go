package access

import (
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// A Recipient is one use of a record's data key: the owner's own copy, a
// grant to a member for a purpose, or an emergency escrow to an authority.
// Like age's Recipient and Identity, it wraps the key to a public key and
// unwraps it with the matching private key; what it adds is the binding:
// the string bound into HPKE's info, so that an envelope moved to another
// record, grantee, purpose or use does not open.
//
// The binding strings are a contract every node must agree on (an owner
// wraps, a grantee unwraps, on different nodes and versions): they are
// defined here once, and recipient_test.go pins their exact bytes.
type Recipient struct {
	use  string // "owner", "grant" or "emergency"
	info []byte
}

// OwnerRecipient is the owner's own envelope of record (kept by the owner
// and announced with the record, so the owner can read it back).
func OwnerRecipient(record cid.Cid) Recipient {
	return Recipient{use: "owner", info: keywrap.Info("owner", record.String())}
}

// GrantRecipient is grantee's envelope of record under a grant for
// purpose.
func GrantRecipient(record cid.Cid, grantee peer.ID, purpose string) Recipient {
	return Recipient{use: "grant", info: keywrap.Info("grant", record.String(), grantee.String(), purpose)}
}

// EscrowRecipient is emergency authority's escrow envelope of record
// (published on the record's announcement when its owner opted into
// break-glass access).
func EscrowRecipient(record cid.Cid, authority peer.ID) Recipient {
	return Recipient{use: "emergency", info: keywrap.Info("emergency", record.String(), authority.String())}
}

// NetworkKeyRecipient is member's envelope of the network's pre-shared key
// of epoch epoch (a network.key entry, sharing/netkey), in network (the
// genesis CID).
func NetworkKeyRecipient(network cid.Cid, epoch uint64, member peer.ID) Recipient {
	return Recipient{use: "network-key", info: keywrap.Info("network-key", network.String(), fmt.Sprint(epoch), member.String())}
}

// Info returns the bytes bound into HPKE's info parameter.
func (r Recipient) Info() []byte { return append([]byte(nil), r.info...) }

// String names the use, for errors and logs.
func (r Recipient) String() string { return r.use + " envelope" }

// Wrap seals key to the recipient public key pub and returns the encoded
// envelope.
func (r Recipient) Wrap(pub, key []byte) ([]byte, error) {
	if r.info == nil {
		return nil, fmt.Errorf("wrap: zero Recipient")
	}
	env, err := keywrap.Wrap(pub, key, r.info)
	if err != nil {
		return nil, fmt.Errorf("wrap %s: %w", r, err)
	}
	return env.MarshalBinary()
}

// Unwrap opens an encoded envelope with priv. It fails (keywrap.ErrOpen)
// for an envelope wrapped for another record, grantee, purpose or use,
// or tampered with, and (keywrap.ErrWrongKey) for one wrapped to another
// key.
func (r Recipient) Unwrap(priv *keywrap.PrivateKey, envelope []byte) ([]byte, error) {
	if r.info == nil {
		return nil, fmt.Errorf("unwrap: zero Recipient")
	}
	var env keywrap.Envelope
	if err := env.UnmarshalBinary(envelope); err != nil {
		return nil, fmt.Errorf("unwrap %s: %w", r, err)
	}
	key, err := keywrap.Unwrap(priv, &env, r.info)
	if err != nil {
		return nil, fmt.Errorf("unwrap %s: %w", r, err)
	}
	return key, nil
}

// Keys finds a private key by the ID an envelope names (a
// *keywrap.Keyring, or a single *keywrap.PrivateKey).
type Keys interface {
	Key(id keywrap.KeyID) (*keywrap.PrivateKey, bool)
}

// UnwrapWith opens an encoded envelope with whichever of keys it was sealed
// to (keywrap.ErrWrongKey if none).
func (r Recipient) UnwrapWith(keys Keys, envelope []byte) ([]byte, error) {
	var env keywrap.Envelope
	if err := env.UnmarshalBinary(envelope); err != nil {
		return nil, fmt.Errorf("unwrap %s: %w", r, err)
	}
	priv, ok := keys.Key(env.KeyID)
	if !ok {
		return nil, fmt.Errorf("unwrap %s: %w", r, keywrap.ErrWrongKey)
	}
	return r.Unwrap(priv, envelope)
}

package membership

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/node/repo"
)

// The network's pre-shared keys.
//
// libp2p's private networks protect every connection with one 32-byte key
// (network/psk, from the network's creation or the invitation). When the
// admin removes a member, it rotates that key (network.key entries, see
// rotate.go): each remaining member learns the next key, with its epoch,
// the moment every node dials with it (Activate) and the moment the
// previous one stops being accepted (Retire). KeysFile keeps the schedule
// a node knows, so a restarted node keeps using it.

// KeysFile holds the network key schedule (0600).
const KeysFile = "network/keys"

// NetKey is one pre-shared key of the network's schedule.
type NetKey struct {
	Epoch uint64 `cbor:"1,keyasint"`
	PSK   []byte `cbor:"2,keyasint"`
	// Activate is when nodes start dialing with it (unix ms; 0: from the
	// start).
	Activate int64 `cbor:"3,keyasint"`
	// Retire is when it stops being accepted, because the next one took
	// over (unix ms; 0: not yet).
	Retire int64 `cbor:"4,keyasint"`
}

// ActivateAt and RetireAt are Activate and Retire as times (zero: none).
func (k NetKey) ActivateAt() time.Time { return msTime(k.Activate) }

// RetireAt is when the key stops being accepted (zero: not scheduled).
func (k NetKey) RetireAt() time.Time { return msTime(k.Retire) }

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// LoadNetKeys returns the network key schedule of a repo, oldest epoch
// first: KeysFile, or the repo's single network/psk as epoch 0.
func LoadNetKeys(r *repo.Repo) ([]NetKey, error) {
	b, err := os.ReadFile(r.Path(KeysFile))
	if errors.Is(err, os.ErrNotExist) {
		n, err := r.Network()
		if err != nil {
			return nil, err
		}
		return []NetKey{{Epoch: 0, PSK: n.PSK}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", KeysFile, err)
	}
	if st, err := os.Stat(r.Path(KeysFile)); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v: secrets must be readable by the owner only (chmod 600 %s)", r.Path(KeysFile), st.Mode().Perm(), r.Path(KeysFile))
	}
	var ks []NetKey
	if err := tokenDec.Unmarshal(b, &ks); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", KeysFile, err)
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("%s holds no key", KeysFile)
	}
	for _, k := range ks {
		if len(k.PSK) != repo.PSKSize {
			return nil, fmt.Errorf("%s: key of epoch %d has %d bytes", KeysFile, k.Epoch, len(k.PSK))
		}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Epoch < ks[j].Epoch })
	return ks, nil
}

// saveNetKeys writes the schedule, and the newest key as network/psk.
func saveNetKeys(r *repo.Repo, ks []NetKey) error {
	b, err := tokenEnc.Marshal(ks)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(r.Path(KeysFile), b, 0o600); err != nil {
		return err
	}
	n, err := r.Network()
	if err != nil {
		return err
	}
	n.PSK = ks[len(ks)-1].PSK
	return r.SetNetwork(n)
}

// writeKeyEpoch starts a joining node's schedule at the key its invitation
// carried.
func writeKeyEpoch(r *repo.Repo, epoch uint64) error {
	n, err := r.Network()
	if err != nil {
		return err
	}
	return saveNetKeys(r, []NetKey{{Epoch: epoch, PSK: n.PSK}})
}

// keyEpoch is the epoch of the newest key this node knows.
func (s *Service) keyEpoch() uint64 {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	return s.keys[len(s.keys)-1].Epoch
}

// newestKey is the newest key this node knows.
func (s *Service) newestKey() NetKey {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	return s.keys[len(s.keys)-1]
}

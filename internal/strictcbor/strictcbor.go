// Package strictcbor is the one CBOR policy of every medmesh format (ledger
// entries, record manifests, the DICOM study index, consents, invite
// tokens, replication challenges): core deterministic encoding, and
// decoders that refuse duplicate map keys, indefinite lengths, tags, fields
// the type does not know and invalid UTF-8, within limits each format sets
// for itself. Input from a file or the network decodes with these or not
// at all.
package strictcbor

import "github.com/fxamacker/cbor/v2"

// Enc encodes deterministically (RFC 8949 core deterministic encoding):
// the same value always gives the same bytes, so hashes and signatures
// over them are stable.
var Enc = must(cbor.CoreDetEncOptions().EncMode())

// Limits bound what a decoder accepts; a zero field takes the library's
// default.
type Limits struct {
	Nesting int // MaxNestedLevels
	Array   int // MaxArrayElements
	Map     int // MaxMapPairs
}

// Dec returns a strict decoder with the given limits. Invalid limits are a
// programming error and panic (decoders are built at package init).
func Dec(l Limits) cbor.DecMode {
	return must(cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		MaxNestedLevels:   l.Nesting,
		MaxArrayElements:  l.Array,
		MaxMapPairs:       l.Map,
	}.DecMode())
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

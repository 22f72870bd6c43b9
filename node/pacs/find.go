package pacs

import (
	"context"
	"iter"
	"strconv"
	"strings"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/imaging"
)

// C-FIND: the identifier's keys are matched by the imaging service's query
// engine over the encrypted index (wildcards, ranges, UID lists, case
// insensitive person names); each match answers every key the identifier
// asked for, known values filled in, the others empty.

var (
	tagLevel      = tag.QueryRetrieveLevel
	tagCharset    = tag.SpecificCharacterSet
	tagRetrieveAE = tag.Tag{Group: 0x0008, Element: 0x0054}
	tagAvail      = tag.Tag{Group: 0x0008, Element: 0x0056}
)

// Find implements dimse.FindHandler.
func (s *Service) Find(ctx context.Context, req *dimse.QueryRequest) iter.Seq2[*lib.Dataset, error] {
	return func(yield func(*lib.Dataset, error) bool) {
		level, err := imaging.ParseLevel(req.Level)
		if err != nil {
			yield(nil, dimse.NewStatus(dimse.StatusIdentifierMismatch, err.Error()))
			return
		}
		rows, _, err := s.img.Search(ctx, imaging.Query{Level: level, Keys: identifierKeys(req.Identifier)})
		if err != nil {
			s.log.Warn("dicom: C-FIND", "err", err)
			yield(nil, dimse.NewStatus(dimse.StatusUnableToProcess, "query failed: "+err.Error()))
			return
		}
		for _, r := range rows {
			if !yield(s.answer(req.Identifier, r), nil) {
				return
			}
		}
	}
}

// identifierKeys reads the matching keys of an identifier: every element
// with a value (sequences and the level itself excluded), as DICOM strings.
func identifierKeys(ds *lib.Dataset) map[uint32]string {
	keys := map[uint32]string{}
	if ds == nil {
		return keys
	}
	for _, e := range ds.Elements {
		t := uint32(e.Tag.Group)<<16 | uint32(e.Tag.Element)
		if e.Tag == tagLevel || e.Tag == tagCharset || e.Value == nil {
			continue
		}
		switch v := e.Value.GetValue().(type) {
		case []string:
			keys[t] = strings.TrimRight(strings.Join(v, `\`), " \x00")
		case []int:
			var parts []string
			for _, n := range v {
				parts = append(parts, strconv.Itoa(n))
			}
			keys[t] = strings.Join(parts, `\`)
		}
	}
	return keys
}

// answer builds one C-FIND match: the identifier's elements with the
// row's values (empty where the node knows none), plus Specific Character
// Set when a value is not ASCII.
func (s *Service) answer(ident *lib.Dataset, r *imaging.Row) *lib.Dataset {
	out := &lib.Dataset{}
	utf8 := false
	for _, e := range ident.Elements {
		if e.Tag == tagLevel {
			continue // the server adds it
		}
		t := uint32(e.Tag.Group)<<16 | uint32(e.Tag.Element)
		var vals []string
		switch {
		case e.Tag == tagCharset:
			continue // set below
		case e.Tag == tagRetrieveAE:
			vals = []string{s.set.AETitle}
		case e.Tag == tagAvail:
			vals = []string{"ONLINE"}
		default:
			if a, ok := imaging.Attribute(t); ok && levelOf(r) >= a.Level {
				vals = a.Values(r)
			}
		}
		for _, v := range vals {
			if !isASCII(v) {
				utf8 = true
			}
		}
		out.Elements = append(out.Elements, withValue(e, vals))
	}
	if utf8 {
		cs, _ := lib.NewElement(tagCharset, []string{"ISO_IR 192"})
		out.Elements = append([]*lib.Element{cs}, out.Elements...)
	}
	return out
}

// levelOf is the deepest level a row has values for.
func levelOf(r *imaging.Row) imaging.Level {
	switch {
	case r.Instance != nil:
		return imaging.LevelImage
	case r.Series != nil:
		return imaging.LevelSeries
	}
	return imaging.LevelStudy
}

// withValue returns a copy of e holding vals (empty if none) in the form
// its VR takes.
func withValue(e *lib.Element, vals []string) *lib.Element {
	out := &lib.Element{Tag: e.Tag, ValueRepresentation: e.ValueRepresentation, RawValueRepresentation: e.RawValueRepresentation}
	var v lib.Value
	var err error
	switch e.Value.(type) {
	case nil:
		v, err = lib.NewValue([]string{})
	default:
		switch e.Value.ValueType() {
		case lib.Ints:
			ns := []int{}
			for _, s := range vals {
				if n, err := strconv.Atoi(s); err == nil {
					ns = append(ns, n)
				}
			}
			v, err = lib.NewValue(ns)
		case lib.Strings:
			if vals == nil {
				vals = []string{}
			}
			v, err = lib.NewValue(vals)
		case lib.Sequences:
			v, err = lib.NewValue([][]*lib.Element{})
		case lib.Floats:
			v, err = lib.NewValue([]float64{})
		default:
			v, err = lib.NewValue([]byte{})
		}
	}
	if err != nil {
		v, _ = lib.NewValue([]string{})
	}
	out.Value = v
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

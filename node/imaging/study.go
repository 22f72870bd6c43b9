package imaging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/ipfs/go-cid"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// Opened is a study record opened for reading: its version, manifest and
// key, the grant it is read under (nil for the owner), and its study
// metadata (checked against the manifest). Its instances are read with
// Service.WriteInstance or Service.OpenInstance.
type Opened struct {
	Info     ledger.RecordInfo
	Manifest *record.Manifest
	Key      record.Key
	Grant    *ledger.Grant
	Study    *dicom.Study
}

// Size is the size in bytes of an instance's file, as the record stores it.
func (o *Opened) Size(in *dicom.InstanceRef) int64 { return o.Manifest.Files[in.FileIndex].Size }

// Select returns the study's instances in file order, only those of one
// series if seriesUID is set, and only one instance if sopUID is set.
func (o *Opened) Select(seriesUID, sopUID string) []*dicom.InstanceRef {
	var out []*dicom.InstanceRef
	for _, se := range o.Study.Series {
		if seriesUID != "" && se.UID != seriesUID {
			continue
		}
		for _, in := range se.Instances {
			if sopUID == "" || in.SOPInstanceUID == sopUID {
				out = append(out, in)
			}
		}
	}
	return out
}

// Open opens a study record (its newest readable version if version is 0)
// for purpose (the grant's when empty; see Records.OpenFor: reading
// someone else's study is claimed on the ledger) and decodes its study
// metadata, checking it against the manifest.
func (s *Service) Open(ctx context.Context, id cid.Cid, version int, purpose string) (*Opened, error) {
	info, m, key, g, err := s.rec.OpenFor(ctx, id, version, purpose)
	if err != nil {
		return nil, err
	}
	if m.Kind != Kind {
		return nil, fault.Invalidf("", "record %s is a %q record, not a DICOM study", info.ID, m.Kind)
	}
	// DecodeStudyMeta checks every UID with dicom.CheckUID, the rule the
	// import applied: UIDs read back are safe as file and URL path names.
	st, err := dicom.DecodeStudyMeta(m.Meta)
	if err != nil {
		return nil, wrapRecord(info.ID, err)
	}
	if n := st.NumInstances(); n != len(m.Files) {
		return nil, fmt.Errorf("record %s: study metadata lists %d instances but the record has %d files", info.ID, n, len(m.Files))
	}
	return &Opened{Info: info, Manifest: m, Key: key, Grant: g, Study: st}, nil
}

// OpenUID opens the study with a Study Instance UID through the index:
// the node's own newest version first, then granted copies it has read
// before (Export indexes them). A study not in the index is NotFound.
func (s *Service) OpenUID(ctx context.Context, studyUID string) (*Opened, error) {
	hits, err := s.idx.Query(ctx, dicom.Filter{StudyUID: studyUID})
	if err != nil {
		return nil, err
	}
	type cand struct {
		info ledger.RecordInfo
		mine bool
	}
	var cands []cand
	for _, h := range hits {
		id, err := cid.Decode(h.RecordID)
		if err != nil {
			continue
		}
		info, ok := s.led.Record(id)
		if !ok {
			continue
		}
		cands = append(cands, cand{s.rec.LatestVersion(id), info.Owner == s.self})
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].mine && !cands[j].mine })
	var firstErr error
	for _, c := range cands {
		o, err := s.Open(ctx, c.info.ID, 0, "")
		if err == nil && o.Study.UID == studyUID {
			return o, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, fault.NotFoundf("import it or open a granted copy first", "study %s is not in this node's index", studyUID)
}

// WriteInstance streams one instance's original file, byte for byte, into w.
func (s *Service) WriteInstance(ctx context.Context, o *Opened, in *dicom.InstanceRef, w io.Writer) error {
	return s.rec.ReadFiles(s.readContext(ctx, o), o.Manifest, o.Key, []int{in.FileIndex}, w)
}

// holderLister is a records service that knows where a record's blocks
// are (*records.Service).
type holderLister interface {
	Holders(info ledger.RecordInfo) []peer.ID
}

// readContext names the holders of another node's study for the reads of
// its instances (p2p.WithHolders): a one-chunk instance then streams from
// them over the bulk protocol at once, instead of a bitswap session per
// instance (tens of milliseconds each).
func (s *Service) readContext(ctx context.Context, o *Opened) context.Context {
	if o.Info.Owner == s.self {
		return ctx
	}
	if hl, ok := s.rec.(holderLister); ok {
		return p2p.WithHolders(ctx, hl.Holders(o.Info)...)
	}
	return ctx
}

// OpenInstance returns a reader of one instance's original file, streamed
// as it is read; closing it early stops the read.
func (s *Service) OpenInstance(ctx context.Context, o *Opened, in *dicom.InstanceRef) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.WriteInstance(ctx, o, in, pw)) }()
	return pr
}

// ReadDone counts a completed read of an opened study (the read itself was
// claimed on the ledger when it was opened).
func (s *Service) ReadDone(ctx context.Context, o *Opened, purpose string) {
	s.rec.ReadDone(ctx, o.Info, purpose, o.Grant)
}

// metaInMemoryMax is the largest instance InstanceMetadata parses in
// memory; a larger one goes through a temporary file.
const metaInMemoryMax = 32 << 20

// InstanceMetadata renders one instance's attributes as DICOM JSON (PS3.18
// F.2, bulk data left out). The parser needs random access: a small
// instance is read into memory, a large one into a 0600 temporary file in
// the repo, removed at once.
func (s *Service) InstanceMetadata(ctx context.Context, o *Opened, in *dicom.InstanceRef) ([]byte, error) {
	return s.InstanceMetadataBulk(ctx, o, in, nil)
}

// InstanceMetadataBulk is InstanceMetadata with bulk data: binary values,
// pixel data included, are given by the URI bulkURI returns for their tag
// (PS3.18 BulkDataURI; see dicom.MetadataJSONBulk).
func (s *Service) InstanceMetadataBulk(ctx context.Context, o *Opened, in *dicom.InstanceRef, bulkURI func(tag uint32) string) ([]byte, error) {
	size := o.Size(in)
	var ra io.ReaderAt
	if size <= metaInMemoryMax {
		var buf bytes.Buffer
		if err := s.WriteInstance(ctx, o, in, &buf); err != nil {
			return nil, err
		}
		ra = bytes.NewReader(buf.Bytes())
	} else {
		f, err := os.CreateTemp(s.dir, metaPrefix+"*")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if err := s.WriteInstance(ctx, o, in, f); err != nil {
			return nil, err
		}
		ra = f
	}
	pi, err := dicom.ParseReader(ra, size)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", in.SOPInstanceUID, err)
	}
	return dicom.MetadataJSONBulk(pi, bulkURI)
}

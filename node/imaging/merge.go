package imaging

import (
	"github.com/medmesh/medmesh/storage/dicom"
)

// Merge is the plan for storing the instances of an import on top of the
// stored version of their study: what the new version holds and where each
// of its files comes from. MergeStudy computes it without touching storage
// or the network.
type Merge struct {
	// Study is the new version's study: the stored instances and the new
	// ones, sorted (dicom.SortStudy), file indexes assigned. When Added
	// is 0 it is the stored study with its attributes completed, and
	// nothing needs storing.
	Study *dicom.Study
	// Files are the new version's files in file-index order.
	Files []MergedFile
	// Added counts the new instances.
	Added int
	// Skipped are the imported instances the stored version already holds
	// (by SOP Instance UID), in import order.
	Skipped []*dicom.InstanceRef
}

// MergedFile is one file of the new version.
type MergedFile struct {
	// Name is the file's path in the record: <Series UID>/<SOP UID>.dcm.
	Name string
	// Instance is the file's instance in Merge.Study.
	Instance *dicom.InstanceRef
	// Path is the local file of a new instance ("" for a stored one).
	Path string
	// Prev is the file index of a stored instance in the stored version
	// (-1 for a new one).
	Prev int
}

// MergeStudy merges the instances of an imported study (as dicom.Scan
// groups them; Path set) into the stored version of the same study (nil
// if the node stores none). Stored instances keep their series; a new
// instance joins the stored series of its Series UID or a new series with
// the imported series' attributes; an instance whose SOP Instance UID is
// already stored is skipped. Empty study attributes of the stored version
// are completed from the import. Neither input is modified.
//
// It takes time linear in the number of instances and series.
func MergeStudy(stored, in *dicom.Study) *Merge {
	merged := &dicom.Study{}
	series := map[string]*dicom.Series{} // merged series by UID
	have := map[string]bool{}            // SOP Instance UIDs in merged
	prev := map[*dicom.InstanceRef]int{} // stored instance -> its file index
	if stored != nil {
		*merged = *stored
		merged.Series = make([]*dicom.Series, 0, len(stored.Series))
		for _, se := range stored.Series {
			cse := *se
			cse.Instances = make([]*dicom.InstanceRef, 0, len(se.Instances))
			for _, x := range se.Instances {
				cx := *x
				cse.Instances = append(cse.Instances, &cx)
				have[x.SOPInstanceUID] = true
				prev[&cx] = x.FileIndex
			}
			merged.Series = append(merged.Series, &cse)
			series[se.UID] = &cse
		}
	}
	merged.Complete(in)
	m := &Merge{Study: merged}
	for _, se := range in.Series {
		dst := series[se.UID]
		for _, x := range se.Instances {
			if have[x.SOPInstanceUID] {
				m.Skipped = append(m.Skipped, x)
				continue
			}
			if dst == nil {
				dst = &dicom.Series{UID: se.UID, Modality: se.Modality, BodyPart: se.BodyPart, Number: se.Number, Description: se.Description}
				merged.Series = append(merged.Series, dst)
				series[se.UID] = dst
			}
			cx := *x
			dst.Instances = append(dst.Instances, &cx)
			have[x.SOPInstanceUID] = true
			m.Added++
		}
	}
	if m.Added == 0 {
		return m
	}
	dicom.SortStudy(merged)
	// SortStudy numbers the files series by series, instance by instance:
	// walking the series in order yields them in file-index order, each
	// with its series at hand. (Searching every series for each file's
	// series, as the daemon did, made a study of n instances cost n².)
	m.Files = make([]MergedFile, 0, merged.NumInstances())
	for _, se := range merged.Series {
		for _, x := range se.Instances {
			f := MergedFile{Name: se.UID + "/" + x.SOPInstanceUID + ".dcm", Instance: x, Prev: -1}
			if i, ok := prev[x]; ok {
				f.Prev = i
			} else {
				f.Path = x.Path
			}
			m.Files = append(m.Files, f)
		}
	}
	return m
}

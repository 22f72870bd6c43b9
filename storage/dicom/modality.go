package dicom

import (
	"fmt"
	"strings"
)

// The defined terms of Modality (0008,0060), PS3.3 C.7.3.1.1.1: current,
// and retired (archives hold old studies). Read-only.
var currentModalities = []string{
	"ANN", "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CR", "CT", "CTPROTOCOL", "DG", "DMS", "DOC", "DX",
	"ECG", "EEG", "EMG", "EOG", "EPS", "ES", "FID", "GM", "HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER",
	"KO", "LEN", "LS", "M3D", "MG", "MR", "NM", "OAM", "OCT", "OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV",
	"OSS", "OT", "PA", "PLAN", "POS", "PR", "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE", "RTIMAGE",
	"RTINTENT", "RTPLAN", "RTRAD", "RTRECORD", "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR", "SR",
	"SRF", "STAIN", "TEXTUREMAP", "TG", "US", "VA", "XA", "XAPROTOCOL", "XC",
}

var retiredModalities = []string{
	"AS", "CD", "CF", "CP", "CS", "DD", "DF", "DM", "DS", "EC", "FA", "FS", "LP", "MA", "MS", "OPR", "ST", "VF",
}

// Modalities lists the defined terms of Modality, current then retired.
func Modalities() []string {
	return append(append([]string(nil), currentModalities...), retiredModalities...)
}

// NormalizeModality returns m in upper case if it is a defined term of
// Modality (matching is case-insensitive: "mr" is MR), else an error that
// lists the current terms.
func NormalizeModality(m string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(m))
	for _, k := range Modalities() {
		if u == k {
			return u, nil
		}
	}
	return "", fmt.Errorf("unknown modality %q: choose a DICOM modality such as %s", m, strings.Join(currentModalities, ", "))
}

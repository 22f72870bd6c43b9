package dimse

import "strings"

// Transfer syntaxes this package names.
const (
	ImplicitVRLittleEndian = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
	ExplicitVRBigEndian    = "1.2.840.10008.1.2.2"
	tsDeflatedLE           = "1.2.840.10008.1.2.1.99"
)

// SOP classes this package names.
const (
	VerificationSOPClass = "1.2.840.10008.1.1"

	PatientRootFind = "1.2.840.10008.5.1.4.1.2.1.1"
	PatientRootMove = "1.2.840.10008.5.1.4.1.2.1.2"
	PatientRootGet  = "1.2.840.10008.5.1.4.1.2.1.3"
	StudyRootFind   = "1.2.840.10008.5.1.4.1.2.2.1"
	StudyRootMove   = "1.2.840.10008.5.1.4.1.2.2.2"
	StudyRootGet    = "1.2.840.10008.5.1.4.1.2.2.3"
	// Patient/Study Only (retired, still sent by old workstations).
	PatientStudyOnlyFind = "1.2.840.10008.5.1.4.1.2.3.1"
	PatientStudyOnlyMove = "1.2.840.10008.5.1.4.1.2.3.2"
	PatientStudyOnlyGet  = "1.2.840.10008.5.1.4.1.2.3.3"

	CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"
	MRImageStorage = "1.2.840.10008.5.1.4.1.1.4"
)

func isFindClass(uid string) bool {
	return uid == PatientRootFind || uid == StudyRootFind || uid == PatientStudyOnlyFind
}

func isMoveClass(uid string) bool {
	return uid == PatientRootMove || uid == StudyRootMove || uid == PatientStudyOnlyMove
}

func isGetClass(uid string) bool {
	return uid == PatientRootGet || uid == StudyRootGet || uid == PatientStudyOnlyGet
}

// dicomRoot is the UID root of the DICOM standard.
const dicomRoot = "1.2.840.10008."

// storageOutsideImageArc are the storage SOP classes of PS3.4 Annex B that
// do not live under 1.2.840.10008.5.1.4.1.1.
var storageOutsideImageArc = map[string]bool{
	"1.2.840.10008.5.1.1.27":    true, // Stored Print Storage (retired)
	"1.2.840.10008.5.1.1.29":    true, // Hardcopy Grayscale Image Storage (retired)
	"1.2.840.10008.5.1.1.30":    true, // Hardcopy Color Image Storage (retired)
	"1.2.840.10008.5.1.4.34.1":  true, // RT Beams Delivery Instruction Storage - Trial (retired)
	"1.2.840.10008.5.1.4.34.7":  true, // RT Beams Delivery Instruction Storage
	"1.2.840.10008.5.1.4.34.10": true, // RT Brachy Application Setup Delivery Instruction Storage
	"1.2.840.10008.5.1.4.38.1":  true, // Hanging Protocol Storage
	"1.2.840.10008.5.1.4.39.1":  true, // Color Palette Storage
	"1.2.840.10008.5.1.4.43.1":  true, // Generic Implant Template Storage
	"1.2.840.10008.5.1.4.44.1":  true, // Implant Assembly Template Storage
	"1.2.840.10008.5.1.4.45.1":  true, // Implant Template Group Storage
}

// notStorageInImageArc are the Query/Retrieve models that live under the
// storage arc (protocol approval and inventory information models).
var notStorageInImageArc = map[string]bool{
	"1.2.840.10008.5.1.4.1.1.200.4": true, // Protocol Approval Information Model - FIND
	"1.2.840.10008.5.1.4.1.1.200.5": true, // - MOVE
	"1.2.840.10008.5.1.4.1.1.200.6": true, // - GET
	"1.2.840.10008.5.1.4.1.1.201.2": true, // Inventory - FIND
	"1.2.840.10008.5.1.4.1.1.201.3": true, // Inventory - MOVE
	"1.2.840.10008.5.1.4.1.1.201.4": true, // Inventory - GET
	"1.2.840.10008.5.1.4.1.1.201.5": true, // Storage Management
	"1.2.840.10008.5.1.4.1.1.201.6": true, // Inventory Creation
}

// IsStorageSOPClass reports whether uid is a storage SOP class of the
// standard: the image storage arc 1.2.840.10008.5.1.4.1.1 (less the
// query/retrieve models filed there) and the few storage classes outside
// it. New storage classes are added to that arc, so they are recognized
// without a table update.
func IsStorageSOPClass(uid string) bool {
	if strings.HasPrefix(uid, "1.2.840.10008.5.1.4.1.1.") {
		return !notStorageInImageArc[uid]
	}
	return storageOutsideImageArc[uid]
}

// isPrivateUID reports a UID outside the DICOM root (a vendor's private
// SOP class or transfer syntax).
func isPrivateUID(uid string) bool {
	return !strings.HasPrefix(uid, dicomRoot)
}

// IsStandardTransferSyntax reports whether uid is a transfer syntax of the
// standard that encodes a data set in binary DICOM: the 1.2.840.10008.1.2
// arc, less the retired MIME and XML encodings (1.2.840.10008.1.2.6.*).
func IsStandardTransferSyntax(uid string) bool {
	if uid != ImplicitVRLittleEndian && !strings.HasPrefix(uid, ImplicitVRLittleEndian+".") {
		return false
	}
	return !strings.HasPrefix(uid, "1.2.840.10008.1.2.6.")
}

// isUIDSyntax reports whether s is a syntactically valid UID (PS3.5 9.1):
// components of digits separated by dots, no leading zero, at most 64.
func isUIDSyntax(s string) bool {
	if s == "" || len(s) > maxUID {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if i == start || (s[start] == '0' && i-start > 1) {
				return false
			}
			start = i + 1
			continue
		}
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

package api

// Imaging: DICOM import, query, export and de-identification (the wire
// types of /api/v1/dicom/...).

// DicomReject is a file that did not become part of a study, or a file that
// was skipped (DICOMDIR, an instance already stored), with path and reason.
type DicomReject struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// DicomWarning is something an import tolerated in a stored instance, e.g.
// UIDs that are not conformant (PS3.5 9.1) but are kept as they are, as
// dcmtk and Orthanc keep them.
type DicomWarning struct {
	Path    string `json:"path"`
	Warning string `json:"warning"`
}

// DicomStudyResult is one study an import stored (or found unchanged).
type DicomStudyResult struct {
	ID        string `json:"id"`
	StudyUID  string `json:"study_uid"`
	Series    int    `json:"series_count"`
	Instances int    `json:"instance_count"` // in the study's record now
	Added     int    `json:"added_count"`    // new instances stored by this import
	Version   int    `json:"version"`
	Prev      string `json:"prev,omitempty"`
	Unchanged bool   `json:"unchanged,omitempty"`
	Size      int64  `json:"size"`
}

// DicomImportResult is the outcome of an import: every input file is in a
// study, in Rejected (not stored, with the reason) or in Skipped (a DICOMDIR,
// or an instance the node already stores). Warnings has one entry per
// instance of a stored study that was accepted with a warning.
type DicomImportResult struct {
	Studies  []DicomStudyResult `json:"studies"`
	Rejected []DicomReject      `json:"rejected"`
	Skipped  []DicomReject      `json:"skipped"`
	Warnings []DicomWarning     `json:"warnings"`

	// Files is the outcome of every file by path, for STOW-RS responses
	// (not part of the JSON answer).
	Files map[string]*DicomFileOutcome `json:"-"`
}

// DicomFileOutcome is what became of one file of an import.
type DicomFileOutcome struct {
	SOPClassUID, SOPInstanceUID, StudyUID string
	Err                                   string // "" when stored (or already stored)
}

// DicomStudyHit is one study found by QueryDICOM.
type DicomStudyHit struct {
	ID          string   `json:"id"`
	StudyUID    string   `json:"study_uid"`
	PatientID   string   `json:"patient_id"`
	PatientName string   `json:"patient_name,omitempty"`
	Modality    string   `json:"modality"`
	Modalities  []string `json:"modalities"`
	StudyDate   string   `json:"study_date,omitempty"`
	Description string   `json:"description,omitempty"`
	Instances   int      `json:"instance_count"`
	Mine        bool     `json:"mine"`
}

// DicomExportResult lists the files an export wrote.
type DicomExportResult struct {
	ID        string   `json:"id"`
	StudyUID  string   `json:"study_uid"`
	Instances int      `json:"instance_count"`
	Bytes     int64    `json:"size"`
	Files     []string `json:"files"`
}

// DicomDeidRequest asks for a de-identified copy of a study record.
type DicomDeidRequest struct {
	Record                       string `json:"record"`
	Version                      int    `json:"version,omitempty"`
	RetainPatientCharacteristics bool   `json:"retain_patient_characteristics,omitempty"`
	ShiftDates                   bool   `json:"shift_dates,omitempty"`
	// ProjectKeyFile is an absolute path to the project key (at least 16
	// bytes, mode 0600); default: the repo's dicom-project.key, created on
	// first use.
	ProjectKeyFile string `json:"project_key_file,omitempty"`
	Purpose        string `json:"purpose,omitempty"`
}

// DicomExcluded is an instance left out of a de-identified study.
type DicomExcluded struct {
	File           int    `json:"file_index"`
	SeriesUID      string `json:"series_uid"`
	SOPInstanceUID string `json:"sop_instance_uid"`
	Reason         string `json:"reason"`
}

// DicomDeidResult is the de-identified study record.
type DicomDeidResult struct {
	ID        string          `json:"id"`
	Source    string          `json:"source"`
	StudyUID  string          `json:"study_uid"`
	Instances int             `json:"instance_count"`
	Excluded  []DicomExcluded `json:"excluded"`
	Size      int64           `json:"size"`
}

// DicomImportRequest is the body of POST /api/v1/dicom/import.
type DicomImportRequest struct {
	Paths []string `json:"paths"`
}

// DicomExportRequest is the body of POST /api/v1/dicom/export.
type DicomExportRequest struct {
	Record  string `json:"record"`
	Version int    `json:"version,omitempty"`
	Dir     string `json:"dir"`
	Series  string `json:"series,omitempty"`
	Purpose string `json:"purpose,omitempty"`
}

// DicomEchoRequest is the body of POST /api/v1/dicom/echo: verify a DICOM
// peer (C-ECHO) from the node's AE title.
type DicomEchoRequest struct {
	// To is "AE@host:port", or the AE title of a dicom.destinations entry.
	To string `json:"to"`
}

// DicomEchoResult is a successful C-ECHO.
type DicomEchoResult struct {
	To        string  `json:"to"` // AE@host:port
	CallingAE string  `json:"calling_ae"`
	Seconds   float64 `json:"seconds"`
}

// DicomSendRequest is the body of POST /api/v1/dicom/send: push a stored
// study (or one series of it) to a DICOM peer with C-STORE.
type DicomSendRequest struct {
	Record  string `json:"record"`
	Version int    `json:"version,omitempty"`
	Series  string `json:"series,omitempty"`
	To      string `json:"to"`
	Purpose string `json:"purpose,omitempty"`
}

// DicomSendFailure is an instance the peer did not store.
type DicomSendFailure struct {
	SOPInstanceUID string `json:"sop_instance_uid"`
	Error          string `json:"error"`
}

// DicomSendResult is the outcome of a send: every instance of the
// selection is in sent_count or in failed.
type DicomSendResult struct {
	ID        string             `json:"id"`
	StudyUID  string             `json:"study_uid"`
	To        string             `json:"to"` // AE@host:port
	Instances int                `json:"instance_count"`
	Sent      int                `json:"sent_count"`
	Failed    []DicomSendFailure `json:"failed"`
	Size      int64              `json:"size"`
	Seconds   float64            `json:"seconds"`
}

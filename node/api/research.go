package api

import "time"

// Research: consents and datasets (the wire types of /api/v1/consents and
// /api/v1/datasets).

// ConsentRequest adds or revokes a consent. Patient is the raw patient ID:
// it goes no further than this node, which puts only its keyed pseudonym on
// the ledger.
type ConsentRequest struct {
	Patient  string `json:"patient"`
	Purpose  string `json:"purpose"`
	Modality string `json:"modality,omitempty"`
	BodyPart string `json:"body_part,omitempty"`
	Expires  string `json:"expires,omitempty"` // duration, e.g. 8760h
}

// ConsentInfo is one consent entry as this node sees it.
type ConsentInfo struct {
	Entry    string    `json:"entry"`
	Author   string    `json:"author"`
	Patient  string    `json:"patient"` // the pseudonym (hex), as on the ledger
	Purpose  string    `json:"purpose"`
	Modality string    `json:"modality,omitempty"`
	BodyPart string    `json:"body_part,omitempty"`
	Expires  NullTime  `json:"expires"` // null: no expiry
	Revoked  bool      `json:"revoked"`
	Expired  bool      `json:"expired"`
	Time     time.Time `json:"time"`
}

// ConsentRevokeResult is what a consent revoke published.
type ConsentRevokeResult struct {
	Entry   string `json:"entry"`
	Patient string `json:"patient"` // the pseudonym (hex), as on the ledger
	Purpose string `json:"purpose"`
}

// DatasetInfo describes a dataset version for `dataset ls`.
type DatasetInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Prev      string    `json:"prev,omitempty"`
	Owner     string    `json:"owner"`
	Mine      bool      `json:"mine"`
	Studies   int       `json:"study_count"`
	Instances int       `json:"instance_count"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
}

// DatasetGrantRequest grants a dataset to a member.
type DatasetGrantRequest struct {
	To      string `json:"to"`
	Expires string `json:"expires,omitempty"`
}

// DatasetGrantResult says what was granted.
type DatasetGrantResult struct {
	Dataset string `json:"id"` // the dataset's record
	Version int    `json:"version"`
	Grantee string `json:"grantee"`
	Records int    `json:"record_count"` // manifest + studies
}

// DatasetCreateRequest publishes a dataset (a new version if this node
// already published one of that name).
type DatasetCreateRequest struct {
	Name                         string   `json:"name"`
	Records                      []string `json:"records,omitempty"`
	Query                        string   `json:"query,omitempty"`
	RetainPatientCharacteristics bool     `json:"retain_patient_characteristics,omitempty"`
	ShiftDates                   bool     `json:"shift_dates,omitempty"`
	ProjectKeyFile               string   `json:"project_key_file,omitempty"`
}

// DatasetExcluded is a source study (or some of its series) left out.
type DatasetExcluded struct {
	Record string `json:"id"`
	Series int    `json:"series_count"` // number of series left out
	Reason string `json:"reason"`
}

// DatasetStudy is one study of a created dataset.
type DatasetStudy struct {
	Record    string `json:"id"`
	Patient   string `json:"patient"`
	StudyUID  string `json:"study_uid"`
	Instances int    `json:"instance_count"`
	Size      int64  `json:"size"`
	Reused    bool   `json:"reused,omitempty"`
}

// DatasetCreateResult is what dataset create published.
type DatasetCreateResult struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Version   int               `json:"version"`
	Prev      string            `json:"prev,omitempty"`
	Studies   []DatasetStudy    `json:"studies"`
	Excluded  []DatasetExcluded `json:"excluded"`
	Counts    map[string]int    `json:"excluded_by_reason"`
	Regranted []string          `json:"regranted,omitempty"`
	Revoked   int               `json:"revoked_grant_count"`
}

// ConsentListRequest filters `consent ls` (a POST body, so a patient ID is
// never part of a URL).
type ConsentListRequest struct {
	Patient string `json:"patient,omitempty"`
	Purpose string `json:"purpose,omitempty"`
}

// DatasetFetchRequest fetches datasets into Dir.
type DatasetFetchRequest struct {
	// Datasets are IDs or names; a name matches every readable dataset of
	// that name (one part per publishing clinic).
	Datasets []string `json:"datasets"`
	Dir      string   `json:"dir"`
	// Parallel is the number of instances fetched at once (default 8).
	Parallel int `json:"parallel,omitempty"`
	// Job names the fetch for progress polling (GET /datasets/fetch/{job}).
	Job string `json:"job,omitempty"`
}

// DatasetProgress is a fetch's progress.
type DatasetProgress struct {
	Studies      int64   `json:"study_count"`
	StudiesDone  int64   `json:"done_study_count"`
	Instances    int64   `json:"instance_count"`
	Fetched      int64   `json:"fetched_count"` // instances fetched by this run
	Skipped      int64   `json:"skipped_count"` // instances already verified
	Bytes        int64   `json:"size"`          // total of all instances
	BytesDone    int64   `json:"done_size"`
	BytesFetched int64   `json:"fetched_size"` // by this run
	Seconds      float64 `json:"seconds"`
	Done         bool    `json:"done"`
}

// DatasetFetchResult is a finished fetch.
type DatasetFetchResult struct {
	DatasetProgress
	Datasets []DatasetInfo `json:"datasets"`
	Dir      string        `json:"dir"`
	CSV      string        `json:"csv"`
	MBps     float64       `json:"mb_per_s"`
}

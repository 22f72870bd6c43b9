package api

import "time"

// Implant traceability: the wire types of /api/v1/implants (see
// sharing/implant for the rules and node/implants for the service).
//
// A device is "device" (its ID, the CID of its register entry); its
// device identifier is "di" (the GTIN-14 of a GS1 UDI); dates printed on a
// label ("expiry", "produced") are YYYY-MM-DD (YYYY-MM when the label gives
// no day), null when absent. "patient" and "procedure" are the local
// patient ID and procedure text: they appear only on the node that
// implanted the device, which alone can resolve its ledger pseudonym.

// ImplantRegisterRequest registers a device by its UDI, as printed or
// scanned (GS1 human-readable or machine form, or HIBCC).
type ImplantRegisterRequest struct {
	UDI string `json:"udi"`
}

// ImplantTransferRequest hands a device to another member.
type ImplantTransferRequest struct {
	Receiver string `json:"receiver"`
}

// ImplantUseRequest implants a device into a local patient. Patient and
// Procedure stay on this node (its encrypted local store); the ledger gets
// a keyed pseudonym of the patient.
type ImplantUseRequest struct {
	Patient   string `json:"patient"`
	Procedure string `json:"procedure"`
}

// ImplantRecallRequest recalls the devices of a DI, narrowed by lot and
// serial. As is "registrant" (the default: the devices this node
// registered) or "manufacturer" (every matching device; needs an admin's
// authorization, ImplantAuthorizeRequest).
type ImplantRecallRequest struct {
	DI     string `json:"di"`
	Lot    string `json:"lot,omitempty"`
	Serial string `json:"serial,omitempty"`
	Reason string `json:"reason"`
	As     string `json:"as,omitempty"`
}

// ImplantAuthorizeRequest (an admin's) lets a member recall every device of
// a GS1 company prefix or HIBCC labeler code as their manufacturer, or
// withdraws that.
type ImplantAuthorizeRequest struct {
	Peer   string `json:"peer"`
	Prefix string `json:"prefix"`
	Revoke bool   `json:"revoke,omitempty"`
}

// ImplantAuthorization is a current manufacturer authorization.
type ImplantAuthorization struct {
	Peer   string `json:"peer"`
	Issuer string `json:"issuer"`
	Prefix string `json:"prefix"`
	Entry  string `json:"entry"`
}

// ImplantDevice is a device as this node sees it.
type ImplantDevice struct {
	Device     string    `json:"device"`
	UDI        string    `json:"udi"` // human-readable form
	Issuer     string    `json:"issuer"`
	DI         string    `json:"di"`
	Lot        string    `json:"lot"`
	Serial     string    `json:"serial"`
	Expiry     *string   `json:"expiry"`
	Produced   *string   `json:"produced"`
	Registrant string    `json:"registrant"`
	Custodian  string    `json:"custodian"`
	Status     string    `json:"status"` // available, implanted, explanted
	Registered time.Time `json:"registered"`
	Implanted  NullTime  `json:"implanted"`
	Explanted  NullTime  `json:"explanted"`
	// Implanter is the node that implanted it ("" if none).
	Implanter string `json:"implanter,omitempty"`
	// Mine: this node registered, holds or implanted the device.
	Mine      bool   `json:"mine"`
	Patient   string `json:"patient,omitempty"`
	Procedure string `json:"procedure,omitempty"`
	Recalled  bool   `json:"recalled"`
	// Recalls are the recall entries that cover the device.
	Recalls []string `json:"recalls"`
	// History is the custody chain, oldest first (implant history only).
	History []ImplantEvent `json:"history,omitempty"`
}

// ImplantEvent is one custody entry of a device.
type ImplantEvent struct {
	Entry    string    `json:"entry"`
	Type     string    `json:"type"` // register, transfer, use, explant
	Author   string    `json:"author"`
	Receiver string    `json:"receiver,omitempty"`
	Time     time.Time `json:"time"`
	// Superseded marks an event that lost a fork of the chain (only a
	// modified node makes one): it has no effect.
	Superseded bool `json:"superseded"`
}

// ImplantRecall is a recall and the devices it covers.
type ImplantRecall struct {
	Recall string    `json:"recall"` // the recall entry
	Author string    `json:"author"`
	As     string    `json:"as"`
	Issuer string    `json:"issuer"`
	DI     string    `json:"di"`
	Lot    string    `json:"lot"`
	Serial string    `json:"serial"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
	// Devices are the devices it covers; Count their number.
	Devices []ImplantDevice `json:"devices"`
	Count   int             `json:"count"`
}

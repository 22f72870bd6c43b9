package dimse

import "fmt"

// The DICOM upper layer state machine (PS3.8 9.2): states, events, actions
// and the state transition table (Table 9-10), as pure data. The
// association (assoc.go) feeds it every event, local or from the peer, and
// performs the action it names; an event the table has no entry for is a
// programming or protocol error, never silently ignored.

type state uint8

const (
	sta1  state = 1 + iota // idle
	sta2                   // transport open, awaiting A-ASSOCIATE-RQ (ARTIM running)
	sta3                   // awaiting local A-ASSOCIATE response
	sta4                   // awaiting transport connection to open
	sta5                   // awaiting A-ASSOCIATE-AC or -RJ
	sta6                   // association established, data transfer
	sta7                   // awaiting A-RELEASE-RP
	sta8                   // awaiting local A-RELEASE response
	sta9                   // release collision, requestor: awaiting local A-RELEASE response
	sta10                  // release collision, acceptor: awaiting A-RELEASE-RP
	sta11                  // release collision, requestor: awaiting A-RELEASE-RP
	sta12                  // release collision, acceptor: awaiting local A-RELEASE response
	sta13                  // awaiting transport close (ARTIM running)
)

func (s state) String() string { return fmt.Sprintf("Sta%d", uint8(s)) }

type event uint8

const (
	evt1  event = 1 + iota // local A-ASSOCIATE request
	evt2                   // transport connection confirmed
	evt3                   // A-ASSOCIATE-AC PDU received
	evt4                   // A-ASSOCIATE-RJ PDU received
	evt5                   // transport connection indication (accepted)
	evt6                   // A-ASSOCIATE-RQ PDU received
	evt7                   // local A-ASSOCIATE response: accept
	evt8                   // local A-ASSOCIATE response: reject
	evt9                   // local P-DATA request
	evt10                  // P-DATA-TF PDU received
	evt11                  // local A-RELEASE request
	evt12                  // A-RELEASE-RQ PDU received
	evt13                  // A-RELEASE-RP PDU received
	evt14                  // local A-RELEASE response
	evt15                  // local A-ABORT request
	evt16                  // A-ABORT PDU received
	evt17                  // transport connection closed
	evt18                  // ARTIM timer expired
	evt19                  // unrecognized or invalid PDU received
)

func (e event) String() string { return fmt.Sprintf("Evt%d", uint8(e)) }

type action uint8

const (
	noAction action = iota
	ae1             // issue transport connect → Sta4
	ae2             // send A-ASSOCIATE-RQ → Sta5
	ae3             // A-ASSOCIATE confirmation (accept) → Sta6
	ae4             // A-ASSOCIATE confirmation (reject), close transport → Sta1
	ae5             // transport connect response, start ARTIM → Sta2
	ae6             // stop ARTIM, A-ASSOCIATE indication → Sta3
	ae7             // send A-ASSOCIATE-AC → Sta6
	ae8             // send A-ASSOCIATE-RJ, start ARTIM → Sta13
	dt1             // send P-DATA-TF → Sta6
	dt2             // P-DATA indication → Sta6
	ar1             // send A-RELEASE-RQ → Sta7
	ar2             // A-RELEASE indication → Sta8
	ar3             // A-RELEASE confirmation, close transport → Sta1
	ar4             // send A-RELEASE-RP, start ARTIM → Sta13
	ar5             // stop ARTIM → Sta1
	ar6             // P-DATA indication → Sta7
	ar7             // send P-DATA-TF → Sta8
	ar8             // A-RELEASE indication (collision) → Sta9 (requestor) or Sta10
	ar9             // send A-RELEASE-RP → Sta11
	ar10            // A-RELEASE confirmation → Sta12
	aa1             // send A-ABORT (user), start ARTIM → Sta13
	aa2             // stop ARTIM, close transport → Sta1
	aa3             // A-ABORT / A-P-ABORT indication, close transport → Sta1
	aa4             // A-P-ABORT indication → Sta1
	aa5             // stop ARTIM → Sta1
	aa6             // ignore PDU → Sta13
	aa7             // send A-ABORT → Sta13
	aa8             // send A-ABORT (provider), A-P-ABORT indication, start ARTIM → Sta13
)

var actionNames = [...]string{"none", "AE-1", "AE-2", "AE-3", "AE-4", "AE-5", "AE-6", "AE-7", "AE-8",
	"DT-1", "DT-2", "AR-1", "AR-2", "AR-3", "AR-4", "AR-5", "AR-6", "AR-7", "AR-8", "AR-9", "AR-10",
	"AA-1", "AA-2", "AA-3", "AA-4", "AA-5", "AA-6", "AA-7", "AA-8"}

func (a action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// transitions is PS3.8 Table 9-10, indexed [event][state].
var transitions = [20][14]action{
	evt1:  {sta1: ae1},
	evt2:  {sta4: ae2},
	evt3:  {sta2: aa1, sta3: aa8, sta5: ae3, sta6: aa8, sta7: aa8, sta8: aa8, sta9: aa8, sta10: aa8, sta11: aa8, sta12: aa8, sta13: aa6},
	evt4:  {sta2: aa1, sta3: aa8, sta5: ae4, sta6: aa8, sta7: aa8, sta8: aa8, sta9: aa8, sta10: aa8, sta11: aa8, sta12: aa8, sta13: aa6},
	evt5:  {sta1: ae5},
	evt6:  {sta2: ae6, sta3: aa8, sta5: aa8, sta6: aa8, sta7: aa8, sta8: aa8, sta9: aa8, sta10: aa8, sta11: aa8, sta12: aa8, sta13: aa7},
	evt7:  {sta3: ae7},
	evt8:  {sta3: ae8},
	evt9:  {sta6: dt1, sta8: ar7},
	evt10: {sta2: aa1, sta3: aa8, sta5: aa8, sta6: dt2, sta7: ar6, sta8: aa8, sta9: aa8, sta10: aa8, sta11: aa8, sta12: aa8, sta13: aa6},
	evt11: {sta6: ar1},
	evt12: {sta2: aa1, sta3: aa8, sta5: aa8, sta6: ar2, sta7: ar8, sta8: aa8, sta9: aa8, sta10: aa8, sta11: aa8, sta12: aa8, sta13: aa6},
	evt13: {sta2: aa1, sta3: aa8, sta5: aa8, sta6: aa8, sta7: ar3, sta8: aa8, sta9: aa8, sta10: ar10, sta11: ar3, sta12: aa8, sta13: aa6},
	evt14: {sta8: ar4, sta9: ar9, sta12: ar4},
	evt15: {sta3: aa1, sta4: aa2, sta5: aa1, sta6: aa1, sta7: aa1, sta8: aa1, sta9: aa1, sta10: aa1, sta11: aa1, sta12: aa1},
	evt16: {sta2: aa2, sta3: aa3, sta5: aa3, sta6: aa3, sta7: aa3, sta8: aa3, sta9: aa3, sta10: aa3, sta11: aa3, sta12: aa3, sta13: aa2},
	evt17: {sta2: aa5, sta3: aa4, sta4: aa4, sta5: aa4, sta6: aa4, sta7: aa4, sta8: aa4, sta9: aa4, sta10: aa4, sta11: aa4, sta12: aa4, sta13: ar5},
	evt18: {sta2: aa2, sta13: aa2},
	evt19: {sta2: aa1, sta3: aa8, sta5: aa8, sta6: aa8, sta7: aa8, sta8: aa8, sta9: aa8, sta10: aa8, sta11: aa8, sta12: aa8, sta13: aa7},
}

// transition returns the action for event e in state s and the state that
// follows it. ok is false when the table has no entry: the event is not
// allowed in that state.
func transition(s state, e event, requestor bool) (a action, next state, ok bool) {
	if e < evt1 || e > evt19 || s < sta1 || s > sta13 {
		return noAction, s, false
	}
	a = transitions[e][s]
	if a == noAction {
		return noAction, s, false
	}
	return a, a.next(s, requestor), true
}

// next is the state an action leads to (PS3.8 Table 9-6..9-9).
func (a action) next(from state, requestor bool) state {
	switch a {
	case ae1:
		return sta4
	case ae2:
		return sta5
	case ae3, ae7, dt1, dt2:
		return sta6
	case ae4, ar3, ar5, aa2, aa3, aa4, aa5:
		return sta1
	case ae5:
		return sta2
	case ae6:
		return sta3
	case ae8, ar4, aa1, aa6, aa7, aa8:
		return sta13
	case ar1, ar6:
		return sta7
	case ar2, ar7:
		return sta8
	case ar8:
		if requestor {
			return sta9
		}
		return sta10
	case ar9:
		return sta11
	case ar10:
		return sta12
	}
	return from
}

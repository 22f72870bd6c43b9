package dimse

import "testing"

// TestTransitionTable checks the table against PS3.8 Table 9-10, row by
// row, and that nothing outside it is allowed.
func TestTransitionTable(t *testing.T) {
	all := []state{sta1, sta2, sta3, sta4, sta5, sta6, sta7, sta8, sta9, sta10, sta11, sta12, sta13}
	// [event] -> "state:action" entries, as the standard lists them
	want := map[event]map[state]action{
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
	for e := evt1; e <= evt19; e++ {
		for _, s := range all {
			a, _, ok := transition(s, e, true)
			w, wok := want[e][s]
			if ok != wok || a != w {
				t.Errorf("%v in %v: %v (%v), want %v (%v)", e, s, a, ok, w, wok)
			}
		}
	}
	if _, _, ok := transition(sta6, 0, true); ok {
		t.Error("event 0 allowed")
	}
	if _, _, ok := transition(0, evt1, true); ok {
		t.Error("state 0 allowed")
	}
}

func TestActionNextStates(t *testing.T) {
	for a, want := range map[action]state{ae1: sta4, ae2: sta5, ae3: sta6, ae4: sta1, ae5: sta2, ae6: sta3, ae7: sta6, ae8: sta13,
		dt1: sta6, dt2: sta6, ar1: sta7, ar2: sta8, ar3: sta1, ar4: sta13, ar5: sta1, ar6: sta7, ar7: sta8, ar9: sta11, ar10: sta12,
		aa1: sta13, aa2: sta1, aa3: sta1, aa4: sta1, aa5: sta1, aa6: sta13, aa7: sta13, aa8: sta13} {
		if got := a.next(sta6, true); got != want {
			t.Errorf("%v → %v, want %v", a, got, want)
		}
	}
	if ar8.next(sta7, true) != sta9 || ar8.next(sta7, false) != sta10 {
		t.Error("release collision: requestor to Sta9, acceptor to Sta10")
	}
}

// TestLifecycles walks the requestor's and acceptor's normal lives and a
// release collision through the table.
func TestLifecycles(t *testing.T) {
	walk := func(name string, requestor bool, s state, steps ...any) {
		for i := 0; i < len(steps); i += 2 {
			e, want := steps[i].(event), steps[i+1].(state)
			_, next, ok := transition(s, e, requestor)
			if !ok || next != want {
				t.Fatalf("%s: %v in %v → %v (%v), want %v", name, e, s, next, ok, want)
			}
			s = next
		}
	}
	walk("requestor", true, sta1, evt1, sta4, evt2, sta5, evt3, sta6, evt9, sta6, evt10, sta6, evt11, sta7, evt10, sta7, evt13, sta1)
	walk("acceptor", false, sta1, evt5, sta2, evt6, sta3, evt7, sta6, evt10, sta6, evt9, sta6, evt12, sta8, evt9, sta8, evt14, sta13, evt17, sta1)
	walk("rejected", false, sta1, evt5, sta2, evt6, sta3, evt8, sta13, evt18, sta1)
	walk("collision, requestor", true, sta6, evt11, sta7, evt12, sta9, evt14, sta11, evt13, sta1)
	walk("collision, acceptor", false, sta6, evt11, sta7, evt12, sta10, evt13, sta12, evt14, sta13, evt17, sta1)
	walk("abort", true, sta6, evt15, sta13, evt10, sta13, evt17, sta1)
	walk("ARTIM", false, sta1, evt5, sta2, evt18, sta1)
}

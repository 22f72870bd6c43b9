package main

import (
	"reflect"
	"testing"

	"github.com/medmesh/medmesh/node/api"
)

// TestFoldScopes: `ledger stat --by-scope`'s table sums more than three
// reads scopes (and left ones) in one row each, at the end; three or fewer
// stay one row each; the other rows keep their order.
func TestFoldScopes(t *testing.T) {
	row := func(scope, why string, n int64) api.LedgerScope {
		return api.LedgerScope{Scope: scope, Why: why, Entries: n, Size: 10 * n}
	}
	rows := []api.LedgerScope{row("global", "global", 50), row("owner/a", "own", 40), row("audit/b", "reads", 3),
		row("owner/c", "grantee", 20), row("audit/d", "reads", 2), row("owner/e", "left", 7), row("audit/f", "reads", 1),
		row("audit/g", "reads", 1)}
	want := []api.LedgerScope{row("global", "global", 50), row("owner/a", "own", 40), row("owner/c", "grantee", 20),
		row("owner/e", "left", 7), {Scope: "(4 scopes)", Why: "reads", Entries: 7, Size: 70}}
	if got := foldScopes(rows, 3); !reflect.DeepEqual(got, want) {
		t.Fatalf("folded:\n%+v\nwant\n%+v", got, want)
	}
	if got := foldScopes(rows[:5], 3); !reflect.DeepEqual(got, rows[:5]) {
		t.Fatalf("two reads scopes folded: %+v", got)
	}
}

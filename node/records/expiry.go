package records

import (
	"fmt"
	"time"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// GrantExpiry turns a grant request's lifetime into its expiry: none for
// an empty lifetime (24 h for an emergency grant, the longest it may last);
// a lifetime that is not positive, longer than ledger.MaxGrantLifetime, or
// (emergency) longer than 24 h is refused rather than changed.
func GrantExpiry(now time.Time, purpose, lifetime string) (time.Time, error) {
	if lifetime == "" {
		if purpose == ledger.PurposeEmergency {
			return now.Add(ledger.MaxEmergencyGrant), nil
		}
		return time.Time{}, nil
	}
	dur, err := time.ParseDuration(lifetime)
	switch {
	case err != nil:
		return time.Time{}, fault.Invalidf("give a duration such as 72h or 30m", "bad grant lifetime %q", lifetime)
	case dur <= 0:
		return time.Time{}, fault.Invalidf("give a positive duration such as 72h; leave --expires out for a grant that does not expire", "a grant cannot expire %s from now", lifetime)
	case purpose == ledger.PurposeEmergency && dur > ledger.MaxEmergencyGrant:
		return time.Time{}, fault.Invalidf("ask for --expires 24h or less (the default for emergency grants is 24h)", "an emergency grant lasts at most %s, not %s", ledger.MaxEmergencyGrant, lifetime)
	case dur > ledger.MaxGrantLifetime:
		return time.Time{}, fault.Invalidf(fmt.Sprintf("ask for at most %s (10 years), or leave --expires out for a grant that does not expire", ledger.MaxGrantLifetime), "a grant lifetime of %s is too long", lifetime)
	}
	return now.Add(dur), nil
}

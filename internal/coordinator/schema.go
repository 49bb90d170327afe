package coordinator

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// ErrSchema marks a record schema that does not match the model's: a
// worker's features at join, or --features against the store's
// checkpoint at start. Retrying cannot cure it.
var ErrSchema = errors.New("record schema does not match the model's")

// maxListed is how many names a mismatch message lists of each side.
const maxListed = 40

// listNames writes names for a message: "30 features [a b c ...]", the
// first maxListed of them, or "30 features (unnamed)".
func listNames(width int, names []string) string {
	if len(names) == 0 {
		return fmt.Sprintf("%d features (unnamed)", width)
	}
	shown := names
	more := ""
	if len(shown) > maxListed {
		shown, more = shown[:maxListed], fmt.Sprintf(" ... and %d more", len(names)-maxListed)
	}
	return fmt.Sprintf("%d features [%s%s]", len(names), strings.Join(shown, " "), more)
}

// compareSchema says how the records of theirs (width, names) differ from
// the model's, "" when they fit: the widths must be equal and, where both
// sides name their features, the names equal in order. One side unnamed
// (a width given, records positional) fits any names of that width.
func compareSchema(ourWidth int, ours []string, theirWidth int, theirs []string) string {
	if d := duplicate(theirs); d != "" {
		return fmt.Sprintf("feature %q is named twice", d)
	}
	if theirWidth != ourWidth {
		return fmt.Sprintf("%s, the model takes %s", listNames(theirWidth, theirs), listNames(ourWidth, ours))
	}
	if len(ours) == 0 || len(theirs) == 0 || slices.Equal(ours, theirs) {
		return ""
	}
	i := 0
	for i < len(ours) && ours[i] == theirs[i] {
		i++
	}
	same := "other names"
	if a, b := slices.Sorted(slices.Values(ours)), slices.Sorted(slices.Values(theirs)); slices.Equal(a, b) {
		same = "the same names in another order"
	}
	return fmt.Sprintf("%s, %s than the model's %s (position %d: %q, the model's %q)",
		listNames(theirWidth, theirs), same, listNames(ourWidth, ours), i+1, theirs[i], ours[i])
}

// duplicate returns a name that appears twice in names, "" if none.
func duplicate(names []string) string {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			return n
		}
		seen[n] = true
	}
	return ""
}

// joinMismatch says why join's schema does not fit the model, "" when
// it does (or the worker said nothing of it: an old worker).
func (s *Server) joinMismatch(join *reconv1.Join) string {
	width, names := int(join.GetWidth()), join.GetFeatures()
	if width == 0 && len(names) == 0 {
		return ""
	}
	if width == 0 {
		width = len(names)
	}
	if len(names) != 0 && len(names) != width {
		return fmt.Sprintf("%d feature names for a record width of %d", len(names), width)
	}
	why := compareSchema(s.cfg.Spec.Input, s.cfg.Features, width, names)
	if why == "" {
		return ""
	}
	return "this worker's records have " + why
}

package store

import (
	"fmt"
	"slices"
	"strings"
)

// System flags in their canonical spelling.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

var systemFlags = map[string]string{
	`\seen`: FlagSeen, `\answered`: FlagAnswered, `\flagged`: FlagFlagged,
	`\deleted`: FlagDeleted, `\draft`: FlagDraft,
}

// isAtomChar reports whether c may appear in an IMAP atom (RFC 3501 ATOM-CHAR), excluding
// the resp-specials a flag keyword cannot hold either.
func isAtomChar(c byte) bool {
	if c <= 0x20 || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune(`(){%*"\]`, rune(c))
}

// CanonicalFlags validates flags and returns them deduplicated (keywords compare
// case-insensitively; the first spelling wins) with system flags spelled canonically and
// sorted. \Recent and \* are dropped: they are not stored.
func CanonicalFlags(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	seen := make(map[string]bool, len(flags))
	for _, f := range flags {
		lf := strings.ToLower(f)
		if lf == `\recent` || lf == `\*` {
			continue
		}
		if strings.HasPrefix(f, `\`) {
			c, ok := systemFlags[lf]
			if !ok {
				return nil, fmt.Errorf("%w: %q is not a system flag", ErrBadFlag, f)
			}
			f = c
		} else {
			if f == "" || len(f) > 128 {
				return nil, fmt.Errorf("%w: keyword must be 1 to 128 characters", ErrBadFlag)
			}
			for i := 0; i < len(f); i++ {
				if !isAtomChar(f[i]) {
					return nil, fmt.Errorf("%w: %q has a character not allowed in a keyword", ErrBadFlag, f)
				}
			}
		}
		if !seen[lf] {
			seen[lf] = true
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out, nil
}

// applyFlags computes a message's new flags. cur and flags are canonical.
func applyFlags(cur []string, op FlagOp, flags []string) []string {
	has := func(list []string, f string) bool {
		return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, f) })
	}
	var out []string
	switch op {
	case FlagsSet:
		out = slices.Clone(flags)
	case FlagsAdd:
		out = slices.Clone(cur)
		for _, f := range flags {
			if !has(out, f) {
				out = append(out, f)
			}
		}
	case FlagsRemove:
		for _, f := range cur {
			if !has(flags, f) {
				out = append(out, f)
			}
		}
	}
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}

package imapbackend

import (
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmail/twinmail/store"
)

// flagRecent is the obsolete \Recent flag; no message has it here.
const flagRecent = imap.Flag(`\Recent`)

// imapFlags converts store flags to the wire type.
func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(flags))
	for _, f := range flags {
		out = append(out, imap.Flag(f))
	}
	return out
}

// storeFlags validates the flags of STORE or APPEND for the store: \Recent and \* are
// dropped, a system flag must be one of the five defined ones and a keyword an IMAP atom (the
// encoder refuses anything else when the flag is sent back).
func storeFlags(flags []imap.Flag) ([]string, error) {
	in := make([]string, len(flags))
	for i, f := range flags {
		in[i] = string(f)
	}
	out, err := store.CanonicalFlags(in)
	if err != nil {
		return nil, errBadFlag
	}
	return out, nil
}

// systemFlag returns the canonical spelling of a system flag.
func systemFlag(f imap.Flag) (imap.Flag, bool) {
	for _, sf := range systemFlags {
		if strings.EqualFold(string(f), string(sf)) {
			return sf, true
		}
	}
	return "", false
}

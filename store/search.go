package store

import "time"

// SearchCriteria is a protocol-neutral SEARCH program: all non-zero fields must hold (AND).
// Sequence numbers are translated to UIDs by the caller.
type SearchCriteria struct {
	UIDs []UIDSet // the UID must be in each set

	Since, Before         time.Time // internal date, date-only: Since <= date < Before
	SentSince, SentBefore time.Time // Date header, date-only

	Header []HeaderMatch // substring match, case-insensitive; empty Value means "present"
	Body   []string      // substrings of the body text
	Text   []string      // substrings of header or body text

	Flag    []string
	NotFlag []string

	Larger  int64 // size > Larger when non-zero
	Smaller int64 // size < Smaller when non-zero

	Not []SearchCriteria
	Or  [][2]SearchCriteria
}

// HeaderMatch is one HEADER search key.
type HeaderMatch struct{ Key, Value string }

// UIDSet is a union of inclusive UID ranges; Stop 0 means "no upper bound".
type UIDSet []UIDRange

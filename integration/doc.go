// Package integration holds twinmail's end-to-end tests: they build the real cmd/twinmail
// binary, run it against a real PostgreSQL (a throwaway cluster per test binary from
// store/storetest, or TWINMAIL_TEST_DSN) and drive it over real TCP with go-imap's imapclient,
// raw protocol lines and the CLI. Assertions about what landed in the database go through the
// store package, read-only. It must not import imapbackend, replica or pgx: it drives the binary.
package integration

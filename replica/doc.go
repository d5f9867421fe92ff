// Package replica converges two twinmail replicas (each its own PostgreSQL database) that
// both accept mail and client changes, also while cut off from each other.
//
// plan.go decides (pure, table-tested); apply.go and worker.go read both sides through
// store, apply each side's part in one transaction and advance sync points only after both
// sides applied; verify.go compares two replicas. replica must not import pgx, go-imap,
// imapbackend or lmtp: it speaks to PostgreSQL only through store.
package replica

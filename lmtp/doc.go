// Package lmtp delivers mail into twinmail over LMTP (RFC 2033), the way Postfix and other
// MTAs hand over mail for final delivery.
//
// It owns the delivery path: the LMTP dialogue (through go-smtp's server in LMTP mode),
// recipient lookup ("name", "name@domain", "name+folder@domain"), the trace headers added to
// each message (Return-Path and Received), line-ending normalisation, the size limit and the
// per-recipient replies after DATA. A recipient gets 250 only after store.Append has
// committed its copy, so an acknowledged delivery survives a crash.
//
// lmtp imports store and internal/mailparse (plus go-smtp). It must not import pgx,
// imapbackend or replica: the database is reached only through store's domain types, and
// IMAP sessions learn of deliveries through store's change notifications.
package lmtp

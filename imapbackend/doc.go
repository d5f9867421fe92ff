// Package imapbackend implements go-imap's imapserver.Session on top of store.
//
// It owns the per-connection IMAP state: login, the selected mailbox and the client's view of
// it (sorted UIDs, sequence numbers, ghosts of messages expunged while expunges could not be
// announced, the MODSEQ the client is up to date with), and the live-update path that turns
// store change notifications into EXISTS, EXPUNGE and FETCH FLAGS responses.
//
// Each session owns its view (notes/go-imap-v2.md §3, design B): go-imap's MailboxTracker is
// not used. A Backend-wide hub (notify.go) records the highest MODSEQ known per mailbox, fed by
// store.Listen and by the sessions' own commands, so that Poll costs no SQL when nothing
// changed.
//
// imapbackend imports store and internal/mailparse (plus go-imap). It must not import pgx,
// goose, sql, replica or lmtp: all database access goes through store's domain types.
package imapbackend

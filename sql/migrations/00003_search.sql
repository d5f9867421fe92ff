-- +goose Up
-- Indexes for SEARCH and SELECT on large mailboxes (docs/performance.md).
--
-- Substring searches (SUBJECT, FROM, HEADER, BODY, TEXT) are ILIKE and case-insensitive
-- regular expressions over messages.search_header and messages.search_text; pg_trgm's GIN
-- operator class serves both. account_id leads each index (btree_gin), so a term that is
-- common in other accounts costs nothing in this one: the account's postings and the term's
-- are intersected inside the index. The mailbox filter is applied through the join with
-- mailbox_messages; for a term in many messages of the mailbox the planner prefers the join
-- over the whole mailbox instead.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE INDEX messages_search_header_trgm ON messages USING gin (account_id, search_header gin_trgm_ops);
CREATE INDEX messages_search_text_trgm ON messages USING gin (account_id, search_text gin_trgm_ops);

-- The unseen messages of a mailbox, for SELECT's [UNSEEN n] (store.FirstUnseen repeats the
-- predicate word for word) and for UNSEEN searches and counts. Flags are stored canonically.
CREATE INDEX mailbox_messages_unseen ON mailbox_messages (account_id, mailbox_id, uid)
    WHERE NOT (flags @> ARRAY['\Seen']);

-- +goose Down
DROP INDEX mailbox_messages_unseen;
DROP INDEX messages_search_text_trgm;
DROP INDEX messages_search_header_trgm;

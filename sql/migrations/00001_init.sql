-- +goose Up
-- twinmail schema, version 1.
--
-- Every table carries account_id and every query is scoped by it (DESIGN invariant 6), so the
-- schema can later be distributed by account. UIDs and MODSEQs of a mailbox are allocated
-- under that mailbox row's lock (store/alloc.go), which makes them commit-ordered.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row: who this replica is. Set by `migrate`/`serve --replica-id`, random otherwise.
CREATE TABLE replica_info (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    replica_id text    NOT NULL
);

CREATE TABLE accounts (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Live mailboxes. A deleted mailbox's row is removed; mailbox_names keeps what its name used.
CREATE TABLE mailboxes (
    account_id     uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    id             uuid        NOT NULL,
    name           text        NOT NULL,
    uidvalidity    bigint      NOT NULL CHECK (uidvalidity > 0 AND uidvalidity < 4294967296),
    uid_next       bigint      NOT NULL DEFAULT 1 CHECK (uid_next > 0),
    highest_modseq bigint      NOT NULL DEFAULT 1,
    subscribed     boolean     NOT NULL DEFAULT false,
    special_use    text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, name)
);

-- Every name a mailbox of the account ever had, with the highest UIDNEXT used under it, so a
-- re-created or renamed-to name continues above it with the same UIDVALIDITY (invariant 2).
CREATE TABLE mailbox_names (
    account_id  uuid   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    name        text   NOT NULL,
    uidvalidity bigint NOT NULL,
    uid_next    bigint NOT NULL,
    modseq      bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (account_id, name)
);

-- Message bodies, content-addressed per account and shared by copies.
CREATE TABLE bodies (
    account_id uuid   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    digest     bytea  NOT NULL,
    size       bigint NOT NULL,
    data       bytea  NOT NULL,
    PRIMARY KEY (account_id, digest)
);

-- lz4 compresses bodies several times faster than the default pglz; builds without lz4
-- keep pglz.
-- +goose StatementBegin
DO $$ BEGIN
    ALTER TABLE bodies ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
END $$;
-- +goose StatementEnd

-- A message: its UUIDv7 never changes (invariant 4). Envelope and body structure are parsed
-- once at ingest; search_header/search_text feed SEARCH.
CREATE TABLE messages (
    account_id     uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    id             uuid        NOT NULL,
    digest         bytea       NOT NULL,
    size           bigint      NOT NULL,
    internal_date  timestamptz NOT NULL,
    sent_date      timestamptz,
    envelope       jsonb       NOT NULL,
    bodystructure  jsonb       NOT NULL,
    search_header  text        NOT NULL DEFAULT '',
    search_text    text        NOT NULL DEFAULT '',
    PRIMARY KEY (account_id, id),
    FOREIGN KEY (account_id, digest) REFERENCES bodies (account_id, digest) ON UPDATE CASCADE
);

-- Where a message is: one mailbox, one UID. flags are canonical spellings.
CREATE TABLE mailbox_messages (
    account_id uuid   NOT NULL,
    mailbox_id uuid   NOT NULL,
    uid        bigint NOT NULL,
    message_id uuid   NOT NULL,
    flags      text[] NOT NULL DEFAULT '{}',
    modseq     bigint NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, uid),
    UNIQUE (account_id, message_id),
    FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id) ON DELETE CASCADE ON UPDATE CASCADE,
    FOREIGN KEY (account_id, message_id) REFERENCES messages (account_id, id) ON UPDATE CASCADE
);
CREATE INDEX mailbox_messages_modseq ON mailbox_messages (account_id, mailbox_id, modseq);

-- Expunge tombstones: what was at a UID and when (MODSEQ) it went.
CREATE TABLE expunged (
    account_id uuid   NOT NULL,
    mailbox_id uuid   NOT NULL,
    uid        bigint NOT NULL,
    message_id uuid   NOT NULL,
    modseq     bigint NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, uid),
    FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX expunged_modseq ON expunged (account_id, mailbox_id, modseq);

-- +goose Down
DROP TABLE expunged, mailbox_messages, messages, bodies, mailbox_names, mailboxes, accounts, replica_info;

-- +goose Up
-- State the replication worker keeps on each replica (replica/, store/sync.go).

-- Flags last agreed with the peer (NULL: never synced) and when flags last changed, for the
-- per-flag three-way merge (latest change wins, ties by replica id).
-- sync_placed: the message's place (mailbox, UID) was agreed with the peer; a message
-- moved or copied here since is news to the peer (a delete on the peer must not take it).
ALTER TABLE mailbox_messages
    ADD COLUMN sync_flags text[],
    ADD COLUMN sync_placed boolean NOT NULL DEFAULT false,
    ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX expunged_message ON expunged (account_id, message_id);

-- Name and subscription last agreed with the peer, and when they last changed locally.
ALTER TABLE mailboxes
    ADD COLUMN sync_name             text,
    ADD COLUMN sync_subscribed       boolean,
    ADD COLUMN name_changed_at       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN subscribed_changed_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE accounts ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT now();

-- Deleted mailboxes, so the peer's copy is deleted too rather than re-created.
CREATE TABLE mailbox_tombstones (
    account_id uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    id         uuid        NOT NULL,
    name       text        NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id)
);

-- Deleted accounts (by name and id), so the peer deletes its copy instead of restoring it.
CREATE TABLE account_tombstones (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- Per peer and mailbox: the local HIGHESTMODSEQ up to which everything was agreed.
CREATE TABLE sync_points (
    peer       text   NOT NULL,
    account_id uuid   NOT NULL,
    mailbox_id uuid   NOT NULL,
    modseq     bigint NOT NULL,
    PRIMARY KEY (peer, account_id, mailbox_id)
);

-- Worker statistics, readable by `twinmail status` from either side.
CREATE TABLE sync_status (
    peer            text        PRIMARY KEY,
    last_round_at   timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    last_error_at   timestamptz,
    rounds          bigint      NOT NULL DEFAULT 0,
    messages_copied bigint      NOT NULL DEFAULT 0,
    bytes_copied    bigint      NOT NULL DEFAULT 0,
    clashes         bigint      NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE sync_status, sync_points, account_tombstones, mailbox_tombstones;
ALTER TABLE accounts DROP COLUMN password_changed_at;
ALTER TABLE mailboxes DROP COLUMN sync_name, DROP COLUMN sync_subscribed, DROP COLUMN name_changed_at, DROP COLUMN subscribed_changed_at;
ALTER TABLE mailbox_messages DROP COLUMN sync_flags, DROP COLUMN sync_placed, DROP COLUMN changed_at;

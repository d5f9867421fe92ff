package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twinmail/twinmail/store"
)

// migrateCmd is "twinmail migrate": it applies the pending schema migrations.
type migrateCmd struct {
	fs        *flagSet
	db        string
	replicaID string
	logs      logFlags
	logger    *slog.Logger
}

func newMigrateCmd(sio stdio) *migrateCmd {
	c := &migrateCmd{}
	c.fs = newFlagSet(sio, "migrate", "twinmail migrate --db DSN", `
Apply every pending schema migration to the database. Running it again is harmless, and
several processes may run it at once: they take turns on an advisory lock. A database whose
schema is newer than this binary is refused.`)
	c.fs.dbFlag(&c.db)
	c.fs.StringVar(&c.replicaID, "replica-id", "", "give this database the replica `id` (only if it has none yet; a replica's id never changes;\n"+
		"default: a random id at first use)")
	c.fs.logFlags(&c.logs)
	return c
}

func (c *migrateCmd) parseFlags(args []string) error {
	if _, err := c.fs.parse(args, 0, 0); err != nil {
		return err
	}
	if err := requireDB(c.db); err != nil {
		return err
	}
	var err error
	c.logger, err = c.logs.logger(c.fs.sio.err)
	return err
}

func (c *migrateCmd) run(ctx context.Context) error {
	st, err := store.Open(ctx, c.db, store.Options{Logger: c.logger})
	if err != nil {
		return err
	}
	defer st.Close()
	before, _, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if err := st.Migrate(ctx); err != nil {
		return schemaError(err)
	}
	if c.replicaID != "" {
		if err := st.SetReplicaID(ctx, c.replicaID); err != nil {
			return err
		}
	}
	after, _, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if after == before {
		fmt.Fprintf(c.fs.sio.out, "schema is up to date at version %d\n", after)
	} else {
		fmt.Fprintf(c.fs.sio.out, "schema migrated from version %d to %d\n", before, after)
	}
	return nil
}

package storetest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/twinmail/twinmail/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// schema reports the newest applied migration and whether the accounts table exists in the
// database at dsn.
func schema(t *testing.T, dsn string) (version int64, accounts bool) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT (SELECT max(version_id) FROM goose_db_version WHERE is_applied), to_regclass('accounts') IS NOT NULL`).Scan(&version, &accounts)
	if err != nil {
		t.Fatalf("read schema of %s: %v", dsn, err)
	}
	return version, accounts
}

func TestDSNGivesDistinctMigratedDatabases(t *testing.T) {
	a, b := storetest.DSN(t), storetest.DSN(t)
	if a == b {
		t.Fatalf("DSN() twice = %q both times, want two databases", a)
	}
	for _, dsn := range []string{a, b} {
		version, accounts := schema(t, dsn)
		if version < 1 || !accounts {
			t.Errorf("schema of %s: version %d, accounts table %v; want migrated", dsn, version, accounts)
		}
	}

	// The databases are separate: a table made in one is not in the other.
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatal(err)
	}
	connB, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer connB.Close(context.Background())
	var found bool
	if err := connB.QueryRow(ctx, `SELECT to_regclass('only_in_a') IS NOT NULL`).Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found {
		t.Error("table made in the first database shows in the second")
	}
}

func TestParallelDatabases(t *testing.T) {
	for _, name := range []string{"a", "b", "c", "d"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if version, accounts := schema(t, storetest.DSN(t)); version < 1 || !accounts {
				t.Errorf("version %d, accounts table %v; want migrated", version, accounts)
			}
		})
	}
}

func TestNew(t *testing.T) {
	s := storetest.New(t)
	db, known, err := s.SchemaVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if db != known || db < 1 {
		t.Errorf("SchemaVersion() = %d, %d; want the newest known version applied", db, known)
	}
}

func TestClusterFor(t *testing.T) {
	c := storetest.ClusterFor(t)
	if os.Getenv("TWINMAIL_TEST_DSN") != "" {
		if c != nil {
			t.Errorf("ClusterFor() = %v with TWINMAIL_TEST_DSN set, want nil", c)
		}
		return
	}
	if c == nil || c.Port() == 0 {
		t.Fatalf("ClusterFor() = %v, want the running cluster", c)
	}
	if err := c.CreateDatabase(t.Context(), "extra"); err != nil {
		t.Fatal(err)
	}
}

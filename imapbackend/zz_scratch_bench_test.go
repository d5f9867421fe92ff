package imapbackend_test

import (
	"context"
	"os"
	"testing"

	"github.com/twinmail/twinmail/store"
)

// Temporary: fills a database for query-plan experiments.
func TestScratchFill(t *testing.T) {
	dsn := os.Getenv("SCRATCH_DSN")
	if dsn == "" {
		t.Skip()
	}
	st, err := store.Open(context.Background(), dsn, store.Options{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := fillBig(st, 100000); err != nil {
		t.Fatal(err)
	}
}

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

const (
	qInsertAccount = `INSERT INTO accounts (id, name, password_hash) VALUES ($1, $2, $3)`
	qAccountByName = `SELECT id, name, password_hash, created_at FROM accounts WHERE name = $1`
	qListAccounts  = `SELECT id, name, created_at FROM accounts ORDER BY name`
	qDeleteAccount = `DELETE FROM accounts WHERE name = $1`
	qSetPassword   = `UPDATE accounts SET password_hash = $2, updated_at = now(), password_changed_at = now() WHERE name = $1`
)

// DefaultMailboxes are created with every account, with their special-use attributes.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{InboxName, ""},
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
	{"Archive", `\Archive`},
}

// dummyHash is compared against when an account does not exist, so a failed login costs the
// same time whether or not the name is known. It is made on first use: every process
// (even `twinmail --help`) would otherwise pay for a bcrypt at start.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("twinmail-no-such-account"), bcrypt.DefaultCost)
	return h
})

// ValidateAccountName reports whether name can name an account: 1-255 printable
// characters without spaces.
func ValidateAccountName(name string) error {
	if name == "" || len(name) > 255 {
		return errors.New("account name must be 1 to 255 bytes")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || r == '"' || r == '\\' {
			return fmt.Errorf("account name %q contains a space, quote, backslash or control character", name)
		}
	}
	return nil
}

func (s *Store) hashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	cost := s.opts.BcryptCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CreateAccount creates an account with INBOX, Sent, Drafts, Trash, Junk and Archive, all
// subscribed. ErrAccountExists if the name is taken.
func (s *Store) CreateAccount(ctx context.Context, name, password string) (Account, error) {
	if err := ValidateAccountName(name); err != nil {
		return Account{}, err
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return Account{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Account{}, fmt.Errorf("generate account id: %w", err)
	}
	acct := Account{ID: id, Name: name, CreatedAt: time.Now()}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qInsertAccount, id, name, hash); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("account %q: %w", name, ErrAccountExists)
			}
			return err
		}
		for _, m := range DefaultMailboxes {
			if _, err := createMailbox(ctx, tx, id, m.Name, m.SpecialUse, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Account{}, fmt.Errorf("create account %q: %w", name, err)
	}
	return acct, nil
}

// Authenticate checks a password. It returns ErrAuthFailed for an unknown name and for a
// wrong password alike, after the same amount of work.
func (s *Store) Authenticate(ctx context.Context, name, password string) (Account, error) {
	var acct Account
	var hash string
	err := s.pool.QueryRow(ctx, qAccountByName, name).Scan(&acct.ID, &acct.Name, &hash, &acct.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return Account{}, ErrAuthFailed
	}
	if err != nil {
		return Account{}, fmt.Errorf("look up account: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return Account{}, ErrAuthFailed
	}
	return acct, nil
}

// LookupAccount finds an account by name (ErrNoSuchAccount).
func (s *Store) LookupAccount(ctx context.Context, name string) (Account, error) {
	var acct Account
	var hash string
	err := s.pool.QueryRow(ctx, qAccountByName, name).Scan(&acct.ID, &acct.Name, &hash, &acct.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("account %q: %w", name, ErrNoSuchAccount)
	}
	if err != nil {
		return Account{}, fmt.Errorf("look up account %q: %w", name, err)
	}
	return acct, nil
}

// LookupAddress finds the account of a delivery address: "name", "name@domain" or
// "name+folder@domain". It returns the account and the folder part ("" if none).
func (s *Store) LookupAddress(ctx context.Context, addr string) (Account, string, error) {
	local := addr
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local = addr[:i]
	}
	if acct, err := s.LookupAccount(ctx, local); err == nil || !errors.Is(err, ErrNoSuchAccount) {
		return acct, "", err
	}
	// Try the whole address as an account name, then the +detail form.
	if acct, err := s.LookupAccount(ctx, addr); err == nil || !errors.Is(err, ErrNoSuchAccount) {
		return acct, "", err
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		acct, err := s.LookupAccount(ctx, local[:i])
		return acct, local[i+1:], err
	}
	return Account{}, "", fmt.Errorf("address %q: %w", addr, ErrNoSuchAccount)
}

// ListAccounts lists all accounts by name.
func (s *Store) ListAccounts(ctx context.Context) ([]Account, error) {
	rows, err := s.pool.Query(ctx, qListAccounts)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	accts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Account, error) {
		var a Account
		return a, r.Scan(&a.ID, &a.Name, &a.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return accts, nil
}

// DeleteAccount deletes an account and all its mail (ErrNoSuchAccount).
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id AccountID
		if err := tx.QueryRow(ctx, `SELECT id FROM accounts WHERE name = $1 FOR UPDATE`, name).Scan(&id); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNoSuchAccount
			}
			return err
		}
		// Children first: mailbox_messages and messages reference each other's parents.
		for _, q := range []string{
			`DELETE FROM mailbox_messages WHERE account_id = $1`,
			`DELETE FROM expunged WHERE account_id = $1`,
			`DELETE FROM messages WHERE account_id = $1`,
			`DELETE FROM bodies WHERE account_id = $1`,
			`DELETE FROM mailboxes WHERE account_id = $1`,
			`DELETE FROM mailbox_names WHERE account_id = $1`,
			`DELETE FROM accounts WHERE id = $1`,
			`INSERT INTO account_tombstones (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`,
		} {
			args := []any{id}
			if strings.Contains(q, "$2") {
				args = append(args, name)
			}
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete account %q: %w", name, err)
	}
	return nil
}

// SetPassword replaces an account's password (ErrNoSuchAccount).
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	hash, err := s.hashPassword(password)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, qSetPassword, name, hash)
	if err != nil {
		return fmt.Errorf("set password of %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set password of %q: %w", name, ErrNoSuchAccount)
	}
	return nil
}

// Package sql holds twinmail's PostgreSQL schema as embedded, ordered goose migrations
// (migrations/NNNNN_name.sql). Only store applies them; import it as sqlfs so it never
// shadows database/sql. A migration that has landed on main is never edited.
package sql

import "embed"

// Migrations is the migrations folder, applied in file-name order.
//
//go:embed migrations/*.sql
var Migrations embed.FS

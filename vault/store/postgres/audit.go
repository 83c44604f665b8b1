package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alterhost/alterhost/vault/store"
)

// defaultAuditLimit is the page ListAudit returns when the filter has none.
const defaultAuditLimit = 100

var auditColumns = []string{"time", "subject", "agent", "parent_agent", "plugin", "tool",
	"provider", "method", "host", "path", "status", "duration_ns", "error_code"}

// AppendAudit stores records with one COPY, which is atomic; the store
// assigns IDs.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"audit"}, auditColumns,
		pgx.CopyFromSlice(len(records), func(i int) ([]any, error) {
			r := records[i]
			return []any{timestamp(r.Time), r.Subject, r.Agent, r.ParentAgent, r.Plugin,
				r.Tool, r.Provider, r.Method, r.Host, r.Path, int32(r.Status),
				int64(r.Duration), r.ErrorCode}, nil
		}))
	if err != nil {
		return fmt.Errorf("postgres: append audit: %w", err)
	}
	return nil
}

// ListAudit returns the records f selects, newest first, and among equal
// times the last appended first.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	for _, c := range []struct {
		column string
		value  string
	}{{"subject", f.Subject}, {"plugin", f.Plugin}, {"provider", f.Provider}} {
		if c.value != "" {
			arg(c.column+" =", c.value)
		}
	}
	if !f.Since.IsZero() {
		arg("time >=", f.Since)
	}
	q := `SELECT id, ` + strings.Join(auditColumns, ", ") + ` FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	args = append(args, limit)
	q += " ORDER BY time DESC, id DESC LIMIT $" + strconv.Itoa(len(args))

	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list audit: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditRecord, error) {
		var r store.AuditRecord
		var status int32
		var d int64
		err := row.Scan(&r.ID, &r.Time, &r.Subject, &r.Agent, &r.ParentAgent, &r.Plugin,
			&r.Tool, &r.Provider, &r.Method, &r.Host, &r.Path, &status, &d, &r.ErrorCode)
		r.Time, r.Status, r.Duration = r.Time.UTC(), int(status), time.Duration(d)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list audit: %w", err)
	}
	return rs, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/alterhost/alterhost/vault/store"
)

// defaultAuditLimit is the page ListAudit returns when the filter has none.
const defaultAuditLimit = 100

const auditColumns = `time, subject, agent, parent_agent, plugin, tool, provider,
	method, host, path, status, duration_ns, error_code`

// AppendAudit stores records in one transaction; the store assigns IDs.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	err := s.tx(ctx, func(c *sql.Conn) error {
		stmt, err := c.PrepareContext(ctx, `INSERT INTO audit (`+auditColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range records {
			if _, err := stmt.ExecContext(ctx, micros(r.Time), r.Subject, r.Agent, r.ParentAgent,
				r.Plugin, r.Tool, r.Provider, r.Method, r.Host, r.Path, r.Status,
				int64(r.Duration), r.ErrorCode); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	return nil
}

// ListAudit returns the records f selects, newest first, and among equal
// times the last appended first.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	var where []string
	var args []any
	for _, c := range []struct {
		column string
		value  string
	}{{"subject", f.Subject}, {"plugin", f.Plugin}, {"provider", f.Provider}} {
		if c.value != "" {
			where = append(where, c.column+" = ?")
			args = append(args, c.value)
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, f.Since.UnixMicro())
	}
	q := `SELECT id, ` + auditColumns + ` FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	q += " ORDER BY time DESC, id DESC LIMIT ?"
	args = append(args, limit)

	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	defer rows.Close()
	var rs []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var t, d int64
		if err := rows.Scan(&r.ID, &t, &r.Subject, &r.Agent, &r.ParentAgent, &r.Plugin,
			&r.Tool, &r.Provider, &r.Method, &r.Host, &r.Path, &r.Status, &d, &r.ErrorCode); err != nil {
			return nil, fmt.Errorf("sqlite: list audit: %w", err)
		}
		r.Time, r.Duration = time.UnixMicro(t).UTC(), time.Duration(d)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	return rs, nil
}

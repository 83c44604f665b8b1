-- The vault's first schema.
--
-- Times are Unix microseconds (the precision PostgreSQL keeps too), NULL for
-- a zero time.Time; durations are nanoseconds; scopes are a JSON array of
-- strings. Text compares bytewise (SQLite's BINARY collation), which is the
-- order ListGrants promises.

CREATE TABLE grants (
	subject      TEXT NOT NULL,
	provider     TEXT NOT NULL,
	id           TEXT NOT NULL UNIQUE,
	account_id   TEXT NOT NULL,
	scopes       TEXT NOT NULL,
	key_id       TEXT NOT NULL,
	secret       BLOB NOT NULL,
	expires_at   INTEGER,
	status       TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	refreshed_at INTEGER,
	PRIMARY KEY (subject, provider)
) STRICT, WITHOUT ROWID;

CREATE TABLE links (
	token_hash BLOB PRIMARY KEY,
	subject    TEXT NOT NULL,
	provider   TEXT NOT NULL,
	scopes     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX links_expires_at ON links (expires_at);

CREATE TABLE connect_states (
	state_hash   BLOB PRIMARY KEY,
	browser_hash BLOB NOT NULL,
	subject      TEXT NOT NULL,
	provider     TEXT NOT NULL,
	scopes       TEXT NOT NULL,
	verifier     TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX connect_states_expires_at ON connect_states (expires_at);

-- AUTOINCREMENT: audit ids are never reused, even after old rows are pruned.
CREATE TABLE audit (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	time         INTEGER NOT NULL,
	subject      TEXT NOT NULL,
	agent        TEXT NOT NULL,
	parent_agent TEXT NOT NULL,
	plugin       TEXT NOT NULL,
	tool         TEXT NOT NULL,
	provider     TEXT NOT NULL,
	method       TEXT NOT NULL,
	host         TEXT NOT NULL,
	path         TEXT NOT NULL,
	status       INTEGER NOT NULL,
	duration_ns  INTEGER NOT NULL,
	error_code   TEXT NOT NULL
) STRICT;

-- ListAudit reads newest first, optionally by one of these columns; every
-- index ends in the rowid (id), which breaks ties between equal times.
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_subject_time ON audit (subject, time);
CREATE INDEX audit_plugin_time ON audit (plugin, time);
CREATE INDEX audit_provider_time ON audit (provider, time);

-- The vault's first schema.
--
-- subject and provider collate "C" (bytewise), so ListGrants orders as Go
-- and the SQLite store do, whatever the database's default collation.

CREATE TABLE grants (
	subject      text COLLATE "C" NOT NULL,
	provider     text COLLATE "C" NOT NULL,
	id           text NOT NULL UNIQUE,
	account_id   text NOT NULL,
	scopes       text[] NOT NULL,
	key_id       text NOT NULL,
	secret       bytea NOT NULL,
	expires_at   timestamptz,
	status       text NOT NULL,
	created_at   timestamptz NOT NULL,
	updated_at   timestamptz NOT NULL,
	refreshed_at timestamptz,
	PRIMARY KEY (subject, provider)
);

CREATE TABLE links (
	token_hash bytea PRIMARY KEY,
	subject    text NOT NULL,
	provider   text NOT NULL,
	scopes     text[] NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);

CREATE INDEX links_expires_at ON links (expires_at);

CREATE TABLE connect_states (
	state_hash   bytea PRIMARY KEY,
	browser_hash bytea NOT NULL,
	subject      text NOT NULL,
	provider     text NOT NULL,
	scopes       text[] NOT NULL,
	verifier     text NOT NULL,
	created_at   timestamptz NOT NULL,
	expires_at   timestamptz NOT NULL
);

CREATE INDEX connect_states_expires_at ON connect_states (expires_at);

CREATE TABLE audit (
	id           bigserial PRIMARY KEY,
	time         timestamptz NOT NULL,
	subject      text NOT NULL,
	agent        text NOT NULL,
	parent_agent text NOT NULL,
	plugin       text NOT NULL,
	tool         text NOT NULL,
	provider     text NOT NULL,
	method       text NOT NULL,
	host         text NOT NULL,
	path         text NOT NULL,
	status       integer NOT NULL,
	duration_ns  bigint NOT NULL,
	error_code   text NOT NULL
);

-- ListAudit reads newest first (ties: last appended first), optionally by
-- one of these columns.
CREATE INDEX audit_time ON audit (time DESC, id DESC);
CREATE INDEX audit_subject_time ON audit (subject, time DESC, id DESC);
CREATE INDEX audit_plugin_time ON audit (plugin, time DESC, id DESC);
CREATE INDEX audit_provider_time ON audit (provider, time DESC, id DESC);

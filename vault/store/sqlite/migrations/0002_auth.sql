-- The authorization server's tables: the MCP clients alterhost knows,
-- authorization codes, access and refresh tokens, and browser sessions.
--
-- Codes, tokens and session ids are kept only as hashes. Times and scopes
-- are encoded as in 0001. No foreign keys: a client whose cached metadata
-- document expires is deleted, but the codes and tokens issued to it stay.

CREATE TABLE clients (
	id          TEXT PRIMARY KEY,
	secret_hash BLOB,             -- NULL for a public client
	metadata    BLOB NOT NULL,    -- the JSON as given, byte for byte
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER           -- NULL for a registered client
) STRICT, WITHOUT ROWID;

CREATE INDEX clients_expires_at ON clients (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE auth_codes (
	code_hash      BLOB PRIMARY KEY,
	client_id      TEXT NOT NULL,
	subject        TEXT NOT NULL,
	redirect_uri   TEXT NOT NULL,
	code_challenge TEXT NOT NULL,
	resource       TEXT NOT NULL,
	scopes         TEXT NOT NULL,
	created_at     INTEGER NOT NULL,
	expires_at     INTEGER NOT NULL,
	used_at        INTEGER,        -- NULL until redeemed
	family_id      TEXT NOT NULL   -- '' until redeemed
) STRICT, WITHOUT ROWID;

CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

-- Access and refresh tokens in one table: a family is revoked with one
-- UPDATE by family_id.
CREATE TABLE tokens (
	hash       BLOB PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
	family_id  TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	subject    TEXT NOT NULL,
	resource   TEXT NOT NULL,
	scopes     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	rotated_at INTEGER,
	revoked_at INTEGER
) STRICT, WITHOUT ROWID;

CREATE INDEX tokens_family_id ON tokens (family_id);
CREATE INDEX tokens_expires_at ON tokens (expires_at);

CREATE TABLE sessions (
	hash       BLOB PRIMARY KEY,
	subject    TEXT NOT NULL,
	csrf       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- The authorization server's tables: the MCP clients alterhost knows,
-- authorization codes, access and refresh tokens, and browser sessions.
--
-- Codes, tokens and session ids are kept only as hashes. No foreign keys:
-- a client whose cached metadata document expires is deleted, but the
-- codes and tokens issued to it stay.

CREATE TABLE clients (
	id          text PRIMARY KEY,
	secret_hash bytea,               -- NULL for a public client
	metadata    bytea NOT NULL,      -- the JSON as given, byte for byte
	created_at  timestamptz NOT NULL,
	expires_at  timestamptz          -- NULL for a registered client
);

CREATE INDEX clients_expires_at ON clients (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE auth_codes (
	code_hash      bytea PRIMARY KEY,
	client_id      text NOT NULL,
	subject        text NOT NULL,
	redirect_uri   text NOT NULL,
	code_challenge text NOT NULL,
	resource       text NOT NULL,
	scopes         text[] NOT NULL,
	created_at     timestamptz NOT NULL,
	expires_at     timestamptz NOT NULL,
	used_at        timestamptz,      -- NULL until redeemed
	family_id      text NOT NULL     -- '' until redeemed
);

CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

-- Access and refresh tokens in one table: a family is revoked with one
-- UPDATE by family_id.
CREATE TABLE tokens (
	hash       bytea PRIMARY KEY,
	kind       text NOT NULL CHECK (kind IN ('access', 'refresh')),
	family_id  text NOT NULL,
	client_id  text NOT NULL,
	subject    text NOT NULL,
	resource   text NOT NULL,
	scopes     text[] NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	rotated_at timestamptz,
	revoked_at timestamptz
);

CREATE INDEX tokens_family_id ON tokens (family_id);
CREATE INDEX tokens_expires_at ON tokens (expires_at);

CREATE TABLE sessions (
	hash       bytea PRIMARY KEY,
	subject    text NOT NULL,
	csrf       text NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);

CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- 0003: what a browser session's person is called (an e-mail address in
-- OIDC mode), shown to them on the consent page beside the subject.
ALTER TABLE sessions ADD COLUMN name TEXT NOT NULL DEFAULT '';

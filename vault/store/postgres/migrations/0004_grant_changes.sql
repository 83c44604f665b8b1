-- 0004: every change to a grant is announced on the channel
-- alterhost_grants, so each instance drops its cached copy at once: a grant
-- disconnected, refreshed or re-consented through one instance is what the
-- others use on their next call. The payload is the grant's subject and
-- provider as a JSON array.
CREATE FUNCTION alterhost_grant_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	row grants%ROWTYPE;
BEGIN
	IF TG_OP = 'DELETE' THEN
		row := OLD;
	ELSE
		row := NEW;
	END IF;
	PERFORM pg_notify('alterhost_grants', json_build_array(row.subject, row.provider)::text);
	RETURN NULL;
END
$$;

CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants
	FOR EACH ROW EXECUTE FUNCTION alterhost_grant_changed();

-- 0004: nothing for SQLite. PostgreSQL's 0004 announces grant changes to
-- the other instances sharing its database; an SQLite file has one process,
-- whose vault forgets a changed grant itself. The versions stay in step.
SELECT 1;

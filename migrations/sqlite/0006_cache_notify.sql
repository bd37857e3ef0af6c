-- Nothing to do on SQLite: one process holds the database, and every change
-- goes through its Store, which updates its cache itself (src/store/cache.rs).
-- The file keeps the two migration trees in step.
SELECT 1;

-- The claim finds the heads of the open conversations through the
-- *_open_conversation indexes (0007). These two, of the open rows by status
-- and due time, served an earlier claim; nothing reads them now, and every
-- insert and every status change of an open row wrote them (BENCHMARKS.md,
-- session 5).
DROP INDEX inbound_open;
DROP INDEX outbound_open;

-- The claim picks the oldest open row of each conversation. It used an index
-- of every row ever received, and skipped a conversation's finished rows one
-- by one (each a table lookup) to find its open ones: the longer a
-- conversation's history, the slower every claim (BENCHMARKS.md, B2 and B5).
-- Only open rows are indexed now, so the heads of the open conversations are
-- the first entries of each group of this small index, and finished rows
-- leave it.
DROP INDEX inbound_conversation;
CREATE INDEX inbound_open_conversation ON inbound_events (connection_id, conversation, seq)
    WHERE status IN ('pending', 'processing');
DROP INDEX outbound_conversation;
CREATE INDEX outbound_open_conversation ON outbound_messages (connection_id, conversation, seq)
    WHERE status IN ('pending', 'sending');

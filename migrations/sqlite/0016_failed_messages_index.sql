-- `/metrics` reads the queues' depths by status on every scrape. The open
-- rows are read through the *_open_conversation indexes (0007) and the dead
-- events through inbound_dead (0009); the failed messages get a small index
-- of their own, which only a message that fails enters (written once).
CREATE INDEX outbound_failed ON outbound_messages (connection_id, seq) WHERE status = 'failed';

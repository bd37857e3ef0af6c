-- Channels beside NAVER WORKS (issue 22): what a channel adapter keeps about
-- a connection that is neither a secret nor a column every channel has
-- (Slack: the workspace and bot that `auth.test` named, the command
-- acknowledgement text), as a JSON object the adapter owns. NAVER WORKS
-- connections keep '{}'.
ALTER TABLE connections ADD COLUMN details TEXT NOT NULL DEFAULT '{}';

-- 0001_init: the initial schema.
--
-- Every table is keyed by dev_id first: tenants never see each other's rows.
-- Tables whose rows may carry a message (up to max_message_bytes) are rowid
-- tables; small keyed tables are WITHOUT ROWID.

-- history: the kept messages of logging pipes. Replay is a range scan of the
-- primary key; trimming deletes the lowest seqs.
CREATE TABLE history (
    dev_id  INTEGER NOT NULL,
    pipe    TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    id      TEXT    NOT NULL,
    time    INTEGER NOT NULL,
    event   TEXT    NOT NULL,
    data    TEXT    NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (dev_id, pipe, seq)
);
CREATE UNIQUE INDEX history_id ON history (dev_id, id);

-- pipe_seq: per pipe, the last sequence ever stored (kept forever, so a
-- sequence is never reused), how many history rows the pipe holds (stored)
-- and how many of the newest of them are kept (keep). Trimming is lazy:
-- up to keep/4 rows beyond keep may remain until the next bulk trim, and
-- reads show only the newest keep.
CREATE TABLE pipe_seq (
    dev_id   INTEGER NOT NULL,
    pipe     TEXT    NOT NULL,
    last_seq INTEGER NOT NULL,
    stored   INTEGER NOT NULL,
    keep     INTEGER NOT NULL,
    PRIMARY KEY (dev_id, pipe)
) WITHOUT ROWID;

-- pipe_settings: pipes_settings, the pipes that log (length > 0).
CREATE TABLE pipe_settings (
    dev_id INTEGER NOT NULL,
    pipe   TEXT    NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (dev_id, pipe)
) WITHOUT ROWID;

-- queue: users' offline queues of private messages.
CREATE TABLE queue (
    dev_id  INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    event   TEXT    NOT NULL,
    data    TEXT    NOT NULL,
    time    INTEGER NOT NULL,
    PRIMARY KEY (dev_id, user_id, idx)
);

-- queue_seq: the last queue index given per user, so indexes keep
-- increasing after a queue is taken or cleared.
CREATE TABLE queue_seq (
    dev_id   INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    last_idx INTEGER NOT NULL,
    PRIMARY KEY (dev_id, user_id)
) WITHOUT ROWID;

-- users_time: 0 = online now, else the unix time the user was last seen.
CREATE TABLE users_time (
    dev_id  INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    PRIMARY KEY (dev_id, user_id)
) WITHOUT ROWID;
CREATE INDEX users_time_online ON users_time (dev_id, user_id) WHERE time = 0;

-- users_auth: browser keys.
CREATE TABLE users_auth (
    dev_id  INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    hash    TEXT    NOT NULL,
    PRIMARY KEY (dev_id, user_id)
) WITHOUT ROWID;

-- users_data: per-user data browsers may read.
CREATE TABLE users_data (
    dev_id  INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    data    TEXT    NOT NULL,
    PRIMARY KEY (dev_id, user_id)
);

-- revoked_tokens: JWTs that no longer authenticate.
CREATE TABLE revoked_tokens (
    dev_id INTEGER NOT NULL,
    token  TEXT    NOT NULL,
    time   INTEGER NOT NULL,
    PRIMARY KEY (dev_id, token)
);

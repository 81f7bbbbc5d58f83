-- The journal's SQL for SQLite (state.db in the state directory). Named queries, loaded once by
-- store/dialect.py; postgres.sql has the same names. Parameters are :name; a list parameter
-- arrives as a JSON array and is read with json_each.

-- ---------------------------------------------------------------------------------- schema

-- name: schema_v1
CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT NOT NULL,
    step          TEXT NOT NULL,
    recipe        TEXT NOT NULL,
    backend       TEXT NOT NULL,
    request_json  TEXT NOT NULL,
    seed          INTEGER NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('intent', 'submitted', 'done', 'failed', 'abandoned')),
    task_id       TEXT,
    request_id    TEXT,
    created_at    REAL NOT NULL,
    submitted_at  REAL,
    finished_at   REAL,
    usage_images  INTEGER,
    error_code    TEXT,
    error_message TEXT,
    owner_host    TEXT NOT NULL,
    owner_pid     INTEGER NOT NULL
);
CREATE INDEX attempts_by_key ON attempts (key, state);
CREATE INDEX attempts_by_step ON attempts (step);
CREATE INDEX attempts_unfinished ON attempts (state) WHERE state IN ('intent', 'submitted');
CREATE TABLE results (
    attempt_id   INTEGER NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    url_redacted TEXT,
    PRIMARY KEY (attempt_id, idx)
) WITHOUT ROWID;
CREATE INDEX results_by_sha ON results (sha256);

-- name: schema_v2
-- Each running process's last heartbeat, and the seed first drawn for a step.
CREATE TABLE IF NOT EXISTS owners (
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    started  REAL NOT NULL,
    seen_at  REAL NOT NULL,
    PRIMARY KEY (host, pid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seeds (
    recipe    TEXT NOT NULL,
    step      TEXT NOT NULL,
    identity  TEXT NOT NULL,
    seed      INTEGER NOT NULL,
    PRIMARY KEY (recipe, step, identity)
) WITHOUT ROWID;

-- name: schema_v3_duplicates
-- Before the index: a journal written by an older wanrecipe may hold two live attempts of one
-- key. One stays live (a submitted one first: it has a task to re-attach to; then the newest),
-- the others are abandoned with the reason.
UPDATE attempts
SET state = 'abandoned', finished_at = :now, error_code = 'abandoned',
    error_message = 'schema v3 allows one live attempt per key; attempt '
        || (SELECT k.id FROM attempts AS k
            WHERE k.key = attempts.key AND k.state IN ('intent', 'submitted')
            ORDER BY k.state = 'submitted' DESC, k.id DESC LIMIT 1)
        || ' was kept'
WHERE state IN ('intent', 'submitted')
  AND id <> (SELECT k.id FROM attempts AS k
             WHERE k.key = attempts.key AND k.state IN ('intent', 'submitted')
             ORDER BY k.state = 'submitted' DESC, k.id DESC LIMIT 1);

-- name: schema_v3
CREATE UNIQUE INDEX IF NOT EXISTS attempts_one_live ON attempts (key)
    WHERE state IN ('intent', 'submitted');

-- -------------------------------------------------------------------------------- attempts

-- name: claim_key
-- The claim: refused by attempts_one_live while another attempt of the key is live.
INSERT INTO attempts (key, step, recipe, backend, request_json, seed, state, created_at,
                      owner_host, owner_pid)
VALUES (:key, :step, :recipe, :backend, :request_json, :seed, 'intent', :now, :host, :pid)
RETURNING id;

-- name: retire
UPDATE attempts
SET state = 'abandoned', finished_at = :now, error_code = 'abandoned', error_message = :reason
WHERE id = :id AND state IN ('intent', 'submitted')
RETURNING id;

-- name: to_submitted
UPDATE attempts
SET state = 'submitted', task_id = :task_id, request_id = :request_id, submitted_at = :now
WHERE id = :id AND state IN (SELECT value FROM json_each(:allowed))
RETURNING id;

-- name: to_done
UPDATE attempts
SET state = 'done', finished_at = :now, usage_images = :usage_images
WHERE id = :id AND state IN (SELECT value FROM json_each(:allowed))
RETURNING id;

-- name: to_failed
UPDATE attempts
SET state = 'failed', finished_at = :now, error_code = :code, error_message = :message
WHERE id = :id AND state IN (SELECT value FROM json_each(:allowed))
RETURNING id;

-- name: to_abandoned
UPDATE attempts
SET state = 'abandoned', finished_at = :now, error_code = 'abandoned', error_message = :reason
WHERE id = :id AND state IN (SELECT value FROM json_each(:allowed))
RETURNING id;

-- name: add_result
INSERT INTO results (attempt_id, idx, sha256, size, width, height, url_redacted)
VALUES (:attempt_id, :idx, :sha256, :size, :width, :height, :url_redacted);

-- name: take_over
-- An orphan changes hands only from the owner the taker saw (compare and set).
UPDATE attempts SET owner_host = :host, owner_pid = :pid
WHERE id = :id AND owner_host = :old_host AND owner_pid = :old_pid
  AND state IN ('intent', 'submitted')
RETURNING id;

-- --------------------------------------------------------------------------------- queries

-- name: get
SELECT * FROM attempts WHERE id = :id;

-- name: live_of_key
SELECT * FROM attempts WHERE key = :key AND state IN ('intent', 'submitted') ORDER BY id;

-- name: done_of_key
SELECT * FROM attempts WHERE key = :key AND state = 'done'
ORDER BY finished_at DESC NULLS LAST, id DESC;

-- name: in_flight
SELECT * FROM attempts
WHERE key = :key AND state IN ('intent', 'submitted')
  AND COALESCE(submitted_at, created_at) >= :cutoff
ORDER BY created_at, id;

-- name: unfinished
SELECT * FROM attempts WHERE state IN ('intent', 'submitted') ORDER BY id;

-- name: attempts
SELECT * FROM attempts
WHERE (:step IS NULL OR step = :step) AND (:key IS NULL OR key = :key)
  AND (:state IS NULL OR state = :state) AND (:recipe IS NULL OR recipe = :recipe)
ORDER BY id;

-- name: known_tasks
SELECT DISTINCT task_id FROM attempts WHERE task_id IN (SELECT value FROM json_each(:task_ids));

-- name: of_keys
SELECT * FROM attempts
WHERE key IN (SELECT value FROM json_each(:keys)) AND state IN ('done', 'intent', 'submitted')
ORDER BY finished_at DESC NULLS LAST, id DESC;

-- name: results_of
SELECT * FROM results WHERE attempt_id IN (SELECT value FROM json_each(:ids))
ORDER BY attempt_id, idx;

-- name: count_by_state
SELECT state, COUNT(*) AS n FROM attempts GROUP BY state;

-- name: keys_cached
SELECT COUNT(DISTINCT key) AS n FROM attempts WHERE state = 'done';

-- ----------------------------------------------------------------------------- maintenance

-- name: gc_attempts
DELETE FROM attempts
WHERE state IN ('done', 'failed', 'abandoned') AND key NOT IN (SELECT value FROM json_each(:keep));

-- name: clear_attempts
DELETE FROM attempts WHERE state IN (SELECT value FROM json_each(:states));

-- name: referenced_blobs
SELECT DISTINCT sha256 FROM results;

-- ---------------------------------------------------------------------- liveness and seeds

-- name: heartbeat
INSERT INTO owners (host, pid, started, seen_at) VALUES (:host, :pid, :now, :now)
ON CONFLICT (host, pid) DO UPDATE SET seen_at = excluded.seen_at;

-- name: sign_off
DELETE FROM owners WHERE host = :host AND pid = :pid;

-- name: owner_seen
SELECT seen_at FROM owners WHERE host = :host AND pid = :pid;

-- name: claim_seed
INSERT INTO seeds (recipe, step, identity, seed) VALUES (:recipe, :step, :identity, :seed)
ON CONFLICT DO NOTHING;

-- name: seed_of
SELECT seed FROM seeds WHERE recipe = :recipe AND step = :step AND identity = :identity;

-- 0001_init: jobs, their metric series and their validation rounds.
-- Times are milliseconds since the Unix epoch (UTC); NULL means "not yet".

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, so ids order submissions
    name             TEXT    NOT NULL,
    config           TEXT    NOT NULL, -- the full job config as JSON, defaults filled in
    status           TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled',
                                       'interrupted')),
    priority         INTEGER NOT NULL DEFAULT 0, -- higher runs first
    submitted_at     INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    iteration        INTEGER NOT NULL DEFAULT 0, -- of the last flushed metrics
    total            INTEGER NOT NULL,
    error            TEXT,
    work_dir         TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, -- durable, so a restart does not resume it
    latest           TEXT, -- {"name": value, ...} of the last flushed iteration
    best             TEXT  -- {"iteration", "model", "mean_dice"} of the best validation round
);
-- the scheduler's pick and the list's status filter
CREATE INDEX jobs_by_status ON jobs (status, priority DESC, id);

-- One row per (job, series, iteration): a resumed job writes the steps it
-- repeats again, and the primary key turns that into a replace, never a duplicate.
CREATE TABLE metrics (
    job   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name  TEXT    NOT NULL,
    step  INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (job, name, step)
) WITHOUT ROWID;

-- The series a job has, so listing them does not scan every point.
CREATE TABLE metric_names (
    job  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name TEXT    NOT NULL,
    PRIMARY KEY (job, name)
) WITHOUT ROWID;

-- One validation round of one model: detail is its JSON (per class and per case).
CREATE TABLE evaluations (
    job       INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,
    model     INTEGER NOT NULL,
    mean_dice REAL,
    detail    TEXT    NOT NULL,
    PRIMARY KEY (job, iteration, model)
) WITHOUT ROWID;

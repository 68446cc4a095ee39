-- pg_recsys model storage. One row per trained model; its arrays live in _recsys_model_data as
-- little-endian bytea chunks. Both are plain tables, so a model is written, rolled back,
-- replicated, dumped and restored like any other data.
CREATE TABLE @extschema@._recsys_model (
    id          bigserial PRIMARY KEY,
    kind        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    options     jsonb       NOT NULL,
    report      jsonb       NOT NULL,
    n_users     bigint      NOT NULL,
    n_items     bigint      NOT NULL,
    factors     integer     NOT NULL,
    -- Named models: each name is served on its own (recsys_* functions take model => name).
    name        text        NOT NULL DEFAULT 'default',
    -- When this version was last deployed (NULL: never); the served version of a name is the
    -- one deployed last. recsys_deploy sets it; rolled back with its transaction.
    deployed_at timestamptz,
    -- Pinned versions are never deleted by recsys.keep_models.
    pinned      boolean     NOT NULL DEFAULT false
);
CREATE INDEX ON @extschema@._recsys_model (name, deployed_at);
COMMENT ON TABLE @extschema@._recsys_model IS 'pg_recsys trained models (internal); per name, the version deployed last is served';

CREATE TABLE @extschema@._recsys_model_data (
    model_id  bigint  NOT NULL REFERENCES @extschema@._recsys_model (id) ON DELETE CASCADE,
    part      text    NOT NULL,
    chunk     integer NOT NULL,
    data      bytea   NOT NULL,
    PRIMARY KEY (model_id, part, chunk)
);
-- Factors are floats: compression would cost time and save nothing.
ALTER TABLE @extschema@._recsys_model_data ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@._recsys_model_data IS 'pg_recsys model arrays (internal)';

SELECT pg_catalog.pg_extension_config_dump('@extschema@._recsys_model', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@._recsys_model_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@._recsys_model_data', '');

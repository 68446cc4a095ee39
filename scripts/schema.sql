-- The default app schema pg_recsys reads (README "Default schema").
CREATE TABLE IF NOT EXISTS users (
    id bigint PRIMARY KEY, username text UNIQUE, age int, gender text, location text,
    created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS posts (
    id bigint PRIMARY KEY, owner_id bigint, title text, description text, tags text[], category text,
    project_code text, mood text, created_at timestamptz DEFAULT now());
-- Followees' newest posts, as index-only scans (owner, newest first, the id included).
CREATE INDEX IF NOT EXISTS posts_owner_idx ON posts (owner_id, created_at DESC NULLS LAST) INCLUDE (id);
-- Category-filtered feeds read the category's post ids now, on every call (index-only scans).
CREATE INDEX IF NOT EXISTS posts_category_idx ON posts (category) INCLUDE (id);
CREATE TABLE IF NOT EXISTS interactions (
    user_id bigint NOT NULL, post_id bigint NOT NULL, kind text NOT NULL, value real,
    created_at timestamptz DEFAULT now());
-- Per-call reads (recsys_train warns when one would scan): the user's history and each
-- followee's newest rows, trending's window, followees' posts. INCLUDE makes the per-user
-- reads index-only scans (no heap visit per row once the table is vacuumed).
CREATE INDEX IF NOT EXISTS interactions_user_time_idx ON interactions (user_id, created_at) INCLUDE (post_id, kind, value);
CREATE INDEX IF NOT EXISTS interactions_created_idx ON interactions (created_at);
CREATE TABLE IF NOT EXISTS follows (
    follower_id bigint NOT NULL, followee_id bigint NOT NULL, created_at timestamptz DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id));

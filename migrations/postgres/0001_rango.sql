-- The site's tables (Tango with Django, chapters 5 and 6).
CREATE TABLE category (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    slug TEXT NOT NULL UNIQUE,
    views BIGINT NOT NULL DEFAULT 0,
    likes BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE page (
    id BIGSERIAL PRIMARY KEY,
    category_id BIGINT NOT NULL REFERENCES category (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    url TEXT NOT NULL,
    views BIGINT NOT NULL DEFAULT 0,
    UNIQUE (category_id, title)
);

CREATE INDEX category_likes ON category (likes);
CREATE INDEX page_views ON page (views);

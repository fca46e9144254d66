-- The site's tables (Tango with Django, chapters 5 and 6).
CREATE TABLE category (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    slug TEXT NOT NULL UNIQUE,
    views INTEGER NOT NULL DEFAULT 0,
    likes INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE page (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    category_id INTEGER NOT NULL REFERENCES category (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    url TEXT NOT NULL,
    views INTEGER NOT NULL DEFAULT 0,
    UNIQUE (category_id, title)
);

CREATE INDEX category_likes ON category (likes);
CREATE INDEX page_views ON page (views);

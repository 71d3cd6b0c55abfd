-- 0009 catalogue: what a DCAT-AP catalogue says of organisations and data
-- products, keyless open products with their per-address rate limit, and the
-- datasets harvested from other catalogues. Forward-only.

-- Organisations as publishers: the national organisation number (Norway's
-- Enhetsregisteret: nine digits) and a contact point.
ALTER TABLE organisations
    ADD COLUMN org_number    text CHECK (org_number ~ '^[0-9]{9}$'),
    ADD COLUMN contact_email text CHECK (contact_email ~ '^[^@\s]+@[^@\s]+$'),
    ADD COLUMN homepage      text CHECK (homepage ~ '^https?://');

-- A product its provider lists appears in the catalogue; an open one (an open
-- licence, no price) is readable without a key. Titles and descriptions in
-- Norwegian Bokmål beside the main (English) ones.
ALTER TABLE data_products
    ADD COLUMN listed         boolean NOT NULL DEFAULT false,
    ADD COLUMN open           boolean NOT NULL DEFAULT false,
    ADD COLUMN title_nb       text NOT NULL DEFAULT '',
    ADD COLUMN description_nb text NOT NULL DEFAULT '',
    ADD COLUMN keywords       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN modified_at    timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT data_products_open_is_free
        CHECK (NOT open OR (price_month IS NULL AND licence <> 'proprietary'));
CREATE INDEX data_products_open ON data_products (id) WHERE open;

-- Requests without a key, counted per client address and fixed window.
CREATE TABLE anonymous_requests (
    client        text NOT NULL,
    window_start  timestamptz NOT NULL,
    requests      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (client, window_start)
);
CREATE INDEX anonymous_requests_window ON anonymous_requests (window_start);

-- Datasets of other catalogues (`citylab catalog harvest URL`): each one's RDF
-- description as harvested (Turtle), under the catalogue it came from.
CREATE TABLE harvest_sources (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url           text NOT NULL UNIQUE,            -- the document harvested
    catalog_iri   text NOT NULL,
    title         text NOT NULL,
    description   text NOT NULL,                   -- the source catalogue's RDF (Turtle)
    harvested_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE external_datasets (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id     bigint NOT NULL REFERENCES harvest_sources (id) ON DELETE CASCADE,
    iri           text NOT NULL,
    title         text NOT NULL,
    publisher     text NOT NULL DEFAULT '',
    landing_page  text,
    description   text NOT NULL,                   -- the dataset's RDF (Turtle)
    harvested_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_id, iri)
);

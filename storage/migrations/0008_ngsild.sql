-- 0008 NGSI-LD: context entities any producer creates (buildings, parking
-- spots, road segments, ...), stored per organisation with their attribute
-- names and type expanded against the producer's @context, and the
-- subscriptions of the NGSI-LD face with their delivery status.
-- Forward-only; applied once, in one transaction.

CREATE TABLE ngsild_entities (
    org          text NOT NULL,                      -- organisation slug (devices.org)
    entity_id    text NOT NULL,                      -- the entity's URI
    entity_type  text NOT NULL,                      -- expanded type IRI
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb, -- attribute IRI -> NGSI-LD attribute (normalized)
    lon          double precision,                   -- location, when it is a Point (geo-queries)
    lat          double precision,
    created_at   timestamptz NOT NULL DEFAULT now(),
    modified_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, entity_id)
);
CREATE INDEX ngsild_entities_type ON ngsild_entities (org, entity_type);

CREATE TABLE ngsild_subscriptions (
    id                 text PRIMARY KEY,             -- urn:ngsi-ld:Subscription:<uuid>
    org_id             bigint NOT NULL REFERENCES organisations (id),
    org                text NOT NULL,                -- the owner's slug
    tenant             text,                         -- NGSILD-Tenant at creation; NULL: all readable
    subscription       jsonb NOT NULL,               -- the subscription, terms expanded
    context            jsonb NOT NULL,               -- the @context notifications are compacted with
    active             boolean NOT NULL DEFAULT true,
    expires_at         timestamptz,
    throttling_s       double precision,
    times_sent         bigint NOT NULL DEFAULT 0,
    times_failed       bigint NOT NULL DEFAULT 0,
    last_notification  timestamptz,
    last_success       timestamptz,
    last_failure       timestamptz,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    modified_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ngsild_subscriptions_org ON ngsild_subscriptions (org_id);

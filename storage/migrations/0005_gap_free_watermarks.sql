-- 0005 gap-free watermarks: ingest_watermarks.seq now means "every pack of this
-- organisation's device and boot up to seq is accounted for in ingest_packs" (storage.packs,
-- docs/edge.md "What the watermark means"). Before, it was the highest committed
-- seq, which could pass a pack the broker had dropped. Recompute every watermark
-- from the packs actually there: the run of seqs 0, 1, 2, ... without a hole, whose
-- members are exactly those where seq equals its rank from 0.
WITH ranked AS (
    SELECT org, device, boot_id, seq,
           seq - (row_number() OVER (PARTITION BY org, device, boot_id ORDER BY seq) - 1) AS offset_from_rank
    FROM ingest_packs
), prefix AS (
    SELECT org, device, boot_id, max(seq) AS seq FROM ranked WHERE offset_from_rank = 0
    GROUP BY org, device, boot_id
)
UPDATE ingest_watermarks w SET seq = p.seq, updated_at = now()
FROM prefix p
WHERE w.org = p.org AND w.device = p.device AND w.boot_id = p.boot_id AND w.seq <> p.seq;

-- A boot whose pack 0 never arrived has no watermark yet (the edge learns the stored
-- packs from the ranges published with each commit).
DELETE FROM ingest_watermarks w
WHERE NOT EXISTS (SELECT 1 FROM ingest_packs p
                  WHERE p.org = w.org AND p.device = w.device AND p.boot_id = w.boot_id AND p.seq = 0);

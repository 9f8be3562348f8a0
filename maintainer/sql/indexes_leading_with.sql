-- Per column of %(columns)s: the valid, whole-table btree index on %(table)s whose first column it is, with
-- its columns in order (key, then INCLUDE; expressions left out). Of several, the one that holds most of the
-- other columns asked for, then the widest.
SELECT column_name, best.name, best.columns
FROM unnest(%(columns)s::text[]) AS column_name
LEFT JOIN LATERAL (
    SELECT i.indexrelid::regclass::text AS name,
           ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
                 JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) AS columns
    FROM pg_index AS i
    JOIN pg_class AS c ON c.oid = i.indexrelid
    JOIN pg_am AS am ON am.oid = c.relam
    JOIN pg_attribute AS first ON first.attrelid = i.indrelid AND first.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass(%(table)s) AND first.attname = column_name
      AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'
    ORDER BY (SELECT count(*) FROM pg_attribute AS held
              WHERE held.attrelid = i.indrelid AND held.attnum = ANY(i.indkey) AND held.attname = ANY(%(columns)s))
             DESC, i.indnatts DESC, 1
    LIMIT 1
) AS best ON true

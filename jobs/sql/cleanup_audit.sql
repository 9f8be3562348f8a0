-- The retention audit: every event older than the cutoff, by what the rule makes of it. Of those it would
-- delete, "left" counts the ones the rule already named at the last complete run's cutoff (%(mark)s):
-- what that run did not see (a status or end changed since, an event inserted with an old timestamp).
SELECT CASE WHEN s.status::text = ANY(%(statuses)s) AND s.ended_at < %(cutoff)s THEN 'would_delete'
            WHEN s.status::text = ANY(%(statuses)s) THEN s.status::text || '_recent'
            ELSE s.status::text END AS verdict,
       count(*) AS events, count(DISTINCT e.session_id) AS sessions, min(e.created_at) AS oldest_event_at,
       count(*) FILTER (WHERE e.created_at < %(mark)s AND s.ended_at < %(mark)s) AS left
FROM {events} AS e JOIN {sessions} AS s ON s.id = e.session_id
WHERE e.created_at < %(cutoff)s
GROUP BY 1

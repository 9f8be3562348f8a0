-- Whether pg_cron is installed here, and whether the role may read cron.job, all of it or (row security,
-- the extension's own policy) only the jobs it scheduled itself. Catalogs only: no privilege on cron needed.
SELECT c.oid IS NOT NULL AS installed,
       coalesce(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'), false) AS readable,
       coalesce(NOT c.relrowsecurity OR r.rolsuper OR r.rolbypassrls
                OR (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity)
                OR EXISTS (SELECT FROM pg_policies AS p
                           WHERE p.schemaname = 'cron' AND p.tablename = 'job' AND p.permissive = 'PERMISSIVE'
                             AND p.cmd IN ('SELECT', 'ALL') AND p.qual = 'true'
                             AND EXISTS (SELECT FROM unnest(p.roles) AS role
                                         WHERE CASE role WHEN 'public' THEN true
                                                         ELSE pg_has_role(role, 'USAGE') END)), false) AS sees_all
FROM pg_roles AS r
LEFT JOIN pg_namespace AS n ON n.nspname = 'cron'
LEFT JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = 'job'
WHERE r.rolname = current_user

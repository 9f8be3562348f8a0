-- parlant_maintainer: the least-privileged role maintainer needs, and nothing more.
--
-- Run it in the application's database as the owner of the Parlant tables, or as a superuser:
--     psql "$ADMIN_DATABASE_URL" -f config/parlant_maintainer_role.sql
-- then give the role a way in (ALTER ROLE parlant_maintainer PASSWORD '...', or your IAM/pg_hba
-- setup) and point MAINTAINER_DATABASE_URL at it. Running it again is harmless.
--
-- What each job needs, and what this grants:
--   cleanup-old-events        SELECT on parlant_session; SELECT and DELETE on parlant_event
--   update-statistics         ANALYZE  of parlant_agent, parlant_session, parlant_event   } MAINTAIN
--   maintain-parlant-events   VACUUM   of parlant_event                                  } on those
--   refresh-agent-analytics   REFRESH  of parlant_agent_analytics_daily                  } relations
--   maintain-parlant-indexes  EXECUTE on maintain_parlant_indexes(); what the function    } (17+)
--                             does, or in native mode REINDEX and ANALYZE, needs MAINTAIN }
--   run history               its own schema, maintainer, owned by the role
--   moving off pg_cron        where pg_cron is installed: reading every job of cron.job (see the end)
--
-- PostgreSQL 17 and later: the MAINTAIN privilege, granted per relation below, allows VACUUM, ANALYZE,
-- REINDEX and REFRESH MATERIALIZED VIEW and nothing else. (pg_maintain would grant it on every table
-- of the cluster: broader than needed.)
--
-- Before PostgreSQL 17 there is no MAINTAIN privilege: only the owner of a table (for VACUUM and
-- ANALYZE also the owner of the database) may maintain it, and PostgreSQL merely WARNs and skips the
-- table for anyone else (maintainer turns that into an error). There, either run the four maintenance
-- jobs with the owning role's credentials, or make this role a member of the owner
-- (GRANT <owner role> TO parlant_maintainer) knowing that membership gives it everything the owner may
-- do, including DROP TABLE. This file grants what needs no ownership and says so with a WARNING.
-- `maintainer check`, run as parlant_maintainer, lists exactly which job lacks which privilege.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parlant_maintainer') THEN
        CREATE ROLE parlant_maintainer LOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO parlant_maintainer', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO parlant_maintainer;
GRANT SELECT ON parlant_session TO parlant_maintainer;
GRANT SELECT, DELETE ON parlant_event TO parlant_maintainer;
CREATE SCHEMA IF NOT EXISTS maintainer AUTHORIZATION parlant_maintainer;

DO $$
BEGIN
    IF to_regprocedure('maintain_parlant_indexes()') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION maintain_parlant_indexes() TO parlant_maintainer;
    END IF;
    IF current_setting('server_version_num')::int >= 170000 THEN
        -- EXECUTE: the MAINTAIN keyword is unknown to the parser of older servers.
        EXECUTE 'GRANT MAINTAIN ON parlant_agent, parlant_session, parlant_event,'
                ' parlant_agent_analytics_daily TO parlant_maintainer';
    ELSE
        RAISE WARNING 'PostgreSQL % has no MAINTAIN privilege: parlant_maintainer can run cleanup-old-events'
                      ' but not VACUUM, ANALYZE, REINDEX or REFRESH the Parlant tables',
                      current_setting('server_version')
            USING HINT = 'run the maintenance jobs as the tables'' owner, or GRANT <owner role> TO parlant_maintainer'
                         ' (which gives it all the owner''s rights); see the comments at the top of this file';
    END IF;
END
$$;

-- Moving off pg_cron: pg_cron shows a role only the jobs it scheduled itself, so `maintainer check` and the
-- daemon would not see a job pg_cron still runs for another role beside maintainer. Where pg_cron is
-- installed, let parlant_maintainer read every job (name, schedule, command: it can change none of them;
-- like any role with USAGE on the schema, it may schedule jobs of its own, which run with its privileges).
-- That takes the owner of cron.job, usually a superuser; anyone else gets a WARNING with the statements.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
               WHERE n.nspname = 'cron' AND c.relname = 'job' AND pg_has_role(c.relowner, 'USAGE')) THEN
        GRANT USAGE ON SCHEMA cron TO parlant_maintainer;
        IF NOT EXISTS (SELECT FROM pg_policies
                       WHERE schemaname = 'cron' AND tablename = 'job' AND policyname = 'maintainer_reads_jobs') THEN
            CREATE POLICY maintainer_reads_jobs ON cron.job FOR SELECT TO parlant_maintainer USING (true);
        END IF;
    ELSE
        RAISE WARNING 'parlant_maintainer cannot see the pg_cron jobs of other roles: maintainer will not notice'
                      ' one still doing its work'
            USING HINT = 'as a superuser: GRANT USAGE ON SCHEMA cron TO parlant_maintainer; CREATE POLICY'
                         ' maintainer_reads_jobs ON cron.job FOR SELECT TO parlant_maintainer USING (true);';
    END IF;
END
$$;

-- Run once by the postgres image on an empty data volume (mounted into
-- /docker-entrypoint-initdb.d/), as POSTGRES_USER (helpdesk).
-- Each service owns its data: one database per service, none shared.
-- Keep in step with helpdesk.common.config.SERVICES (tests/unit/test_compose.py checks).
CREATE DATABASE tickets OWNER helpdesk;
CREATE DATABASE assignment OWNER helpdesk;
CREATE DATABASE sla OWNER helpdesk;
CREATE DATABASE erp_bridge OWNER helpdesk;
CREATE DATABASE portal OWNER helpdesk;

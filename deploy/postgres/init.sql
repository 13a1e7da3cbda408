-- Written by `python -m deploy.generate` from services.registry.SERVICES; edit the generator instead.
-- Development only: each role's password is dev-<role>. Production roles get real passwords.
-- A service's role owns its database (migrations run at start) and no other role may connect to it.

CREATE ROLE erasure_account LOGIN PASSWORD 'dev-erasure_account';
CREATE DATABASE erasure_account OWNER erasure_account;
REVOKE ALL ON DATABASE erasure_account FROM PUBLIC;

CREATE ROLE erasure_installer_sharing LOGIN PASSWORD 'dev-erasure_installer_sharing';
CREATE DATABASE erasure_installer_sharing OWNER erasure_installer_sharing;
REVOKE ALL ON DATABASE erasure_installer_sharing FROM PUBLIC;

CREATE ROLE erasure_payment LOGIN PASSWORD 'dev-erasure_payment';
CREATE DATABASE erasure_payment OWNER erasure_payment;
REVOKE ALL ON DATABASE erasure_payment FROM PUBLIC;

CREATE ROLE erasure_bookkeeping LOGIN PASSWORD 'dev-erasure_bookkeeping';
CREATE DATABASE erasure_bookkeeping OWNER erasure_bookkeeping;
REVOKE ALL ON DATABASE erasure_bookkeeping FROM PUBLIC;

CREATE ROLE erasure_newsletter LOGIN PASSWORD 'dev-erasure_newsletter';
CREATE DATABASE erasure_newsletter OWNER erasure_newsletter;
REVOKE ALL ON DATABASE erasure_newsletter FROM PUBLIC;

CREATE ROLE erasure_ledger LOGIN PASSWORD 'dev-erasure_ledger';
CREATE DATABASE erasure_ledger OWNER erasure_ledger;
REVOKE ALL ON DATABASE erasure_ledger FROM PUBLIC;

CREATE ROLE erasure_keys LOGIN PASSWORD 'dev-erasure_keys';
CREATE DATABASE erasure_keys OWNER erasure_keys;
REVOKE ALL ON DATABASE erasure_keys FROM PUBLIC;

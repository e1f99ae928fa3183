#!/bin/bash
# Runs once, when the postgres container initialises an empty volume. Creates the Synapse database
# with the C collation Synapse requires, and the MedMesh services' database, each with its own role.
set -euo pipefail
synapse_pw="$(cat /run/secrets/synapse_db_password)"
medmesh_pw="$(cat /run/secrets/medmesh_db_password)"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v synapse_pw="$synapse_pw" -v medmesh_pw="$medmesh_pw" <<'SQL'
CREATE ROLE synapse LOGIN PASSWORD :'synapse_pw';
CREATE DATABASE synapse OWNER synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE ROLE medmesh LOGIN PASSWORD :'medmesh_pw';
CREATE DATABASE medmesh OWNER medmesh ENCODING 'UTF8';
SQL

#!/bin/sh
# MariaDB for the demo, what the entrypoint of docker's mariadb image does, in short: an empty
# data directory (a new host volume on /var/lib/mysql) is initialized once; then the server runs
# in the foreground as PID 1 on every address of the container, with a database "demo", a table
# "kv" and a user "app" (password DB_PASSWORD, default "app") that may reach it from other
# containers. Run from the image: `sh /demo/mariadb.sh` (this directory mounted at /demo).
set -eu
data=/var/lib/mysql
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
# A host directory made by root: the server runs as mysql and must own its data.
[ "$(stat -c %U "$data")" = mysql ] || chown -R mysql:mysql "$data"
if [ ! -d "$data/mysql" ]; then
  echo "mariadb.sh: initializing $data"
  mariadb-install-db --user=mysql --datadir="$data" --skip-test-db >/dev/null
fi
pw=$(printf %s "${DB_PASSWORD:-app}" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")
cat >/run/mysqld/init.sql <<SQL
CREATE DATABASE IF NOT EXISTS demo;
CREATE TABLE IF NOT EXISTS demo.kv (k VARCHAR(200) PRIMARY KEY, v MEDIUMTEXT NOT NULL);
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY '$pw';
ALTER USER 'app'@'%' IDENTIFIED BY '$pw';
GRANT ALL ON demo.* TO 'app'@'%';
SQL
chown mysql:mysql /run/mysqld/init.sql
chmod 600 /run/mysqld/init.sql
exec mariadbd --user=mysql --datadir="$data" --bind-address=0.0.0.0 --skip-name-resolve \
  --init-file=/run/mysqld/init.sql

-- Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d), as $POSTGRES_USER:
-- one database for MLflow's tracking store, one for actstudy's study records.
CREATE DATABASE mlflow;
CREATE DATABASE actstudy;

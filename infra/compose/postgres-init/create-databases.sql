-- One PostgreSQL for the single-host stack: a database per service, owned by the compose user.
CREATE DATABASE mlflow OWNER ragyard;
CREATE DATABASE dagster OWNER ragyard;
CREATE DATABASE langfuse OWNER ragyard;

"""The Runwatch ETL runner: jobs, the runner, workers, the CLI and the HTTP API."""

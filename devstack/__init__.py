"""Local stand-ins for the services CHOM talks to (ACME CA, S3, Prometheus, Alertmanager), for
`make demo`, the tests and the benchmarks. It imports the apps; no app imports it (import-linter
keeps it so). The `local` VPS provider itself is product code and stays in `fleet/localfleet.py`."""

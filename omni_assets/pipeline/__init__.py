"""The pipeline without Dagster: intake, submit, poll, materialize, refresh, checks, sources and
media. The CLI, the tests, the benchmarks and the Dagster layer all call it."""

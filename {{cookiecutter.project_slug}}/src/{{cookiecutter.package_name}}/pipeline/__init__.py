"""One module per DVC stage; each has a `run(params)` that dvc.yaml calls through the CLI."""

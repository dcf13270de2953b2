"""The front door (layer 4): the user tasks as plain functions; the CLI, the demo, the report and the bench
scripts are adapters over it."""

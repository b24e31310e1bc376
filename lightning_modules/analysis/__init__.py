"""What a finished sweep concludes: its tables, the published numbers, the claims ledger, the stage reports.
Above the stages and the sweep's grid; reads results, never runs a stage."""

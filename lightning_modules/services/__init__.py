"""Long-lived services and their clients: MLflow tracking and its server, the warm job server, the progress
display. Above the primitives (core), below the stages that log."""

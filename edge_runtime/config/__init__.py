"""Resource YAML (Dapr's Component format) and process settings."""

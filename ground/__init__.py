"""The ground segment: async client library, the `ground` CLI, model tools and the telemetry archive."""

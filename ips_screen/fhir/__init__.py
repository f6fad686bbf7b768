"""Talking to FHIR R4 servers: the HTTP client, its authentication, and a local test server."""

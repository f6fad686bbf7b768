"""Facts: what the rules need from each FHIR resource, and nothing more."""

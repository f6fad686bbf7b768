"""Tools for tests and demos, never on the runtime path of a screen, the nightly job or the service.

- `load`: PUT FHIR files into a server (`ips-screen load`, `scripts/demo`, the integration tests).
- `testserver`: a real FHIR R4 server on 127.0.0.1 (sekmet-fhir) for the integration tests and
  `scripts/fhir-server`.
"""

"""A real FHIR R4 server on 127.0.0.1 for the integration tests and the demo.

It is sekmet-fhir, pinned exactly, installed into its own virtual environment
(`.fhir-server/venv`, ignored by git) with the constraints file
`scripts/fhir-server-constraints.txt`, because its own dependencies are unpinned (`install`).
Each server gets a settings file with a free port, an in-memory database, the simulator off (it
would otherwise fulfil ServiceRequests and Tasks by itself) and inbound logging off (`process`).

    with FhirTestServer() as server:
        client = FhirClient(server.base_url)

`scripts/fhir-server start|stop` runs one detached server for manual use and the demo, through
`start_detached()` and `stop_detached()` (`detached`).
"""

from ips_screen.devtools.testserver.detached import (
    PID_FILE,
    URL_FILE,
    running_detached,
    start_detached,
    stop_detached,
)
from ips_screen.devtools.testserver.install import (
    CONSTRAINTS_PATH,
    HOME_ENV,
    SEKMET_REQUIREMENT,
    IndexUnreachable,
    default_home,
    install,
    project_root,
    write_constraints,
)
from ips_screen.devtools.testserver.process import (
    HOST,
    FhirTestServer,
    free_port,
    listening_hosts,
    write_settings,
)

__all__ = [
    "CONSTRAINTS_PATH",
    "HOME_ENV",
    "HOST",
    "PID_FILE",
    "SEKMET_REQUIREMENT",
    "URL_FILE",
    "FhirTestServer",
    "IndexUnreachable",
    "default_home",
    "free_port",
    "install",
    "listening_hosts",
    "project_root",
    "running_detached",
    "start_detached",
    "stop_detached",
    "write_constraints",
    "write_settings",
]

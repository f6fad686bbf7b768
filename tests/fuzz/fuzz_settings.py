"""The fuzz tests' shared settings: how many examples (IPS_SCREEN_FUZZ_EXAMPLES, default 200 in
CI; a long run by hand sets thousands) and where scratch folders go."""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("IPS_SCREEN_FUZZ_EXAMPLES", "200"))
# The outputs are fsync'ed: in memory (tmpfs) when there is one, that costs nothing.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

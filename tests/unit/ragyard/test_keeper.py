"""ragyard.keeper's restart backoff, by itself (the keeper with real processes: tests/integration)."""

from ragyard.keeper import restart_delay
from ragyard.settings import SupervisorSettings


def test_restart_delay_doubles_per_crash_is_jittered_and_capped():
    settings = SupervisorSettings(restart_backoff_s=1.0, restart_backoff_max_s=5.0)
    for crashes, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (12, 5.0)]:
        delays = [restart_delay(crashes, settings) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered, not one fixed value

"""The broker in `ragyard run`'s services: started with the platform on its own port unless an external
one is configured (the broker itself runs in tests/integration/ragyard/test_broker.py)."""

from ragyard.services import platform_services
from ragyard.settings import BrokerSettings, Settings


def test_make_run_starts_the_broker_unless_told_otherwise(tmp_path):
    names = [spec.name for spec in platform_services(Settings(home=tmp_path))]
    assert "broker" in names and names.index("broker") < names.index("router")
    spec = next(s for s in platform_services(Settings(home=tmp_path)) if s.name == "broker")
    assert spec.health_tcp == ("127.0.0.1", 5682) and spec.env["RABBITMQ_NODE_PORT"] == "5682"
    assert "broker" not in [
        s.name
        for s in platform_services(
            Settings(home=tmp_path, broker=BrokerSettings(run_local=False, url="amqp://u:p@rabbit:5672/"))
        )
    ]

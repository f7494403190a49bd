"""The supervisor's health answers (geventserve/health.py, for --metrics-bind), on a real
Supervisor object that is not run: readiness follows its generation, a drain and a stop."""

from geventserve import health
from geventserve.config import FixedConfig
from geventserve.generation import Generation
from geventserve.settings import Config
from geventserve.supervisor import Stop, Supervisor


def supervisor(**settings):
    config = Config()
    for name, value in settings.items():
        config.set(name, value, "test")
    return Supervisor(FixedConfig(config), config)


def test_paths_come_from_the_settings():
    assert health.answers(supervisor()) == {}
    server = supervisor(liveness_path="/livez", readiness_path="/readyz")
    assert health.answers(server) == {"/livez": False, "/readyz": True}


def test_readiness_follows_the_generation_the_drain_and_the_stop():
    server = supervisor(readiness_path="/readyz")
    assert health.answer(server, True)[0] == 503  # not started
    server.generation = Generation.first(server.config)
    assert health.answer(server, True)[0] == 503  # its workers are not all ready yet
    server.generation.serving = True
    assert health.answer(server, True) == (200, b"ready\n")
    assert server.drain.begin(10.0, [])
    assert health.answer(server, True)[0] == 503
    assert health.answer(server, False) == (200, b"alive\n")  # liveness never turns
    server.drain.until = 0.0
    server.stopping = Stop.begin(True, 30.0, False)
    assert health.answer(server, True)[0] == 503

"""How the lab's registry names an image (pure)."""

from __future__ import annotations

from harness.swarm import registry


def test_split_reference() -> None:
    assert registry.split_reference("echolab-server:latest") == ("echolab-server", "latest")
    assert registry.split_reference("echolab-server") == ("echolab-server", "latest")
    assert registry.split_reference("127.0.0.1:5000/a:v1") == ("127.0.0.1:5000/a", "v1")
    assert registry.split_reference("127.0.0.1:5000/a") == ("127.0.0.1:5000/a", "latest")

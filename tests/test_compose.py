"""docker-compose.yml is accepted by ``docker-compose config`` (Debian's docker-compose checks a file
without a container engine) and runs everything on the locked broker (TLS, client certificates; the
files of ``ground pki init``, docs/security.md), and docker/mosquitto.conf is a configuration
Mosquitto loads."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from hil.embedded_broker import free_port
from hil.mosquitto_broker import mosquitto_binary
from link.transport import BrokerUrl, make_client

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (Debian: apt-get install -y docker-compose)",
)


@needs_compose
def test_compose_config_accepts_the_file() -> None:
    proc = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, timeout=60,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    config = yaml.safe_load(proc.stdout)
    services = config["services"]
    assert set(services) >= {"mosquitto", "flightd", "plant"}

    mosquitto = services["mosquitto"]
    assert str(mosquitto["image"]).startswith("eclipse-mosquitto")
    # The broker directory of `ground pki init --config-dir /mosquitto/config` (mosquitto.conf, acl, ...).
    assert any(str(v).split(":")[0].endswith("secrets/pki/broker") and str(v).split(":")[1] == "/mosquitto/config"
               for v in mosquitto["volumes"])
    published = {str(p.get("target") if isinstance(p, dict) else p).split(":")[-1] for p in mosquitto["ports"]}
    assert published == {"8883", "8884"}, "TLS listeners only: no cleartext 1883"

    flightd = services["flightd"]
    assert Path(flightd["build"]["context"]).resolve() == REPO
    assert (REPO / flightd["build"]["dockerfile"]).is_file()
    argv = [*flightd["entrypoint"], *flightd["command"]]
    assert argv[0] == "flightd"
    assert argv[argv.index("--broker") + 1] == "mqtts://mosquitto:8883"
    env = flightd["environment"]
    tls_dir = next(str(v).split(":")[1] for v in flightd["volumes"] if "secrets/pki/sat1" in str(v))
    assert {env[f"ORBITD_LINK__TLS_{k}"] for k in ("CA", "CERT", "KEY")} == {
        f"{tls_dir}/ca.pem", f"{tls_dir}/flightd.pem", f"{tls_dir}/flightd.key"}
    assert argv[argv.index("--config") + 1] == f"{tls_dir}/flightd.toml"  # its signing keys
    assert argv[argv.index("--data-dir") + 1] == "/var/lib/orbitd"
    assert argv[argv.index("--models") + 1] == "/opt/orbitd/models"
    assert any(str(v).split(":")[1] == "/var/lib/orbitd" for v in flightd["volumes"]), "no journal volume"

    plant = services["plant"]
    argv = [*plant["entrypoint"], *plant["command"]]
    assert argv[:2] == ["hil", "plant"]
    assert argv[argv.index("--broker") + 1] == "mqtts://mosquitto:8883"
    assert argv[argv.index("--tls-cert") + 1].endswith("/plant.pem")
    assert argv[argv.index("--tls-key") + 1].endswith("/plant.key")
    assert argv[argv.index("--scenario") + 1] == "nominal-550km"
    assert float(argv[argv.index("--warp") + 1]) == 10.0
    assert plant.get("image") == flightd.get("image")


@needs_compose
def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check can fail: an unknown service key is an error."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    restart: unless-stopped", "    restrat: unless-stopped", 1))
    proc = subprocess.run(["docker-compose", "-f", str(broken), "config"], capture_output=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode != 0


async def test_mosquitto_conf_loads_and_serves(tmp_path: Path) -> None:
    """docker/mosquitto.conf runs in the installed Mosquitto (port and data directory moved to the test's)."""
    binary = mosquitto_binary()  # a test dependency (.ci/run installs it): missing is a failure
    port = free_port()
    text = (REPO / "docker" / "mosquitto.conf").read_text()
    for needed in ("listener 1883", "allow_anonymous true", "set_tcp_nodelay true", "max_packet_size "):
        assert needed in text
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text.replace("listener 1883", f"listener {port} 127.0.0.1")
                    .replace("/mosquitto/data/", f"{tmp_path}/"))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                async with make_client(BrokerUrl.parse(f"mqtt://127.0.0.1:{port}"), timeout_s=2.0) as client:
                    await client.publish("orbitd/v1/sat1/tlm/x", b"{}", qos=1)
                break
            except Exception:
                assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
                await asyncio.sleep(0.05)
        else:
            pytest.fail("mosquitto with docker/mosquitto.conf never accepted a connection")
    finally:
        proc.terminate()
        proc.wait(10)

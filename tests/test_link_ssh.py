"""The same rig with the board side reached by ssh (:class:`hil.link.board.SshBoard`): an OpenSSH server
in a network namespace stands in for the board, so every board program (the onboard Mosquitto, flightd,
the plant) is started by ``ssh``, with JSON in its environment and arguments, and the kill -9 of flightd
mid-pass is a remote kill of flightd itself, not of the local ssh client. Every job completes exactly
once; nothing the rig started is left running on the board afterwards.

Needs root, iproute2 and OpenSSH (client and ``sshd``); skipped otherwise. About 30 s."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.cli import board_from_args, build_parser, main
from hil.link.board import PID_FILE_PREFIX, SshBoard
from hil.link.netns import NetnsBoard
from hil.link.rig import LinkRig
from hil.sil import netns_possible
from tests.test_link_sil import run_across_passes

SSHD = "/usr/sbin/sshd"
needs_sshd = pytest.mark.skipif(
    not (netns_possible() and Path(SSHD).exists() and shutil.which("ssh") and shutil.which("ssh-keygen")),
    reason="needs root, iproute2 and OpenSSH (ssh, ssh-keygen, sshd)",
)

CONTACTS = ((20.0, 100.0), (160.0, 240.0))
SIM_S = 260.0
KILL_AT_S = 60.0
SCHEDULE = (5.0, 30.0, 40.0, *(58.0 + 0.2 * k for k in range(6)), 80.0, 120.0, 180.0, 200.0)


def ssh_board_in(ns: NetnsBoard, workdir: Path) -> Iterator[SshBoard]:
    """sshd in ``ns`` (its own host key, one authorised key, root login by key only)."""
    workdir.mkdir(parents=True)
    host_key, key = workdir / "host_ed25519", workdir / "id_ed25519"
    for path in (host_key, key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    (workdir / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    options = [f"ListenAddress={ns.board_address}", "PermitRootLogin=prohibit-password",
               f"AuthorizedKeysFile={workdir}/authorized_keys", "StrictModes=no", "PidFile=none", "UsePAM=no"]
    argv = [SSHD, "-D", "-e", "-f", "/dev/null", "-h", str(host_key), *(a for o in options for a in ("-o", o))]
    sshd = ns.popen(argv,
                    stdout=subprocess.DEVNULL, stderr=(workdir / "sshd.log").open("wb"))
    board = SshBoard(f"root@{ns.board_address}", ns.board_address, ns.ground_address, python=sys.executable,
                     ssh_options=("-i", str(key), "-o", "StrictHostKeyChecking=no", "-o",
                                  "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"))
    deadline = time.monotonic() + 15
    while subprocess.run([*board.command(["true"], {})], capture_output=True, stdin=subprocess.DEVNULL).returncode:
        if sshd.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not answer: {(workdir / 'sshd.log').read_text()}")
        time.sleep(0.2)
    yield board


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[SshBoard, NetnsBoard]]:
    with NetnsBoard("ssh") as ns:
        for ssh_board in ssh_board_in(ns, tmp_path / "sshd"):
            yield ssh_board, ns


def board_programs(ns: NetnsBoard) -> list[str]:
    """Command lines of the processes living in the namespace, sshd's own left out."""
    out = []
    for pid in ns.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except FileNotFoundError:
            continue
        if cmdline and not cmdline.startswith(("sshd", SSHD)):
            out.append(cmdline)
    return out


@needs_sshd
async def test_the_rig_drives_a_board_by_ssh_and_kill9_reaches_flightd(
        board: tuple[SshBoard, NetnsBoard], tmp_path: Path) -> None:
    ssh_board, ns = board
    killed: list[dict[str, object]] = []

    async def kill_mid_pass(rig: LinkRig) -> None:
        await rig.clock.sleep_until(KILL_AT_S)
        assert rig.flightd is not None
        pid_file = next(str(a) for a in rig.flightd.args if str(a).startswith(PID_FILE_PREFIX))  # type: ignore[union-attr]
        pid = int(Path(pid_file).read_text())  # the board's /tmp is this host's here
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        in_ns = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True).stdout.strip()
        rig.kill_flightd()
        killed.append({"t_s": rig.clock.now(), "pid": pid, "flightd": b"flight.cli" in cmdline, "netns": in_ns,
                       "gone": not Path(f"/proc/{pid}").exists(), "ssh_rc": rig.flightd.returncode})
        rig.start_flightd()
        await rig.wait_online()

    report_dir = tmp_path / "run"
    report, jobs = await run_across_passes(report_dir, CONTACTS, SIM_S, SCHEDULE, kill_mid_pass, board=ssh_board,
                                           timeout_s=180.0)
    link = report.link
    assert link is not None and link["board"] == "ssh"

    # the kill -9 went to flightd on the board (in the namespace), through ssh
    assert len(killed) == 1, killed
    kill = killed[0]
    assert CONTACTS[0][0] < float(kill["t_s"]) < CONTACTS[0][1]  # type: ignore[arg-type]
    assert kill["flightd"] and kill["netns"] == ns.name and kill["gone"], kill
    assert kill["ssh_rc"] == 128 + 9, kill  # the remote exit status of a SIGKILL, carried back by ssh

    # every job completed once and its result reached the ground
    assert link["jobs_submitted"] == len(SCHEDULE) == len(jobs)
    assert link["jobs_done"] == len(SCHEDULE), {k: v for k, v in jobs.items() if v["result_s"] is None}
    assert link["unanswered"] == 0 and link["duplicated"] == 0 and link["failed"] == {}
    with sqlite3.connect(report_dir / "flightd" / "journal.sqlite3") as db:
        onboard = dict(db.execute("SELECT job_id, completions FROM jobs").fetchall())
    assert onboard == {job_id: 1 for job_id in jobs}
    assert all(p["bytes_up"] > 0 and p["bytes_down"] > 0 for p in link["passes"])

    # the plant ran on the board with its JSON warp schedule; nothing the rig started is left there
    assert report.sim_s > 0.9 * SIM_S
    assert board_programs(ns) == []


def test_hil_sil_board_ssh_needs_the_destination_and_both_addresses() -> None:
    with pytest.raises(SystemExit, match="--board-address, --ground-address"):
        main(["sil", "--link", "passes", "--board", "ssh", "--ssh", "pi@board"])
    args = build_parser().parse_args(["sil", "--link", "passes", "--board", "ssh", "--ssh", "pi@board",
                                      "--board-address", "192.168.7.2", "--ground-address", "192.168.7.1",
                                      "--board-python", "/opt/orbitd/bin/python"])
    assert board_from_args(args) == SshBoard("pi@board", "192.168.7.2", "192.168.7.1", python="/opt/orbitd/bin/python")
    assert board_from_args(build_parser().parse_args(["sil", "--link", "relay"])) == "auto"

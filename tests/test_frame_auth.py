"""Authenticated transport (issue 14 part 4): no unauthenticated frame is ever unpickled.

The systems with a key run in their own processes (`tests.secure_node`), so this test process
never installs a key: the patch is process-wide. A crafted pickle that creates a marker file
when loaded is the attacker's frame (`tests.crafted_frame`); without a secret it does run (the
control test), with one it is dropped and logged, and the system keeps answering.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from persistent_actors import ActorSystem
from persistent_actors._thespian import frame_auth
from persistent_actors._thespian.frame_auth import (
    MIN_SECRET_BYTES,
    FrameCodec,
    check_bind_address,
    load_secret,
)
from persistent_actors._thespian.loopback import free_port
from persistent_actors.errors import ConfigError
from tests import crafted_frame
from tests.netns import Host, Network

ROOT = Path(__file__).resolve().parent.parent


def write_key(path: Path, secret: bytes | None = None, mode: int = 0o600) -> Path:
    """A key file at `path` (random 64 hex characters unless `secret` is given)."""
    path.write_bytes(secret if secret is not None else os.urandom(32).hex().encode() + b"\n")
    path.chmod(mode)
    return path


class Node:
    """A `tests.secure_node` process: one multiproc-tcp system with an echo actor."""

    def __init__(self, tmp_path: Path, label: str, host: Host, secret_file: Path | None,
                 network: Network | None = None) -> None:
        argv = [sys.executable, "-m", "tests.secure_node", "--bind", host.address,
                "--admin-port", str(free_port())]
        if secret_file is not None:
            argv += ["--secret-file", str(secret_file)]
        self.stderr_path = tmp_path / f"{label}.stderr"
        self._stderr = self.stderr_path.open("wb")
        kwargs: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                                  "stderr": self._stderr, "cwd": ROOT, "text": True}
        self.process = (network.popen(host, argv, **kwargs) if network is not None
                        else subprocess.Popen(host.command(argv), **kwargs))
        started = self._read(60)
        self.host = host.address
        self.admin_port: int = started["admin_port"]
        self.actor_port: int = started["actor_port"]

    def _read(self, timeout: float) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        if not line:
            raise AssertionError(f"node gave no answer within {timeout}s; stderr:\n{self.log()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, line: str, timeout: float = 30) -> dict[str, Any]:
        """Send one command line; its JSON answer."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()
        return self._read(timeout)

    def log(self) -> str:
        """What the node's processes wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        """Quit and wait; kill if it does not exit (its guardian then stops its processes)."""
        if self.process.poll() is None:
            stdin = self.process.stdin
            try:
                if stdin is not None:
                    stdin.write("quit\n")
                    stdin.flush()
            except (OSError, ValueError):
                pass
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    """Nodes a test starts; stopped after it, whatever happened."""
    started: list[Node] = []
    try:
        yield started
    finally:
        for node in started:
            node.stop()


def loopback() -> Host:
    return Host(0, None, "127.0.0.1")


def wait_for_log(node: Node, text: str, count: int = 1, timeout: float = 10) -> str:
    """The node's stderr once `text` occurs `count` times in it (or fail, showing it)."""
    deadline = time.monotonic() + timeout
    while True:
        log = node.log()
        if log.count(text) >= count:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged {count} times; stderr:\n{log}")
        time.sleep(0.1)


# -- the key file and the loopback rule -----------------------------------------------------
def test_load_secret_reads_a_key_and_names_what_is_wrong(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    key = write_key(tmp_path / "node.key", b"k" * MIN_SECRET_BYTES + b"\n")
    assert load_secret(key) == b"k" * MIN_SECRET_BYTES  # the trailing newline is not the key
    with pytest.raises(ConfigError, match=r"secret_file '.*missing.key' does not exist"):
        load_secret(tmp_path / "missing.key")
    short = write_key(tmp_path / "short.key", b"k" * (MIN_SECRET_BYTES - 1))
    with pytest.raises(ConfigError, match=r"holds 31 bytes; the key must have at least 32"):
        load_secret(short)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_secret(tmp_path)  # a directory
    assert not caplog.records
    open_key = write_key(tmp_path / "open.key", mode=0o644)
    with caplog.at_level(logging.WARNING):
        assert len(load_secret(open_key)) == 64
    assert "can be read by other users (mode 0o644); restrict it: chmod 600" in caplog.text


def test_without_a_secret_nodes_refuse_to_bind_beyond_loopback(tmp_path: Path) -> None:
    for address in ("127.0.0.1", "127.0.0.5", "::1", "localhost"):
        check_bind_address(address, has_secret=False)
    for address in ("0.0.0.0", "10.213.0.1", "::"):
        with pytest.raises(ConfigError, match="without a secret, nodes refuse to bind anywhere "
                                              "but loopback"):
            check_bind_address(address, has_secret=False)
        check_bind_address(address, has_secret=True)
    with pytest.raises(ConfigError, match="bind_address must be an IP address"):
        check_bind_address("example.com", has_secret=True)
    # The ActorSystem applies the rule before it starts anything.
    config = {"actor_system": {"base": "multiproc-tcp", "bind_address": "0.0.0.0"}}
    with pytest.raises(ConfigError, match="refuse to bind anywhere but loopback"):
        ActorSystem("open", config=config)
    config["actor_system"]["secret_file"] = str(tmp_path / "absent.key")
    with pytest.raises(ConfigError, match=r"absent\.key' does not exist"):
        ActorSystem("no-key", config=config)
    with pytest.raises(ConfigError, match=r"actor_system\.secret_file must be the path"):
        ActorSystem("bad", config={"actor_system": {"secret_file": 3}})


def test_codec_unpickles_only_frames_tagged_with_its_key(tmp_path: Path) -> None:
    codec, other = FrameCodec(b"a" * 32), FrameCodec(b"b" * 32)
    message = ("addr", {"cart": [1, 2, 3]})
    assert codec.loads(codec.dumps(message)) == message
    marker = tmp_path / "marker"
    payload = crafted_frame.exploit_payload(str(marker))
    tag = codec.tag(payload)
    # The valid tag with its last byte changed (flipped, not replaced by a constant: the tag
    # of this run's payload ends in that constant once in 256 runs).
    wrong_tag = tag[:-1] + bytes([tag[-1] ^ 1])
    for forged in (payload, b"\0" * 32 + payload, other.dumps(message), b"",
                   codec.dumps(message)[:-1], wrong_tag + payload):
        assert not codec.authentic(forged)
        with pytest.raises(ValueError, match="without a valid authentication tag"):
            codec.loads(forged)
    assert not marker.exists()


# -- live systems ---------------------------------------------------------------------------
@pytest.mark.multiproc
def test_a_crafted_pickle_runs_on_a_system_without_a_secret(tmp_path: Path,
                                                            nodes: list[Node]) -> None:
    """The control: the attacker's frame is a real exploit against thespian as it ships."""
    nodes.append(node := Node(tmp_path, "open", loopback(), None))
    marker = tmp_path / "marker"
    crafted_frame.attack(node.host, node.actor_port, str(marker))
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


@pytest.mark.multiproc
def test_a_crafted_pickle_is_dropped_and_logged_and_the_system_keeps_working(
        tmp_path: Path, nodes: list[Node]) -> None:
    nodes.append(node := Node(tmp_path, "keyed", loopback(), write_key(tmp_path / "node.key")))
    assert node.command("ping") == {"reply": "ping"}
    marker = tmp_path / "marker"
    # The admin's port and an actor's (a process thespian forked) each get both forgeries.
    answers = (crafted_frame.attack(node.host, node.admin_port, str(marker))
               + crafted_frame.attack(node.host, node.actor_port, str(marker)))
    assert answers == [b""] * 4  # the connection is closed without an answer
    log = wait_for_log(node, "frame authentication: dropped a frame without a valid tag from "
                             "127.0.0.1:", count=4)
    assert f"(at ActorAddr-(T|:{node.admin_port}))" in log
    assert f"(at ActorAddr-(T|:{node.actor_port}))" in log
    assert "OUCH" not in log  # dropped before thespian tried to deserialize it
    assert node.command("ping") == {"reply": "ping"}
    assert not marker.exists()


@pytest.mark.multiproc
def test_the_unauthenticated_answer_of_a_system_without_the_key_is_dropped_too(
        tmp_path: Path, nodes: list[Node]) -> None:
    """A keyed system sending to one without the key: that one answers on the same connection
    with a plain pickle (its ACK), which the keyed side drops unread and logs."""
    nodes.append(keyed := Node(tmp_path, "keyed", loopback(), write_key(tmp_path / "k.key")))
    nodes.append(open_node := Node(tmp_path, "open", loopback(), None))
    assert keyed.command(f"ask 127.0.0.1 {open_node.actor_port}")["error"] == "AskTimeoutError"
    wait_for_log(keyed, f"dropped a reply of ActorAddr-(T|:{open_node.actor_port}) without a "
                        "valid tag from 127.0.0.1:")
    assert keyed.command("ping") == {"reply": "ping"}


@pytest.mark.multiproc
@pytest.mark.parametrize("hosts", [
    "namespaces",
    pytest.param("loopback-fallback", marks=pytest.mark.filterwarnings(
        "ignore::tests.netns.NetnsFallbackWarning")),  # forced: nothing to report
])
def test_systems_on_separate_hosts_talk_with_the_shared_key_and_drop_every_other_frame(
        hosts: str, tmp_path: Path, nodes: list[Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Three hosts (network namespaces, or loopback where there are none): two share the key;
    the third has another key, and also sends the crafted pickle."""
    if hosts == "loopback-fallback":  # as on a machine without namespaces
        monkeypatch.setattr(Network, "_unavailable_reason", staticmethod(lambda: "forced"))
    shared, other = write_key(tmp_path / "shared.key"), write_key(tmp_path / "other.key")
    with Network(3) as net:
        a, b, c = net.hosts
        nodes.append(node_a := Node(tmp_path, "a", a, shared, net))
        nodes.append(node_b := Node(tmp_path, "b", b, shared, net))
        nodes.append(node_c := Node(tmp_path, "c", c, other, net))
        assert node_a.command(f"ask {b.address} {node_b.actor_port}") == {
            "reply": f"hello from {a.address}"}
        assert node_b.command(f"ask {a.address} {node_a.actor_port}") == {
            "reply": f"hello from {b.address}"}
        marker = tmp_path / "marker"
        attack = c.run([sys.executable, "-m", "tests.crafted_frame", b.address,
                        str(node_b.actor_port), str(marker)], cwd=ROOT, capture_output=True)
        assert attack.returncode == 0, attack.stderr
        dropped = f"dropped a frame without a valid tag from {c.address}:"
        wait_for_log(node_b, dropped, count=2)
        assert not marker.exists()
        # A system with another key: its frames are dropped as well (its sends are retried, so
        # more than one), and its ask gets no answer.
        refused = node_c.command(f"ask {b.address} {node_b.actor_port}")
        assert refused["error"] == "AskTimeoutError"
        wait_for_log(node_b, dropped, count=3)
        assert node_a.command(f"ask {b.address} {node_b.actor_port}") == {
            "reply": f"hello from {a.address}"}
        for node in nodes:
            node.stop()


def test_drop_warnings_are_bounded_per_minute_and_summed_up(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = [1000.0]
    drops = frame_auth._DropLog(lambda: clock[0])  # the limiter, without a live transport
    with caplog.at_level(logging.WARNING, logger="persistent_actors.frame_auth"):
        for nr in range(25):
            drops.dropped(f"10.0.0.9:{nr}", "me", "frame")
        clock[0] += 61
        drops.dropped("10.0.0.9:99", "me", "frame")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 13
    assert all("dropped a frame without a valid tag from 10.0.0.9:" in m for m in messages[:10])
    assert messages[10] == ("frame authentication: more frames dropped; not logging more for "
                            "60 s")
    assert messages[11] == "frame authentication: 25 frames dropped in all in the 61 s before"
    assert "from 10.0.0.9:99" in messages[12]

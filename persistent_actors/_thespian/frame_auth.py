"""Authenticate every frame of thespian's TCP transport with a shared key, before unpickling.

Thespian 4.0.1's multiproc-tcp transport pickles each message into a frame
(``b"<length>>" + pickle``) and unpickles every frame that reaches an admin or actor port, so
whoever can connect to a port can run code in that process. With a shared secret installed,
each frame's payload becomes ``HMAC-SHA256(key, context + pickle) + pickle``: the sender tags
it, the receiver checks the tag in constant time and unpickles only an authentic frame. A
frame without a valid tag is dropped (its connection closed) and logged with the peer's
address; the acknowledgements thespian sends back on the same connection are tagged and
checked the same way. The tag gives authenticity and integrity, not confidentiality: traffic
is still readable on the wire, and a captured frame could be replayed to the same system.

The patch replaces module globals and two methods of ``thespian.system.transport.TCPTransport``
in the calling process. Thespian forks its admin, logger and actor processes (start method
"fork"), so installing before the thespian system starts covers every process it creates; the
key never appears on a command line or in the environment. ``tests/test_thespian_patches.py``
pins the internals patched here, and `install` refuses a thespian that lacks them: a silent
no-op would leave the ports open.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import pickle
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thespian.system import multiprocCommon
from thespian.system.transport import TCPTransport as _tcp  # noqa: N813 - thespian's module name
from thespian.system.transport import streamBuffer

from persistent_actors.errors import ConfigError

__all__ = [
    "MIN_SECRET_BYTES",
    "check_bind_address",
    "install",
    "installed",
    "load_secret",
    "secure_transport",
]

MIN_SECRET_BYTES = 32
TAG_BYTES = hashlib.sha256().digest_size
# Binds the tag to this use of the key (a key reused elsewhere cannot forge frames here).
_CONTEXT = b"persistent_actors thespian frame v1\x00"
# Created at import, in the process that starts the system, and inherited by the processes
# thespian forks: records go straight to that process's handlers (stderr by default). A logger
# looked up in a forked process would go through thespian's log forwarding, which queues a
# record logged inside the transport until the next transmit.
log = logging.getLogger("persistent_actors.frame_auth")
# At most this many drop warnings per window and process: a flood must not fill the disk.
_LOG_LIMIT, _LOG_WINDOW = 10, 60.0

_lock = threading.Lock()
_installed_key: bytes | None = None  # a digest of the key, to tell "same key again" apart


class _RejectedFrameError(ValueError):
    """A frame whose authentication tag is missing or wrong (never unpickled)."""


class FrameCodec:
    """Thespian's ``serializer`` (``dumps``/``loads``) with an HMAC tag in front of the pickle."""

    def __init__(self, secret: bytes) -> None:
        self._mac = hmac.new(secret, _CONTEXT, hashlib.sha256)

    def tag(self, payload: bytes | memoryview) -> bytes:
        """The tag of `payload` under this codec's key."""
        mac = self._mac.copy()
        mac.update(payload)
        return mac.digest()

    def dumps(self, obj: Any) -> bytes:
        """``tag + pickle(obj)``."""
        payload = pickle.dumps(obj)
        return self.tag(payload) + payload

    def authentic(self, frame: bytes) -> bool:
        """True when `frame` carries a valid tag for what follows it."""
        if len(frame) < TAG_BYTES:
            return False
        view = memoryview(frame)
        return hmac.compare_digest(view[:TAG_BYTES], self.tag(view[TAG_BYTES:]))

    def loads(self, frame: bytes) -> Any:
        """Unpickle `frame`'s payload, only if its tag is valid.

        Raises:
            _RejectedFrameError: the tag is missing or wrong; nothing was unpickled.

        """
        if not self.authentic(frame):
            raise _RejectedFrameError("frame without a valid authentication tag")
        return pickle.loads(memoryview(frame)[TAG_BYTES:])  # noqa: S301 - authenticated above


class _DropLog:
    """Logs dropped frames, at most `_LOG_LIMIT` per `_LOG_WINDOW` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._window_start = -_LOG_WINDOW - 1.0
        self._count = 0

    def dropped(self, peer: str, me: Any, what: str) -> None:
        now = self._clock()
        if now - self._window_start > _LOG_WINDOW:
            if self._count > _LOG_LIMIT:
                log.warning("frame authentication: %d frames dropped in all in the %.0f s before",
                            self._count, now - self._window_start)
            self._window_start, self._count = now, 0
        self._count += 1
        if self._count <= _LOG_LIMIT:
            log.warning("frame authentication: dropped a %s without a valid tag from %s (at %s); "
                        "is the peer using the same secret_file?", what, peer, me)
        elif self._count == _LOG_LIMIT + 1:
            log.warning("frame authentication: more frames dropped; not logging more for %.0f s",
                        _LOG_WINDOW)


_drops = _DropLog()


def _peer_of(sock: Any) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, AttributeError, TypeError, ValueError):
        return "an unknown peer"
    return f"{host}:{port}"


def _completed_frame(buffer: Any) -> bytes | None:
    """The payload thespian's ReceiveBuffer holds once complete (None if it is not)."""
    if buffer._size is not None and buffer._blen == buffer._size:  # noqa: SLF001 - thespian's
        frame: bytes = buffer._buf  # noqa: SLF001 - the frame before thespian deserializes it
        return frame
    return None


def _patch(codec: FrameCodec) -> None:
    transport = _tcp.TCPTransport
    original_added = transport._addedDataToIncoming  # noqa: SLF001 - thespian's method
    original_ack = transport._check_XMIT_4_done  # noqa: SLF001 - thespian's method

    def _addedDataToIncoming(self: Any, inc: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        # Checked here, before thespian's own handler, so a rejected frame is dropped quietly
        # (thespian would log a traceback at ERROR) and named with the peer's address.
        if inc.receivedAllData():
            frame = _completed_frame(inc._rData)  # noqa: SLF001 - thespian's receive buffer
            if frame is not None and not codec.authentic(frame):
                _drops.dropped(_peer_of(inc.socket), self.myAddress, "frame")
                inc.close()
                return None
        return original_added(self, inc, *args, **kwargs)

    def _check_XMIT_4_done(self: Any, intent: Any, rcv: Any) -> Any:  # noqa: N802
        # The answer on a connection we opened (an ACK, or a message sent back on it).
        try:
            return original_ack(self, intent, rcv)
        except _RejectedFrameError:
            _drops.dropped(_peer_of(getattr(intent, "socket", None)), self.myAddress,
                           f"reply of {intent.targetAddr}")
            intent.backoffPause(True)  # as thespian treats a corrupted ACK: retry the send
            intent.stage = self._XMITStepRetry
            return self._nextTransmitStep(intent)

    _tcp.serializer = codec
    _tcp.ackMsg = streamBuffer.toSendBuffer(streamBuffer.ackPacket, codec.dumps)
    _tcp.ackDataErrMsg = streamBuffer.toSendBuffer(streamBuffer.ackDataErrPacket, codec.dumps)
    transport._addedDataToIncoming = _addedDataToIncoming  # noqa: SLF001 - replaced, see above
    transport._check_XMIT_4_done = _check_XMIT_4_done  # noqa: SLF001 - replaced, see above


def _check_thespian() -> None:
    """Refuse a thespian whose transport differs from the one this patch was written for."""
    missing = [name for name in ("serializer", "ackMsg", "ackDataErrMsg", "toSendBuffer")
               if not hasattr(_tcp, name)]
    missing += [f"streamBuffer.{name}" for name in ("ackPacket", "ackDataErrPacket",
                                                     "toSendBuffer")
                if not hasattr(streamBuffer, name)]
    missing += [f"TCPTransport.{name}" for name in ("_addedDataToIncoming", "_check_XMIT_4_done",
                                                    "_XMITStepRetry", "_nextTransmitStep")
                if not hasattr(_tcp.TCPTransport, name)]
    buffer = streamBuffer.ReceiveBuffer()
    missing += [f"ReceiveBuffer.{name}" for name in ("_buf", "_blen", "_size")
                if not hasattr(buffer, name)]
    if missing:
        raise ConfigError(f"frame authentication cannot patch this thespian version: it lacks "
                          f"{', '.join(missing)} (written for thespian 4.0.1)")
    context = multiprocCommon.get_multiproc_context({})
    method = context.get_start_method() if context is not None else None
    if method != "fork":
        raise ConfigError(f"frame authentication needs thespian to fork its processes (they "
                          f"inherit the key); this platform starts them with {method!r}")


def install(secret: bytes) -> None:
    """Authenticate every thespian TCP frame of this process and the processes it forks.

    Call before the multiproc-tcp thespian system starts. Idempotent for the same key.

    Raises:
        ConfigError: the key is shorter than `MIN_SECRET_BYTES`, another key is installed
            already, or this thespian cannot be patched (the message names what it lacks).

    """
    global _installed_key  # noqa: PLW0603 - a process-wide, once-only patch
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"the frame authentication secret must be at least {MIN_SECRET_BYTES} "
                          f"bytes, got {len(secret) if isinstance(secret, bytes) else secret!r}")
    fingerprint = hashlib.sha256(_CONTEXT + secret).digest()
    with _lock:
        if _installed_key is not None:
            if not hmac.compare_digest(_installed_key, fingerprint):
                raise ConfigError("this process authenticates thespian frames with another "
                                  "secret already; one process uses one secret_file")
            return
        _check_thespian()
        _patch(FrameCodec(secret))
        _installed_key = fingerprint


def installed() -> bool:
    """True once `install` has patched this process."""
    return _installed_key is not None


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """The shared key in the file at `path` (surrounding whitespace stripped).

    Generate one with ``python -c "import secrets; print(secrets.token_hex(32))" > node.key``
    and ``chmod 600 node.key``. A file others may read is accepted with a warning.

    Raises:
        ConfigError: the file is missing or unreadable, or the key is shorter than 32 bytes.

    """
    file = Path(path)
    try:
        secret = file.read_bytes().strip()
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"secret_file {str(file)!r} does not exist") from None
    except OSError as e:
        raise ConfigError(f"secret_file {str(file)!r} cannot be read: {e.strerror}") from e
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"secret_file {str(file)!r} holds {len(secret)} bytes; the key must have at least "
            f"{MIN_SECRET_BYTES} (e.g. python -c \"import secrets; print(secrets.token_hex(32))\")")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "secret_file %r can be read by other users (mode %s); restrict it: chmod 600 %s",
            str(file), oct(stat.S_IMODE(mode)), str(file))
    return secret


def _is_loopback(bind_address: str) -> bool:
    if bind_address == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_address).is_loopback
    except ValueError:
        raise ConfigError(f"bind_address must be an IP address (e.g. 127.0.0.1 or 10.0.0.5), "
                          f"got {bind_address!r}") from None


def check_bind_address(bind_address: str, has_secret: bool) -> None:
    """Refuse to listen beyond loopback without frame authentication.

    Raises:
        ConfigError: `bind_address` is not a loopback address and there is no secret, or it is
            not an IP address.

    """
    if not _is_loopback(bind_address) and not has_secret:
        raise ConfigError(
            f"bind_address {bind_address!r} is not a loopback address: without a secret, nodes "
            f"refuse to bind anywhere but loopback (set secret_file to a shared key file; see "
            f"the README's Security model)")


def secure_transport(bind_address: str, secret_file: str | None) -> None:
    """What a multiproc-tcp system does before it starts: the loopback rule, then the key.

    Raises:
        ConfigError: as `check_bind_address`, `load_secret` and `install`.

    """
    check_bind_address(bind_address, secret_file is not None)
    if secret_file is not None:
        install(load_secret(secret_file))

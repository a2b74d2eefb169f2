"""Child process of the projection kill tests: ``python -m tests.projection_child MODE J DB N``.

Runs a projection of MODE (``exactly-once`` or ``at-least-once``) from the SQLite journal into
the read model DB, printing ``handling <pid> <seq>`` for each envelope. After N envelopes its
handler blocks forever, in the middle of a batch, so the parent's SIGKILL always lands there.
"""

from __future__ import annotations

import asyncio
import sys

from tests.test_projection import read_model_projection


async def main(mode: str, journal_path: str, db_path: str, stall_after: int) -> None:
    handled = 0

    async def on_handle(pid: str, seq: int) -> None:
        nonlocal handled
        print(f"handling {pid} {seq}", flush=True)
        handled += 1
        if handled >= stall_after:
            await asyncio.Event().wait()  # never set: wait for SIGKILL mid-transaction

    projection, journal = read_model_projection(mode, journal_path, db_path, live=True,
                                                on_handle=on_handle)
    try:
        await projection.run()
    finally:
        await journal.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))

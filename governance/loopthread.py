"""An asyncio loop in a background thread, stopped cleanly (the dev cluster and the local IBM server)."""

from __future__ import annotations

import asyncio
import threading


def stop_loop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float = 10.0) -> None:
    """Cancel what is still pending (say, a client's watch that never hung up), then stop and close the
    loop: a task left on a stopped loop is finalized later, in whatever thread the garbage collector
    runs in, and can break unrelated code there."""

    async def drain() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
    if not thread.is_alive():
        loop.close()

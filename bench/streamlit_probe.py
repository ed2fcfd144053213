"""`streamlit run` with a probe, for bench_load: logs each script run's time and the queries so far.

    RUNWATCH_PROBE_LOG=reruns.log python -m bench.streamlit_probe Home.py [streamlit options]

Every script run of every session, a fragment's alone included, appends
`<unix time> <seconds> <how it ended> <queries>` to the log, where `queries` counts every statement
any psycopg cursor of the server has executed so far (the ORM's and the bare driver's reads
alike), so a benchmark can relate queries to ticks.
Every pass of the garbage collector appends `<unix time> <seconds> <generation>` to `<log>.gc`.

With RUNWATCH_PROBE_PROFILE=stats.prof every script run is also profiled (cProfile, in its own
thread) and the sum of all of them is written to that file when the server stops:
`python -m pstats stats.prof` shows what a rerun spends its time on.
"""

from __future__ import annotations

import atexit
import cProfile
import gc
import os
import pstats
import sys
import threading
import time
from typing import Any

import psycopg
from streamlit.runtime.scriptrunner.script_runner import ScriptRunner, ScriptRunnerEvent
from streamlit.web import cli

ENDINGS = {
    ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS,
    ScriptRunnerEvent.SCRIPT_STOPPED_WITH_COMPILE_ERROR,
    ScriptRunnerEvent.SCRIPT_STOPPED_FOR_RERUN,
    ScriptRunnerEvent.FRAGMENT_STOPPED_WITH_SUCCESS,  # a run of only a fragment (Home's tick)
}
_lock = threading.Lock()
_queries = 0
_log = open(os.environ["RUNWATCH_PROBE_LOG"], "a", buffering=1)  # noqa: SIM115 (open for the process's life)


def _counted(execute: Any) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _queries
        with _lock:
            _queries += 1
        return execute(self, *args, **kwargs)

    return wrapper


_profiles: list[cProfile.Profile] = []


def _profiled(run_script: Any) -> Any:
    def wrapper(self: ScriptRunner, *args: Any, **kwargs: Any) -> Any:
        profile = cProfile.Profile()
        profile.enable()
        try:
            return run_script(self, *args, **kwargs)
        finally:
            profile.disable()
            with _lock:
                _profiles.append(profile)

    return wrapper


def _save_profiles(path: str) -> None:
    with _lock:
        if _profiles:
            pstats.Stats(*_profiles).dump_stats(path)


def _timed(init: Any) -> Any:
    def wrapper(self: ScriptRunner, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        started: list[float] = []

        def on_event(_sender: Any, event: ScriptRunnerEvent, **_: Any) -> None:
            if event == ScriptRunnerEvent.SCRIPT_STARTED:
                started[:] = [time.perf_counter()]
            elif event in ENDINGS and started:
                took = time.perf_counter() - started.pop()
                _log.write(f"{time.time():.3f} {took:.4f} {event.name} {_queries}\n")

        self.on_event.connect(on_event, weak=False)

    return wrapper


_gc_log = open(os.environ["RUNWATCH_PROBE_LOG"] + ".gc", "a", buffering=1)  # noqa: SIM115 (as _log)
_gc_started = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    """Log each pass of the garbage collector (it holds the GIL: every session waits for it)."""
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        took = time.perf_counter() - _gc_started[0]
        _gc_log.write(f"{time.time():.3f} {took:.4f} {info['generation']}\n")


def main() -> None:
    """Install the probe, then hand over to `streamlit run`."""
    gc.callbacks.append(_on_gc)
    psycopg.Cursor.execute = _counted(psycopg.Cursor.execute)  # type: ignore[method-assign]
    ScriptRunner.__init__ = _timed(ScriptRunner.__init__)  # type: ignore[method-assign]
    if profile := os.environ.get("RUNWATCH_PROBE_PROFILE"):
        ScriptRunner._run_script = _profiled(ScriptRunner._run_script)  # type: ignore[method-assign]
        atexit.register(_save_profiles, profile)
    sys.argv = ["streamlit", "run", *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()

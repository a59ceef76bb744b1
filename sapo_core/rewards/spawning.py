"""A spawn start method whose processes never import the parent's `__main__` (the grading workers' context).

Python's spawn start method sends each new process the parent's main module (`init_main_from_path` for a
script, `init_main_from_name` for `python -m`), and the child runs it again as `__mp_main__` before it
unpickles its target. That fails when the main module is `<stdin>` (no file to run) and re-runs a script
that has no `if __name__ == "__main__":` guard, which then tries to start workers of its own while it
bootstraps. A grading worker needs nothing from `__main__`: its target, initializer and tasks all live in
`sapo_core.rewards.worker`. `WORKER_CONTEXT` is a spawn context that drops those two entries from what the
child is sent; everything else (sys.path, the working directory, the authentication key, the resource
tracker) is spawn's own. pebble takes it as `ProcessPool(context=...)`.
"""

from __future__ import annotations

import io
import os
from multiprocessing import context, popen_spawn_posix, process, reduction, resource_tracker, spawn, util

__all__ = ["MAIN_MODULE_KEYS", "WORKER_CONTEXT", "preparation_data"]

MAIN_MODULE_KEYS = ("init_main_from_path", "init_main_from_name")  # what makes a spawned child run __main__


def preparation_data(name: str) -> dict:
    """spawn's preparation data for a process called `name`, without the parent's main module."""
    data = spawn.get_preparation_data(name)
    for key in MAIN_MODULE_KEYS:
        data.pop(key, None)
    return data


class _Popen(popen_spawn_posix.Popen):
    """spawn's POSIX launcher, sending `preparation_data` instead of spawn's."""

    def _launch(self, process_obj: process.BaseProcess) -> None:
        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        payload = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(preparation_data(process_obj._name), payload)
            reduction.dump(process_obj, payload)
        finally:
            context.set_spawning_popen(None)
        parent_r, child_w = os.pipe()
        try:
            child_r, parent_w = os.pipe()
        except OSError:
            os.close(parent_r)
            os.close(child_w)
            raise
        try:
            command = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
            self._fds.extend([child_r, child_w])
            self.pid = util.spawnv_passfds(spawn.get_executable(), command, self._fds)
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as pipe:
                pipe.write(payload.getbuffer())
        finally:
            self.finalizer = util.Finalize(self, util.close_fds, (parent_r, parent_w))
            os.close(child_r)
            os.close(child_w)


class _Process(context.SpawnProcess):
    """A spawned process that does not import the parent's `__main__`."""

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> _Popen:
        return _Popen(process_obj)


class _WorkerContext(context.SpawnContext):
    """spawn's context with `_Process`; its locks, queues and pipes are spawn's."""

    Process = _Process


WORKER_CONTEXT = _WorkerContext()

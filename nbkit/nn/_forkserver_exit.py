"""Imported last by :func:`nbkit.nn.dist.spawn`'s fork server, only there: the server ends without the interpreter's
teardown of torch and numba (``os._exit``, as a spawned rank ends), once the process that started it is gone.

The handler is inherited by the ranks forked from the server, but acts only in the process that imported this
module: a rank's exit code stays its own.
"""

import atexit
import os

_SERVER = os.getpid()


def _exit_now() -> None:
    if os.getpid() == _SERVER:
        os._exit(0)


atexit.register(_exit_now)

"""Commands run with a file-size limit: a real write failure half-way, without root.

A write past `RLIMIT_FSIZE` fails with EFBIG ("File too large") once SIGXFSZ is
ignored, the same way a full disk fails it (ENOSPC): the file is partly
written and the writer gets an error.
"""

import sys

_SNIPPET = (
    "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY)); "
    "sys.argv[0] = {module!r}; runpy.run_module({module!r}, run_name='__main__')"
)


def command(module: str, max_bytes: int) -> list[str]:
    """`python -m module` (append its flags) where no file may exceed `max_bytes`."""
    return [sys.executable, "-c", _SNIPPET.format(limit=int(max_bytes), module=module)]

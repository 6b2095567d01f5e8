"""memscope bootstrap, put first on PYTHONPATH by `memscope run --trace-sites`.

Does nothing unless MEMSCOPE_AGENT=1 (and a CPython 3.8+). Then it loads memscope's agent from
the directory above by file path (memscope need not be installed in the target's environment)
and starts it, as early as interpreter start-up allows. Finally it hands over to the
sitecustomize this one shadows (the next one on sys.path), so the target behaves as before:
its own sitecustomize runs, its errors are reported by site.py as usual, and when there is none,
`import sitecustomize` fails exactly as it would have. This directory is removed from sys.path;
PYTHONPATH keeps it so that exec'd Python children load the agent too.
"""

import os
import sys


def _memscope_boot():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        real = os.path.realpath(here)
        sys.path[:] = [
            p for p in sys.path if not isinstance(p, str) or os.path.realpath(p or ".") != real
        ]
    except Exception:
        pass
    if os.environ.get("MEMSCOPE_AGENT") != "1":
        return
    if sys.implementation.name != "cpython" or sys.version_info < (3, 8):
        return
    try:
        import importlib.util

        name = "_memscope_agent"
        if name not in sys.modules:
            agent_dir = os.path.dirname(here)
            spec = importlib.util.spec_from_file_location(
                name, os.path.join(agent_dir, "__init__.py"),
                submodule_search_locations=[agent_dir],
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        from _memscope_agent import runtime

        why = runtime.start_from_env()
        if why and os.environ.get("MEMSCOPE_AGENT_DEBUG") == "1":
            sys.stderr.write("memscope agent: %s\n" % why)
    except Exception as exc:
        if os.environ.get("MEMSCOPE_AGENT_DEBUG") == "1":
            sys.stderr.write("memscope agent: %s: %s\n" % (type(exc).__name__, exc))


_memscope_boot()
del _memscope_boot

# Hand over to the shadowed sitecustomize. The import machinery returns whatever
# sys.modules["sitecustomize"] holds once this module finishes, so the target sees its own.
_memscope_self = sys.modules.pop("sitecustomize", None)
try:
    import sitecustomize  # noqa: F401  (the next one on sys.path)
except ImportError as _memscope_exc:
    if getattr(_memscope_exc, "name", None) == "sitecustomize":
        # There is none: fail the way a missing sitecustomize fails (site.py ignores it).
        raise ImportError("No module named 'sitecustomize'", name="sitecustomize") from None
    raise

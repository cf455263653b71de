"""Deploy Guard: guarded Kubernetes rollouts, promoted or rolled back on Prometheus evidence."""

import importlib.util
import sys

__version__ = "0.1.0"


def _skip_unused_dependency_parts() -> None:
    """Import only the parts of two dependencies that the guard runs.

    `import kubernetes` runs the package's `__init__`, which imports its dynamic client (and
    with it kubernetes_validate and jsonschema), watch, stream (websocket), leader election and
    informers; the guard uses only `kubernetes.client` and `kubernetes.config`. `import httpx`
    imports httpx's command-line client, and with it rich and pygments, when they are
    installed. Together they are about 7 MB of every guard's resident memory (measured: 89 MB
    after the serve path's imports, 81.6 MB without them). The `kubernetes` package is put in
    place without running its `__init__`, so its submodules import on first use as usual; the
    httpx command line is marked absent (`sys.modules[...] = None`), so httpx falls back to
    the stub it has for a missing CLI. A process that imported either before the guard keeps
    it whole.
    """
    if "kubernetes" not in sys.modules:
        spec = importlib.util.find_spec("kubernetes")
        if spec is not None and spec.submodule_search_locations is not None:
            sys.modules["kubernetes"] = importlib.util.module_from_spec(spec)
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


_skip_unused_dependency_parts()

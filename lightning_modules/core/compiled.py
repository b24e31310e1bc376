"""Numba's compilations kept on disk across processes, for libraries that compile on first use.

umap-learn declares most of its numba functions without `cache=True`, so every fresh process (every workflow job)
compiled them again: ~7 s of the ~9 s a UMAP of 1,000 digits took in a job (the label-free selection's UMAP
silhouette, `maps.method: umap`). Numba's dispatchers can have caching switched on after the fact
(`Dispatcher.enable_caching`, what `cache=True` does at declaration): the machine code then goes to numba's cache
(`__pycache__` beside the library's source, or the user's cache folder where that is read-only) and the next
process loads it. Numba keys each entry by the function's source file and its signatures, so a changed library
recompiles; functions numba cannot cache (closures built at run time) are compiled as before.
"""

from __future__ import annotations

import sys


def cache_compilations(*packages: str) -> int:
    """Switch on numba's on-disk cache for every jitted function of the imported modules of `packages` that has
    none; returns how many were switched on."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    switched = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher) and isinstance(value._cache, NullCache):
                value.enable_caching()
                switched += 1
    return switched


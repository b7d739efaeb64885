"""Pay torch's one-off first-use costs before the first round needs them.

The first optimizer a process builds imports ``torch._dynamo`` (``torch.optim`` wraps every
``step``): seconds of imports, measured here at 2-6 s on two cores, that would otherwise land in the
first training round of every site. Run in a background thread when a job starts, the cost overlaps
the federated-statistics tasks and the server's own start instead.
"""

from __future__ import annotations

import threading


def warm_up_torch() -> None:
    """Build and step one throwaway optimizer (no model, no data)."""
    import torch

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.0)
    param.sum().backward()
    optimizer.step()


def warm_up_in_background() -> threading.Thread:
    """Start :func:`warm_up_torch` in a daemon thread; returns the thread."""
    thread = threading.Thread(target=warm_up_torch, name="fedhealth-warm-up", daemon=True)
    thread.start()
    return thread
